"""What the ``semantic-index`` commands show on a terminal: progress bars and search results."""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tasks.progress import PhaseUpdate

if TYPE_CHECKING:
    from tasks.search.searcher import SearchResult

#: The closing example of ``semantic-index run`` (phrased for the demo catalog).
EXAMPLE_QUERY = "a light tent for two people backpacking in the rain"


class ProgressBars:
    """One tqdm bar per phase on stderr (tqdm shows the rate and the ETA)."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def update(self, update: PhaseUpdate) -> None:
        """Show ``update`` on its phase's bar."""
        from tqdm import tqdm

        bar = self._bars.get(update.phase)
        if bar is None:
            bar = tqdm(
                desc=f"{update.namespace} {update.phase}",
                total=update.total,
                unit=update.unit[:-1] if update.unit.endswith("s") else update.unit,
                file=sys.stderr,
                position=len(self._bars),
            )
            self._bars[update.phase] = bar
        bar.update(update.done - bar.n)

    def close(self) -> None:
        """Close every bar."""
        for bar in self._bars.values():
            bar.close()


def plain_snippet(snippet: str, tty: bool = False) -> str:
    """A result snippet for the terminal: matches in bold on a TTY, else in [brackets]."""
    start, stop = ("\033[1m", "\033[0m") if tty else ("[", "]")
    marked = re.sub(r"<mark>(.*?)</mark>", lambda m: f"{start}{m.group(1)}{stop}", snippet)
    return html.unescape(marked)


def print_results(results: Sequence[SearchResult], as_json: bool = False) -> None:
    """Print ranked results: one JSON object per line, or a short block per result."""
    for rank, r in enumerate(results, 1):
        if as_json:
            print(json.dumps(r.to_dict(), default=str))
            continue
        print(f"{rank}. {r.title or r.document_id}  (score {r.score:.3f}, {r.document_id})")
        if r.url:
            print(f"   {r.url}")
        print(f"   {plain_snippet(r.snippet, sys.stdout.isatty())}")
        if r.metadata:
            shown = {k: v for k, v in r.metadata.items() if k not in {"document_id"}}
            print(f"   {json.dumps(shown, default=str)}")
