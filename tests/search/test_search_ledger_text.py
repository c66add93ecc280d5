"""With Pinecone, the keyword side and document lookups read chunk text from the ledger."""

from __future__ import annotations

import json

from tasks.index.ledger import Ledger
from tasks.search.fulltext import FullTextSearch, chunk_text_table
from tasks.settings import Settings
from tasks.warehouse import get_warehouse

Docs = list[dict[str, object]]


def test_full_text_reads_the_ledger_for_pinecone(code_index: tuple[Settings, Docs]) -> None:
    settings, _ = code_index
    pinecone = settings.model_copy(update={"vector_store": "pinecone"})
    table = chunk_text_table(pinecone, "codes__abc")
    assert (table.schema, table.table) == (settings.index_state_schema, "chunks")

    warehouse = get_warehouse(settings)
    ledger = Ledger(warehouse, settings.index_state_schema)
    ledger.setup()
    rows = [  # namespace, chunk id, state, text
        ("codes__abc", "n:1#0", "written", "Pump seal kit QX-7781 for the stove"),
        ("codes__abc", "n:2#0", "pending", "Pump seal kit QX-7781, not yet in the store"),
        ("other_ns", "n:3#0", "written", "Pump seal kit QX-7781 of another namespace"),
        ("codes__abc", "n:4#0", "written", "Burner head for the stove"),
    ]
    with warehouse.connect(autocommit=True) as conn:
        for namespace, chunk_id, state, text in rows:
            conn.execute(
                f"insert into {settings.index_state_schema}.chunks (namespace, chunk_id, "
                "logical_namespace, document_id, position, content_hash, metadata_hash, text, "
                "metadata, fingerprint, state) values (%s, %s, 'codes', %s, 0, 'h', 'h', %s, "
                "%s::jsonb, 'f', %s)",
                (
                    namespace,
                    chunk_id,
                    chunk_id.split("#")[0],
                    text,
                    json.dumps({"code": "QX-7781", "chunk_position": 0}),
                    state,
                ),
            )
    fts = FullTextSearch(warehouse, settings.search_fulltext_config)
    try:
        hits = fts.search(table, "QX-7781 seal", top_k=10)
        assert [h.id for h in hits] == ["n:1#0"]  # written rows of this namespace only
        assert fts.document_chunks(table, "n:1")[0]["text"].startswith("Pump seal kit")
        assert fts.document_chunks(table, "n:2") == []  # pending
        assert fts.document_chunks(table, "n:3") == []  # other namespace
        assert fts.ensure_index(table)
    finally:
        fts.close()
