"""Document-level results on real Postgres with the real local embedder: a long page with many
near-identical chunks must not take every slot, pages and filters keep working in both modes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.search.grouping import SCORE_RULES, score_document
from tasks.search.searcher import (
    DocumentResult,
    Searcher,
    SearchRequestError,
    search,
)
from tasks.settings import Settings

pytestmark = pytest.mark.integration

#: One long guide: 12 chunks that all answer the query better than anything else.
GUIDE = [
    f"Pitching a tent in strong wind, step {n}: stake the windward side first and keep the "
    f"guy lines tight (part {n} of the windy camping guide)."
    for n in range(12)
]
#: Short pages, one chunk each: some on tents, the rest elsewhere.
SHORT = {
    "tent-ref": ("outdoor", "Tent stakes reference: which stake holds in sand, snow and wind."),
    "tarp": ("outdoor", "A tarp shelter for rain: ridge line, A-frame, lean-to."),
    "stove": ("outdoor", "Camping stove troubleshooting: the flame is yellow or sputters."),
    "knife": ("kitchen", "Sharpening a chef's knife on a whetstone at fifteen degrees."),
    "pan": ("kitchen", "Seasoning a cast iron pan with a thin layer of oil."),
    "kettle": ("kitchen", "Descaling an electric kettle with citric acid."),
    "lamp": ("home", "A desk lamp with a warm light for reading at night."),
}
QUERY = "how to pitch a tent in strong wind"


@pytest.fixture(scope="module")
def pages(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a database whose namespace ``pages`` holds the guide and the short pages."""
    from tasks.embedders import get_embedder
    from tasks.stores import get_store
    from tasks.stores.base import VectorRecord
    from tests.conftest import create_database, reset_caches
    from tests.search.conftest import write_manifest

    data_dir = tmp_path_factory.mktemp("pages-data")
    write_manifest(data_dir, "pages", ["category"])
    settings = Settings(
        _env_file=None,
        database_url=create_database(pg_server),
        data_dir=data_dir,
        search_mode="vector",
    )
    rows = [("guide", n, "outdoor", "Windy camping guide", t) for n, t in enumerate(GUIDE)]
    rows += [(doc, 0, cat, doc, text) for doc, (cat, text) in SHORT.items()]
    embedder = get_embedder(settings)
    vectors = embedder.embed([r[4] for r in rows])
    store = get_store(settings)
    try:
        store.ensure_namespace("pages", embedder.dimension)
        store.upsert(
            "pages",
            [
                VectorRecord(
                    id=f"{doc}#{n}",
                    document_id=doc,
                    values=v,
                    text=text,
                    content_hash=f"{doc}{n}",
                    metadata={"category": cat, "title": title, "chunk_position": n},
                )
                for (doc, n, cat, title, text), v in zip(rows, vectors, strict=True)
            ],
        )
    finally:
        store.close()
    reset_caches()
    yield settings
    reset_caches()


@pytest.fixture
def searcher(pages: Settings) -> Iterator[Searcher]:
    with Searcher(pages) as s:
        yield s


def test_chunk_mode_is_taken_over_by_the_long_page(searcher: Searcher) -> None:
    response = searcher.search(QUERY, top_k=5)
    assert response.group_by == "chunk" and not response.documents
    assert {r.document_id for r in response.results} == {"guide"}


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_document_mode_fills_top_k_distinct_documents(searcher: Searcher, mode: str) -> None:
    response = searcher.search(
        QUERY, top_k=4, mode=mode, group_by="document", group_rule="max_bonus"
    )
    assert not response.results
    docs = response.documents
    ids = [d.document_id for d in docs]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert ids[0] == "guide"
    assert "tent-ref" in ids
    guide = docs[0]
    assert guide.title == "Windy camping guide"
    assert guide.metadata == {"category": "outdoor"}
    assert len(guide.passages) == 3  # its best three of twelve
    if mode == "vector":  # best chunk plus a bonus for its runners-up (max_bonus)
        assert guide.score > guide.passages[0].score
    assert all(p.chunk_id == f"guide#{p.position}" for p in guide.passages)
    assert [p.score for p in guide.passages] == sorted(
        (p.score for p in guide.passages), reverse=True
    )
    assert [d.score for d in docs] == sorted((d.score for d in docs), reverse=True)


def test_a_second_deeper_fetch_when_the_first_did_not_fill(searcher: Searcher) -> None:
    # top_k 3 -> the first fetch asks for 9 chunks, all of the guide: one document.
    response = searcher.search(QUERY, top_k=3, group_by="document")
    assert response.candidates["fetches"] == 2
    assert len(response.documents) == 3


def test_passages_are_highlighted(searcher: Searcher) -> None:
    response = searcher.search("whetstone", top_k=1, mode="hybrid", group_by="document")
    [knife] = response.documents
    assert knife.document_id == "knife"
    assert "<mark>whetstone</mark>" in knife.passages[0].snippet


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_document_pages_follow_one_ranking(searcher: Searcher, mode: str) -> None:
    full = searcher.search(QUERY, top_k=6, mode=mode, group_by="document").documents
    first = searcher.search(QUERY, top_k=3, mode=mode, group_by="document").documents
    second = searcher.search(QUERY, top_k=3, offset=3, mode=mode, group_by="document").documents
    assert [d.document_id for d in first + second] == [d.document_id for d in full]


def test_a_filter_applies_to_documents(searcher: Searcher) -> None:
    docs = searcher.search(
        QUERY, top_k=10, filter={"category": "kitchen"}, group_by="document"
    ).documents
    assert sorted(d.document_id for d in docs) == ["kettle", "knife", "pan"]


def test_the_index_holds_fewer_documents_than_asked(searcher: Searcher) -> None:
    docs = searcher.search(QUERY, top_k=20, group_by="document").documents
    assert len(docs) == 1 + len(SHORT)


def test_python_function_and_bad_group_by(pages: Settings) -> None:
    docs = search(QUERY, 2, None, "pages", pages, group_by="document")
    assert all(isinstance(d, DocumentResult) for d in docs)
    assert [d.document_id for d in docs][0] == "guide" and len(docs) == 2
    with Searcher(pages) as s, pytest.raises(SearchRequestError, match="group_by"):
        s.search(QUERY, group_by="page")


@pytest.mark.parametrize("rule", SCORE_RULES)
def test_each_rule_scores_documents_from_their_passages(searcher: Searcher, rule: str) -> None:
    response = searcher.search(QUERY, top_k=5, mode="vector", group_by="document", group_rule=rule)
    assert response.group_rule == rule
    for d in response.documents:  # passages are a document's best 3 chunks, all a rule reads
        expected = score_document([p.score for p in d.passages], rule)  # type: ignore[arg-type]
        assert d.score == pytest.approx(expected, abs=1e-3)
    assert [d.score for d in response.documents] == sorted(
        (d.score for d in response.documents), reverse=True
    )


def test_sum_top_puts_the_long_page_first_and_max_only_its_best_chunk(searcher: Searcher) -> None:
    by_sum = searcher.search(QUERY, top_k=3, group_by="document", group_rule="sum_top")
    guide = by_sum.documents[0]
    assert guide.document_id == "guide"
    assert guide.score == pytest.approx(sum(p.score for p in guide.passages), abs=1e-3)
    by_max = searcher.search(QUERY, top_k=3, group_by="document", group_rule="max")
    assert {d.document_id: d.score for d in by_max.documents}["guide"] == pytest.approx(
        guide.passages[0].score, abs=1e-4
    )


def test_the_setting_is_the_default_rule_and_a_request_overrides_it(pages: Settings) -> None:
    with Searcher(pages.model_copy(update={"search_group_rule": "sum_top"})) as s:
        assert s.search(QUERY, top_k=2, group_by="document").group_rule == "sum_top"
        assert s.search(QUERY, top_k=2, group_by="document", group_rule="max").group_rule == "max"
        assert s.search(QUERY, top_k=2).group_rule is None  # chunks: no rule applies


def test_python_function_takes_a_rule_and_refuses_an_unknown_one(pages: Settings) -> None:
    docs = search(QUERY, 2, None, "pages", pages, group_by="document", group_rule="sum_top")
    assert [d.document_id for d in docs][0] == "guide"
    with Searcher(pages) as s, pytest.raises(SearchRequestError, match="group_rule 'mean'"):
        s.search(QUERY, group_by="document", group_rule="mean")
    with Searcher(pages) as s, pytest.raises(SearchRequestError, match="group_rule"):
        s.search(QUERY, group_rule="mean")  # checked in chunk mode too: a typo is not ignored
