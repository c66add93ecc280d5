"""Hybrid search on a real index: exact codes the embeddings miss, filters on both sides,
highlighted snippets, request validation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tasks.search.searcher import InvalidFilter, InvalidQuery, Searcher, SearchRequestError, search
from tasks.settings import Settings
from tasks.warehouse import get_warehouse

Docs = list[dict[str, object]]


@pytest.fixture
def searcher(code_index: tuple[Settings, Docs]) -> Iterator[Searcher]:
    settings, _ = code_index
    with Searcher(settings) as s:
        yield s


def test_hybrid_finds_exact_codes_that_vector_search_misses(
    searcher: Searcher, code_index: tuple[Settings, Docs]
) -> None:
    _, docs = code_index
    missed = []
    for doc in docs:
        top = searcher.search(str(doc["code"]), top_k=1, mode="vector").results
        if top[0].document_id != doc["id"]:
            missed.append(doc)
    # The fixture's point: codes differ by a few characters, embeddings blur them.
    assert len(missed) >= 5, "fixture no longer has codes vector search misses"
    for doc in missed:
        top = searcher.search(str(doc["code"]), top_k=3, mode="hybrid").results
        assert top[0].document_id == doc["id"], doc["code"]
        assert f"<mark>{str(doc['code']).lower()}</mark>" in top[0].snippet.lower()


def test_hybrid_keeps_semantic_results_when_no_word_matches(searcher: Searcher) -> None:
    vector = searcher.search("torch you wear on your forehead", top_k=5, mode="vector")
    hybrid = searcher.search("torch you wear on your forehead", top_k=5, mode="hybrid")
    assert hybrid.candidates["fulltext"] == 0
    assert [r.chunk_id for r in hybrid.results] == [r.chunk_id for r in vector.results]
    assert "headlamp" in (hybrid.results[0].title or "")


def test_filters_apply_to_the_full_text_side_too(
    searcher: Searcher, code_index: tuple[Settings, Docs]
) -> None:
    _, docs = code_index
    target, other = docs[3], docs[4]
    response = searcher.search(
        str(target["code"]), top_k=5, mode="hybrid", filter={"code": str(other["code"])}
    )
    assert [r.document_id for r in response.results] == [other["id"]]
    response = searcher.search(
        str(target["code"]),
        top_k=5,
        mode="hybrid",
        filter={"code": {"$in": [str(target["code"]), str(other["code"])]}},
    )
    assert response.results[0].document_id == target["id"]
    assert {r.document_id for r in response.results} == {target["id"], other["id"]}


def test_full_text_index_is_created_once_and_idempotently(
    searcher: Searcher, code_index: tuple[Settings, Docs]
) -> None:
    settings, _ = code_index
    searcher.search("ZX", top_k=1, mode="hybrid")
    from tasks.search.fulltext import chunk_text_table

    table = chunk_text_table(settings, "codes")
    assert searcher.fulltext.ensure_index(table)
    assert searcher.fulltext.ensure_index(table)
    with get_warehouse(settings).connect() as conn:
        rows = conn.execute(
            "select indexdef from pg_indexes where schemaname = %s and tablename = %s "
            "and indexdef ilike %s",
            (settings.vector_schema, "codes", "%to_tsvector%"),
        ).fetchall()
    assert len(rows) == 1
    assert "gin" in rows[0][0].lower()


@pytest.mark.parametrize(
    "bad",
    [
        {"colour": "red"},  # not a declared metadata column
        {"title": "x"},  # carried in metadata, but not declared filterable
        {"code": {"$regex": "ZX.*"}},  # unknown operator
        {"code": {"$in": []}},
        {"code": None},
        {"code'; drop table codes; --": "x"},
    ],
)
def test_undeclared_keys_and_bad_operators_are_refused(
    searcher: Searcher, bad: dict[str, Any]
) -> None:
    with pytest.raises(InvalidFilter):
        searcher.search("ZX", top_k=1, filter=bad)


def test_bad_requests_say_what_to_change(searcher: Searcher) -> None:
    with pytest.raises(InvalidQuery, match="empty"):
        searcher.search("   ")
    with pytest.raises(InvalidQuery, match="SEARCH_MAX_QUERY_CHARS"):
        searcher.search("x" * (searcher.settings.search_max_query_chars + 1))
    with pytest.raises(InvalidQuery, match="SEARCH_MAX_QUERY_TOKENS"):
        searcher.search("word " * (searcher.settings.search_max_query_tokens + 1))
    for top_k in (0, 101):
        with pytest.raises(SearchRequestError, match="top_k"):
            searcher.search("tent", top_k=top_k)
    with pytest.raises(SearchRequestError, match="mode"):
        searcher.search("tent", mode="keyword")
    with pytest.raises(SearchRequestError, match="Unknown namespace"):
        searcher.search("tent", namespace="nope")


def test_one_off_search_keeps_its_old_signature(code_index: tuple[Settings, Docs]) -> None:
    settings, docs = code_index
    results = search(str(docs[0]["code"]), 2, None, "codes", settings, mode="hybrid")
    assert results[0].document_id == docs[0]["id"]
    assert results[0].title and str(docs[0]["code"]) in results[0].title


def test_query_text_is_never_sql(searcher: Searcher) -> None:
    for query in ["'); drop table codes; --", "a & b | !c", "\\\\", "<b>x</b>", "ZX:*"]:
        response = searcher.search(query, top_k=3, mode="hybrid")
        for r in response.results:
            assert "<b>" not in r.snippet  # text is HTML-escaped around our <mark>s
    with psycopg.connect(searcher.fulltext.conn.info.dsn) as conn:
        row = conn.execute("select to_regclass('semantic_index.codes')").fetchone()
        assert row is not None and row[0]


def test_a_rebuilt_namespace_can_be_searched_before_it_is_switched_in(
    code_index: tuple[Settings, Docs],
) -> None:
    from tasks.stores import get_store
    from tasks.stores.base import VectorRecord

    settings, docs = code_index
    with Searcher(settings) as live:
        vector = live.embedder.embed_query(str(docs[0]["text"]))
    store = get_store(settings)
    try:
        store.ensure_namespace("codes_rebuilt", len(vector))
        store.upsert(
            "codes_rebuilt",
            [VectorRecord("new:1#0", "new:1", vector, "Rebuilt note ZX-0000-NEW", "h", {})],
        )
    finally:
        store.close()
    with Searcher(settings, physical_namespaces={"codes": "codes_rebuilt"}) as candidate:
        for mode in ("vector", "hybrid"):
            results = candidate.search("ZX-0000-NEW", top_k=5, mode=mode).results
            assert [r.document_id for r in results] == ["new:1"]
        doc = candidate.document("new:1")
        assert doc is not None and doc.chunks[0]["text"] == "Rebuilt note ZX-0000-NEW"
    with Searcher(settings) as live:  # the serving namespace is untouched
        assert live.document("new:1") is None
