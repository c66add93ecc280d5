"""The embedding cache is pruned of entries no chunk uses, after the retention, at most daily."""

from __future__ import annotations

import psycopg
import pytest

from tasks.index.embedding_cache import EmbeddingCache
from tasks.index.ledger import Ledger
from tasks.settings import get_settings
from tasks.warehouse import get_warehouse


def _chunk(conn: psycopg.Connection, content_hash: str) -> None:
    conn.execute(
        "insert into index_state.chunks (namespace, chunk_id, logical_namespace, document_id, "
        "position, content_hash, metadata_hash, text, metadata, fingerprint, state) "
        "values ('products', %s, 'products', 'doc', 0, %s, 'm', 't', '{}', 'f', 'written')",
        (f"doc#{content_hash}", content_hash),
    )


def test_prune_keeps_used_and_recent_entries_and_runs_at_most_daily(
    env: pytest.MonkeyPatch,
) -> None:
    warehouse = get_warehouse(get_settings())
    ledger = Ledger(warehouse, "index_state")
    ledger.setup()
    cache = EmbeddingCache("index_state")
    conn = ledger.conn
    cache.setup(conn)
    cache.setup(conn)  # idempotent
    in_use = ledger.hashes_in_use()
    cache.put(conn, "fp", {h: [0.5, 0.25] for h in ("old-unused", "old-used", "new-unused")})
    conn.execute(
        "update index_state.embedding_cache set created_at = now() - interval '40 days' "
        "where content_hash like 'old-%%'"
    )
    _chunk(conn, "old-used")

    assert cache.prune(conn, older_than_days=30, in_use=in_use) == 1
    assert cache.get(conn, "fp", ["old-unused", "old-used", "new-unused"]).keys() == {
        "old-used",
        "new-unused",
    }
    # pruned less than a day ago: skipped
    assert cache.prune(conn, older_than_days=0, in_use=in_use) is None

    conn.execute("update index_state.cache_prunes set pruned_at = now() - interval '25 hours'")
    conn.execute("update index_state.embedding_cache set created_at = now() - interval '1 hour'")
    # a day later, with no grace: new-unused goes
    assert cache.prune(conn, older_than_days=0, in_use=in_use) == 1
    assert cache.count(conn) == 1
    ledger.close()
