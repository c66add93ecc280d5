"""Command line search: ``python -m flows.search "query"`` or the ``semantic-search`` script.

Examples::

    semantic-search "waterproof jacket for hiking" --top-k 3
    semantic-search "cast iron pan" --filter '{"category": "kitchen", "price": {"$lt": 80}}'
    semantic-search "board game for kids" --json
    semantic-search "HO-46517" --mode hybrid
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flows  # noqa: F401  (offline defaults)
from tasks.errors import PipelineError
from tasks.search.searcher import MODES, search


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="semantic-search", description="Search the semantic index built by the pipeline."
    )
    parser.add_argument("query", help="What to look for, in your own words.")
    parser.add_argument("-k", "--top-k", type=int, default=None, help="Number of results.")
    parser.add_argument(
        "--filter", default=None, help='Metadata filter as JSON, e.g. \'{"category": "toys"}\'.'
    )
    parser.add_argument("--namespace", default=None, help="Namespace (documents model) to search.")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="vector (embeddings) or hybrid (embeddings + full-text); default: SEARCH_MODE.",
    )
    parser.add_argument("--json", action="store_true", help="Print results as JSON lines.")
    return parser


def plain_snippet(snippet: str, tty: bool = False) -> str:
    """A result snippet for the terminal: matches in bold on a TTY, else in [brackets]."""
    start, stop = ("\033[1m", "\033[0m") if tty else ("[", "]")
    marked = re.sub(r"<mark>(.*?)</mark>", lambda m: f"{start}{m.group(1)}{stop}", snippet)
    return html.unescape(marked)


def main(argv: list[str] | None = None) -> int:
    """Run a search and print the results; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        filter_ = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        print(f"error: --filter is not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        results = search(
            args.query, top_k=args.top_k, filter=filter_, namespace=args.namespace, mode=args.mode
        )
    except (PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not results:
        print("No results (is the index built? run `python flows/main.py`).", file=sys.stderr)
        return 1
    for rank, r in enumerate(results, 1):
        if args.json:
            print(json.dumps(r.to_dict(), default=str))
            continue
        print(f"{rank}. {r.title or r.document_id}  (score {r.score:.3f}, {r.document_id})")
        if r.url:
            print(f"   {r.url}")
        print(f"   {plain_snippet(r.snippet, sys.stdout.isatty())}")
        if r.metadata:
            shown = {k: v for k, v in r.metadata.items() if k not in {"document_id"}}
            print(f"   {json.dumps(shown, default=str)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
