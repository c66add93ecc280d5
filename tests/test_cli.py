"""The ``semantic-index`` command: its parser, its exit codes, and commands run as a user would
(a subprocess; ``python -m flows.cli`` is what the installed script runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import build_parser, main, run_cli
from tasks.errors import PipelineError
from tasks.settings import get_settings

REPO = Path(__file__).resolve().parents[1]

#: Every subcommand and the arguments that make a minimal valid command line of it.
COMMANDS = {
    "run": [],
    "ingest": ["--source", "demo"],
    "transform": [],
    "index": ["--dry-run", "--allow-mass-delete", "--namespace", "products"],
    "rebuild": [],
    "doctor": ["--repair", "--namespace", "products"],
    "replay": ["--namespace", "products"],
    "diff": ["1", "2", "--json"],
    "search": ["tent", "-k", "3", "--mode", "hybrid", "--json"],
    "serve": ["--port", "8001"],
    "evaluate": ["queries.jsonl", "--min-ndcg", "0.5"],
    "backup": ["--list"],
    "restore": ["some.dump"],
    "setup": ["--max-run-minutes", "30"],
    "db": ["stop", "--force"],
    "settings": ["--write-readme"],
}


def semantic_index(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``semantic-index <args>`` in a subprocess from the checkout."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_subcommand_parses() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert subcommands is not None
    assert set(subcommands) == set(COMMANDS)
    for name, extra in COMMANDS.items():
        args = parser.parse_args([name, *extra])
        assert args.command == name and callable(args.handler)
    assert parser.parse_args(["index"]).dry_run is False
    assert parser.parse_args(["db", "status"]).force is False
    assert parser.parse_args(["settings"]).check_settings is False


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_of_every_subcommand(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    assert f"semantic-index {name}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [[], ["nonsense"], ["db"], ["db", "restart"], ["search"], ["index", "--bogus"]],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: semantic-index" in capsys.readouterr().err


def test_run_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    def fails() -> None:
        raise PipelineError("the source is gone; declare it again")

    assert run_cli(fails) == 1
    err = capsys.readouterr().err
    assert err == "error: the source is gone; declare it again\n"  # no traceback
    assert run_cli(lambda: 3) == 3
    assert run_cli(lambda: None) == 0


def test_unusable_settings_exit_2_before_the_command_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout
    monkeypatch.setenv("VECTOR_STORE", "nowhere")
    get_settings.cache_clear()
    try:
        ran: list[int] = []
        assert run_cli(lambda: ran.append(1)) == 2
        assert ran == [] and "VECTOR_STORE" in capsys.readouterr().err
        # The settings table documents the settings: it prints even while they are unusable.
        assert main(["settings"]) == 0
        assert "| `VECTOR_STORE` |" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


def test_settings_and_db_status_as_a_user_runs_them(tmp_path: Path) -> None:
    """Real subprocesses: the settings table, the status of a data dir's server (none yet), and
    the exit codes a script sees for bad settings and a bad argument."""
    env = {"DATA_DIR": str(tmp_path / "data")}
    table = semantic_index("settings", env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("| Variable | Default | Meaning |")
    assert "| `DATA_DIR` |" in table.stdout

    status = semantic_index("db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("No embedded PostgreSQL data in")

    bad = semantic_index("db", "status", env={**env, "VECTOR_STORE": "nowhere"})
    assert bad.returncode == 2 and bad.stderr.startswith("error: Invalid settings")
    assert "Traceback" not in bad.stderr

    missing = semantic_index("evaluate", str(tmp_path / "missing.jsonl"), env=env)
    assert missing.returncode == 2 and "No query file" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.integration
def test_search_prints_ranked_results(demo_index: dict[str, object]) -> None:
    env: dict[str, str] = demo_index["env"]  # type: ignore[assignment]
    out = semantic_index("search", "tent for backpacking", "--top-k", "3", "--json", env=env)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 3
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    assert {"document_id", "title", "passages", "metadata"} <= set(rows[0])  # documents: default
    assert len({r["document_id"] for r in rows}) == 3
    assert {"chunk_id", "position", "snippet"} <= set(rows[0]["passages"][0])

    chunks = semantic_index(
        "search", "tent for backpacking", "-k", "3", "--group-by", "chunk", "--json", env=env
    )
    assert chunks.returncode == 0, chunks.stderr
    first = json.loads(chunks.stdout.splitlines()[0])
    assert {"chunk_id", "document_id", "title", "snippet", "metadata"} <= set(first)

    by_rule = semantic_index(
        "search",
        "tent for backpacking",
        *("-k", "3", "--mode", "vector", "--group-rule", "sum_top", "--json"),
        env=env,
    )
    assert by_rule.returncode == 0, by_rule.stderr
    docs = [json.loads(line) for line in by_rule.stdout.splitlines()]
    assert docs[0]["score"] == pytest.approx(sum(p["score"] for p in docs[0]["passages"]), abs=1e-3)

    filtered = semantic_index(
        "search", "gift", "--filter", '{"category": "books"}', "--json", env=env
    )
    assert filtered.returncode == 0, filtered.stderr
    assert {json.loads(line)["metadata"]["category"] for line in filtered.stdout.splitlines()} == {
        "books"
    }


@pytest.mark.integration
def test_search_rejects_bad_input(demo_index: dict[str, object]) -> None:
    env: dict[str, str] = demo_index["env"]  # type: ignore[assignment]
    bad_json = semantic_index("search", "tent", "--filter", "{oops", env=env)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    bad_key = semantic_index("search", "tent", "--filter", '{"price": {"$regex": "x"}}', env=env)
    assert bad_key.returncode == 1 and "Unknown filter operator" in bad_key.stderr


def test_search_group_rule_choices(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["search", "tent", "--group-rule", "max"]).group_rule == "max"
    assert parser.parse_args(["search", "tent"]).group_rule is None  # SEARCH_GROUP_RULE
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["search", "tent", "--group-rule", "mean"])
    assert exit_.value.code == 2 and "max_bonus" in capsys.readouterr().err
