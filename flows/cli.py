"""``semantic-index``: the one command line of the product.

Examples::

    semantic-index run                          # the whole pipeline, then an example search
    semantic-index ingest | transform           # one stage, as its Prefect flow
    semantic-index index --dry-run              # plan and cost the indexing; no writes
    semantic-index doctor [--repair]            # compare the store with the ledger (and fix)
    semantic-index replay                       # retry the chunks the provider rejected
    semantic-index diff 3 7 [--json]            # what changed between two index runs
    semantic-index search "cast iron pan" --filter '{"category": "kitchen"}'
    semantic-index serve                        # the HTTP search service
    semantic-index evaluate data/demo/queries.jsonl --min-ndcg 0.8
    semantic-index backup [--list] | restore FILE
    semantic-index setup                        # work pool, limits, alerts on a Prefect server
    semantic-index db status | db stop [--force]
    semantic-index settings [--write-readme]

From a checkout without the script installed: ``python -m flows.cli ...``.

Every command runs through :func:`run_cli`: it checks the settings before anything starts (no
Prefect server, no warehouse), stops the embedded PostgreSQL server cleanly on SIGTERM, and turns
the errors a user can fix into one ``error: ...`` line. Exit codes: 0 done, 1 a domain error (or
``evaluate --min-ndcg`` below the gate), 2 unusable settings or a bad argument.

Heavy modules (Prefect, the flows, uvicorn) are imported inside the commands, so ``--help`` and
the small commands start fast. Importing this module imports the ``flows`` package first, which
applies the offline defaults before anything can import Prefect.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from flows.console import EXAMPLE_QUERY, ProgressBars, plain_snippet, print_results
from tasks.errors import ConfigError, PipelineError
from tasks.runtime import stop_cleanly_on_sigterm
from tasks.search.grouping import SCORE_RULES
from tasks.search.searcher import GROUP_BYS, MODES, DocumentResult
from tasks.settings import get_settings

#: Prefect's message when its temporary server does not answer in time (prefect/server/api).
_EPHEMERAL_TIMEOUT = "ephemeral Prefect API server"

EPHEMERAL_HINT = (
    "Prefect's temporary API server did not answer within "
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS={seconds} s (its first start also creates "
    "its database, which is slow on a busy machine). Raise that setting, or start a server once "
    "with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api."
)

#: The process work pool ``setup`` creates (the one prefect.yaml's deployments name).
DEFAULT_WORK_POOL = "pipeline-process"


class UsageError(Exception):
    """A command-line argument is unusable (exit code 2, like argparse's own errors)."""


def ephemeral_timeout_message(exc: BaseException) -> str | None:
    """The hint for Prefect's "timed out ... ephemeral server" error, ``None`` for others."""
    if _EPHEMERAL_TIMEOUT not in str(exc):
        return None
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    return EPHEMERAL_HINT.format(seconds=PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())


def run_cli(main: Callable[[], int | None], *, check_settings: bool = True) -> int:
    """Run ``main`` as a command: returns its exit code (0 if it returns ``None``).

    Exit codes: 2 for unusable settings (checked before ``main`` runs unless ``check_settings``
    is false) or a :class:`UsageError`, 1 for a failed run with a domain error or Prefect's
    server start-up timeout; anything else propagates as usual.
    """
    stop_cleanly_on_sigterm()
    try:
        if check_settings:
            get_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return main() or 0
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        hint = ephemeral_timeout_message(exc)
        if hint is None:
            raise
        print(f"error: {hint}", file=sys.stderr)
        return 1


# ---- the commands: each takes the parsed arguments and returns an exit code (None: 0) ----


def cmd_run(args: argparse.Namespace) -> int:
    """The whole pipeline, its summary and an example search per indexed namespace."""
    from flows.main import data_pipeline
    from tasks.search.searcher import search

    summary = data_pipeline()
    print(summary.to_text())
    # Only an illustration: a failed example search is reported, never fails the command.
    for result in summary.index:
        print(f'\nExample search in {result.namespace}: "{EXAMPLE_QUERY}"')
        try:
            hits = search(EXAMPLE_QUERY, top_k=3, namespace=result.namespace)
        except PipelineError as exc:
            print(f"  (example search failed: {exc})", file=sys.stderr)
            continue
        for rank, hit in enumerate(hits, 1):
            print(f"  {rank}. {hit.title}  [{hit.document_id}]")
    return 0


def cmd_ingest(args: argparse.Namespace) -> None:
    """The ingest flow; prints the rows loaded per table."""
    from flows.ingest import ingest

    for result in ingest(args.source):
        print(f"{result.source}: {result.rows_by_table}")


def cmd_transform(args: argparse.Namespace) -> None:
    """The transform flow (dbt build, then docs)."""
    from flows.transform import transform

    r = transform()
    print(f"dbt {r.command}: {r.models_built} models, {r.tests_passed} tests passed")


def cmd_index(args: argparse.Namespace) -> None:
    """Index every declared documents model in this process, with a progress bar per phase."""
    from tasks.embedders import get_embedder
    from tasks.index.documents import load_specs
    from tasks.index.run import index_documents
    from tasks.stores import get_store
    from tasks.warehouse import get_warehouse

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    if args.allow_mass_delete:
        settings = settings.model_copy(update={"index_allow_mass_delete": True})
    specs = [s for s in load_specs(settings) if args.namespace in (None, s.namespace)]
    warehouse = get_warehouse(settings)
    embedder = get_embedder(settings)
    for spec in specs:
        store = get_store(settings)
        bars = ProgressBars()
        try:
            result = index_documents(
                spec, warehouse, embedder, store, bars.update, settings=settings,
                dry_run=args.dry_run or None,
            )  # fmt: skip
        finally:
            bars.close()
            store.close()
        print(result.to_text())


def cmd_doctor(args: argparse.Namespace) -> int:
    """The index doctor in this process; exit 1 when drift was found and not repaired."""
    from tasks.index.doctor import run_doctor

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    names = None if args.namespace is None else [args.namespace]
    reports = run_doctor(settings, names, fix=args.repair)
    for report in reports:
        print(report.to_text())
    if args.repair and any(not r.clean for r in reports):
        reports = run_doctor(settings, names)
        print("After repair:\n" + "\n".join(r.to_text() for r in reports))
    if not reports:
        print("No namespace is served yet: nothing to check (run `semantic-index index`).")
    return 0 if all(r.clean for r in reports) else 1


def cmd_replay(args: argparse.Namespace) -> None:
    """Index again the namespaces whose dead letters (rejected chunks) may now go through."""
    from tasks.embedders import get_embedder
    from tasks.index.documents import load_specs
    from tasks.index.run import replay_dead_letters
    from tasks.stores import get_store
    from tasks.warehouse import get_warehouse

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    specs = [s for s in load_specs(settings) if args.namespace in (None, s.namespace)]
    replays = replay_dead_letters(
        specs,
        get_warehouse(settings),
        get_embedder(settings),
        lambda: get_store(settings),
        settings=settings,
    )
    for replay in replays:
        print(replay.to_text())
    if not replays:
        print("No dead letters: nothing to replay.")


def cmd_diff(args: argparse.Namespace) -> None:
    """What changed between two indexing runs of the ledger (config, models, documents, cost)."""
    from tasks.index.ledger import Ledger
    from tasks.ops.diff import diff_runs
    from tasks.warehouse import get_warehouse

    settings = get_settings()
    ledger = Ledger(get_warehouse(settings), settings.index_state_schema)
    try:
        diff = diff_runs(ledger, args.run_a, args.run_b)
    finally:
        ledger.close()
    print(json.dumps(diff.as_dict(), indent=2) if args.json else diff.to_text())


def cmd_rebuild(args: argparse.Namespace) -> None:
    """The rebuild-index flow: drop every declared namespace, then index from scratch."""
    from flows.rebuild import rebuild

    for r in rebuild():
        print(f"{r.namespace}: {r.embedded} embedded, {r.vectors_in_store} vectors in store")


def cmd_search(args: argparse.Namespace) -> int:
    """One search, printed as text or JSON lines."""
    from tasks.search.searcher import search

    try:
        filter_ = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--filter is not valid JSON: {exc}") from None
    try:
        if args.group_by == "document":
            documents = search(
                args.query,
                top_k=args.top_k,
                filter=filter_,
                namespace=args.namespace,
                mode=args.mode,
                group_by="document",
                group_rule=args.group_rule,
            )
        else:
            results = search(
                args.query,
                top_k=args.top_k,
                filter=filter_,
                namespace=args.namespace,
                mode=args.mode,
            )
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    if not (documents if args.group_by == "document" else results):
        print("No results (is the index built? run `semantic-index run`).", file=sys.stderr)
        return 1
    if args.group_by == "document":
        print_documents(documents, as_json=args.json)
    else:
        print_results(results, as_json=args.json)
    return 0


def print_documents(documents: Sequence[DocumentResult], as_json: bool = False) -> None:
    """Print ranked documents: one JSON object per line, or a block per document with its
    best passages."""
    tty = sys.stdout.isatty()
    for rank, d in enumerate(documents, 1):
        if as_json:
            print(json.dumps(d.to_dict(), default=str))
            continue
        print(f"{rank}. {d.title or d.document_id}  (score {d.score:.3f}, {d.document_id})")
        if d.url:
            print(f"   {d.url}")
        for p in d.passages:
            print(f"   [chunk {p.position}] {plain_snippet(p.snippet, tty)}")
        if d.metadata:
            print(f"   {json.dumps(d.metadata, default=str)}")


def configure_service_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the service and the access log (no tracebacks)."""
    from api.middleware import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def cmd_serve(args: argparse.Namespace) -> None:
    """The search service under uvicorn on SEARCH_API_HOST:SEARCH_API_PORT."""
    import uvicorn
    from pydantic import SecretStr

    from api.main import create_app

    configure_service_logging(args.log_level)
    # uvicorn restores the SIGTERM handler it found (run_cli's) and re-raises SIGTERM after its
    # graceful shutdown: that ends in SystemExit, so an embedded server we started is stopped.
    settings = get_settings()
    if settings.search_api_keys is None and not settings.search_api_auth_disabled:
        # Nothing configured: stay closed, but usable. A random key for this process only,
        # shown once on the terminal (never logged).
        key = secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"search_api_keys": SecretStr(key)})
        print(
            f"No SEARCH_API_KEYS set: this process accepts the generated key\n  {key}\n"
            "Send it as `X-API-Key`. Set SEARCH_API_KEYS to choose your own.",
            file=sys.stderr,
        )
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host or settings.search_api_host,
        port=args.port or settings.search_api_port,
        access_log=False,  # our middleware writes structured access lines
        log_config=None,  # keep the JSON logging configured above
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score retrieval on a labeled query file; exit 1 below ``--min-ndcg``."""
    from tasks.search.evaluation import evaluate, load_queries

    modes = args.mode or list(MODES)
    try:
        if args.flow:
            from flows.evaluate import evaluate_retrieval

            report = evaluate_retrieval(str(args.query_file), modes, args.namespace)
        else:
            queries = load_queries(args.query_file)
            report = evaluate(queries, modes, args.namespace, query_file=str(args.query_file))
    except (PipelineError, ValueError) as exc:
        # Exit 2, not 1: a CI gate must tell an unusable query file from a score below the gate.
        raise UsageError(str(exc)) from None
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    if args.min_ndcg is not None:
        scores = {m: s.metrics["ndcg@10"] for m, s in report.modes.items()}
        failing = {m: v for m, v in scores.items() if v < args.min_ndcg}
        if failing:
            print(f"below --min-ndcg {args.min_ndcg}: {failing}", file=sys.stderr)
            return 1
    return 0


def cmd_backup(args: argparse.Namespace) -> None:
    """The backup flow (pg_dump -Fc, keep BACKUP_KEEP), or ``--list`` the dumps."""
    if args.list:
        from tasks.ops.backup import backup_dir, list_backups

        for path in list_backups(backup_dir(get_settings())):
            print(path)
        return
    from flows.backup import backup

    result = backup()
    print(f"Backup written: {result.path} ({result.size_bytes} bytes)")


def cmd_restore(args: argparse.Namespace) -> None:
    """pg_restore a dump into DATABASE_URL's database (objects in the dump are replaced)."""
    from tasks.ops.backup import restore
    from tasks.warehouse import get_warehouse

    warehouse = get_warehouse(get_settings())
    restore(args.file, warehouse)
    print(f"Restored {args.file} into {warehouse.display}")


def cmd_setup(args: argparse.Namespace) -> None:
    """Prepare the Prefect server in PREFECT_API_URL: work pool, limits, alert automations."""
    from tasks.ops.alerts import setup_operations

    settings = get_settings()
    limits = {}
    if settings.embedding_concurrency_limit:
        limits[settings.embedding_concurrency_limit] = args.embedding_slots
    result = setup_operations(
        work_pool=args.work_pool,
        concurrency_limits=limits,
        webhook_url=(
            settings.alert_webhook_url.get_secret_value() if settings.alert_webhook_url else None
        ),
        max_run_minutes=args.max_run_minutes,
    )
    print(f"Work pool: {result.work_pool}")
    for name, limit in result.concurrency_limits.items():
        print(f"Global concurrency limit: {name} = {limit}")
    if result.automations:
        print(f"Alert block: {result.block_id}; automations: {', '.join(result.automations)}")
    else:
        print("Alerts: not configured (set ALERT_WEBHOOK_URL and run again)")


def cmd_db(args: argparse.Namespace) -> None:
    """Show or stop the embedded PostgreSQL server of DATA_DIR."""
    from tasks.embedded_server import server_status, stop

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    pgdata = get_settings().resolved_data_dir / "pgdata"
    if args.action == "stop":
        before = server_status(pgdata)
        after = stop(pgdata, force=args.force)
        print(
            "Stopped the embedded PostgreSQL server."
            if before.running and not after.running
            else after.to_text()
        )
    else:
        print(server_status(pgdata).to_text())


def cmd_settings(args: argparse.Namespace) -> None:
    """Print the settings table (Markdown), or write it into the README."""
    from tasks.settings import settings_markdown, write_readme_table

    if args.write_readme:
        write_readme_table()
    else:
        print(settings_markdown())


# ---- the parser ----


def build_parser() -> argparse.ArgumentParser:
    """The ``semantic-index`` parser: one subcommand per command above."""
    parser = argparse.ArgumentParser(
        prog="semantic-index",
        description="Build, search, serve and operate the semantic index.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        handler: Callable[[argparse.Namespace], int | None],
        help: str,
        details: str = "",
        check_settings: bool = True,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=f"{help} {details}".strip())
        p.set_defaults(handler=handler, check_settings=check_settings)
        return p

    add("run", cmd_run, "Run the whole pipeline: ingest, transform, index, validate.")
    p = add("ingest", cmd_ingest, "Load the declared sources into raw_data (the ingest flow).")
    p.add_argument("--source", action="append", default=None, help="Only this source (repeatable).")
    add("transform", cmd_transform, "Build and test the dbt project (the transform flow).")

    p = add("index", cmd_index, "Index the documents models declared in dbt, with progress.")
    p.add_argument("--dry-run", action="store_true", help="Plan and cost only; no writes.")
    p.add_argument("--namespace", default=None, help="Only this logical namespace.")
    p.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="Confirm a deletion larger than INDEX_MAX_DELETE_FRACTION (INDEX_ALLOW_MASS_DELETE).",
    )
    p = add(
        "doctor",
        cmd_doctor,
        "Compare the vector store with the indexing ledger, per namespace.",
        "Reports missing records, orphans, wrong dimensions and stale hashes or metadata; exits "
        "1 while drift remains.",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="Re-write missing and stale records from the embedding cache; delete orphans.",
    )
    p.add_argument("--namespace", default=None, help="Only this logical namespace.")
    p = add(
        "replay",
        cmd_replay,
        "Retry the chunks the embedding provider rejected (dead letters), after a fix.",
        "Runs an incremental index of each namespace with dead letters and reports how many "
        "were recovered.",
    )
    p.add_argument("--namespace", default=None, help="Only this logical namespace.")
    p = add(
        "diff",
        cmd_diff,
        "Say what changed between two indexing runs.",
        "Config and versions that differ, the dbt models (manifest hash, project version), "
        "documents added, changed and deleted, and tokens and cost. Run ids: the index report's "
        "`run id`, or index_state.runs.",
    )
    p.add_argument("run_a", type=int, metavar="RUN_A", help="The earlier run's id.")
    p.add_argument("run_b", type=int, metavar="RUN_B", help="The later run's id.")
    p.add_argument("--json", action="store_true", help="Print the diff as JSON.")
    add("rebuild", cmd_rebuild, "Drop every declared namespace and index it again from scratch.")

    p = add("search", cmd_search, "Search the semantic index built by the pipeline.")
    p.add_argument("query", help="What to look for, in your own words.")
    p.add_argument("-k", "--top-k", type=int, default=None, help="Number of results.")
    p.add_argument(
        "--filter", default=None, help='Metadata filter as JSON, e.g. \'{"category": "toys"}\'.'
    )
    p.add_argument("--namespace", default=None, help="Namespace (documents model) to search.")
    p.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="vector (embeddings) or hybrid (embeddings + full-text); default: SEARCH_MODE.",
    )
    p.add_argument(
        "--group-by",
        choices=GROUP_BYS,
        default="document",
        help="document (distinct documents with their best passages, the default) or chunk "
        "(the ranked chunks).",
    )
    p.add_argument(
        "--group-rule",
        choices=SCORE_RULES,
        default=None,
        help="How a document is scored from its chunks: max (its best chunk), max_bonus (best + "
        "0.1 x the next two), sum_top (sum of the best three); default: SEARCH_GROUP_RULE.",
    )
    p.add_argument("--json", action="store_true", help="Print results as JSON lines.")

    p = add("serve", cmd_serve, "Serve the HTTP search service (FastAPI under uvicorn).")
    p.add_argument("--host", default=None, help="Bind address (SEARCH_API_HOST).")
    p.add_argument("--port", type=int, default=None, help="Port (SEARCH_API_PORT).")
    p.add_argument("--log-level", default="INFO")

    p = add("evaluate", cmd_evaluate, "Score search quality on a labeled query file.")
    p.add_argument("query_file", type=Path, help="JSON lines: query, relevant_ids, filter.")
    p.add_argument(
        "--mode", action="append", choices=MODES, help="Mode to score (repeatable; default all)."
    )
    p.add_argument("--namespace", default=None, help="Namespace to search.")
    p.add_argument("--json", action="store_true", help="Print the report as JSON.")
    p.add_argument(
        "--min-ndcg",
        type=float,
        default=None,
        help="Exit with code 1 if any scored mode's nDCG@10 is below this.",
    )
    p.add_argument("--flow", action="store_true", help="Run as the Prefect flow.")

    p = add("backup", cmd_backup, "Dump the warehouse and prune old dumps (the backup flow).")
    p.add_argument("--list", action="store_true", help="Only list the backups in BACKUP_DIR.")
    p = add(
        "restore",
        cmd_restore,
        "Restore a backup into DATABASE_URL's database.",
        "Objects in the dump are replaced (--clean --if-exists) in one transaction. For an exact "
        "copy, restore into a fresh database (createdb restored; point DATABASE_URL at it).",
    )
    p.add_argument("file", type=Path, help="A file written by the backup flow.")

    p = add(
        "setup",
        cmd_setup,
        "Prepare the Prefect server in PREFECT_API_URL for the deployments.",
        "Creates or updates, idempotently: the process work pool, the global concurrency limit "
        "for embedding calls (EMBEDDING_CONCURRENCY_LIMIT) and, with ALERT_WEBHOOK_URL, the "
        "webhook block and the alert automations (failure, crash, timeout, over-long run). Then "
        "run `prefect deploy --all`.",
    )
    p.add_argument("--work-pool", default=DEFAULT_WORK_POOL, help="Process work pool name.")
    p.add_argument(
        "--embedding-slots",
        type=int,
        default=2,
        help="Embedding batches allowed at once across all runs and workers.",
    )
    p.add_argument(
        "--max-run-minutes",
        type=int,
        default=120,
        help="Alert when a pipeline run is still running after this many minutes.",
    )

    p = add("db", cmd_db, "Show or stop the embedded PostgreSQL server of DATA_DIR.")
    p.add_argument("action", choices=["status", "stop"])
    p.add_argument("--force", action="store_true", help="stop: even while other processes use it")

    # The settings table documents the settings: it must print even when the current ones are bad.
    p = add("settings", cmd_settings, "Print the settings table (Markdown).", check_settings=False)
    p.add_argument(
        "--write-readme", action="store_true", help="Replace the table in README.md instead."
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``semantic-index`` entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: args.handler(args), check_settings=args.check_settings)


if __name__ == "__main__":
    sys.exit(main())
