"""dlt source that crawls web pages from seed URLs and stores their clean text, one row per page.

Breadth-first from the seeds, within the allowed domains, up to ``max_pages`` fetched pages and
``max_depth`` links from a seed; robots.txt is obeyed (its Crawl-delay too, when longer than
``delay_s``). Each page's validators (ETag, Last-Modified), text hash and links live in the
resource's dlt state: the next crawl sends conditional requests, a 304 or an unchanged text hash
is not stored again, and the remembered links keep the crawl going past unchanged pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from tasks.ingest.sources.config import WebSourceConfig
from tasks.ingest.sources.contracts import dlt_contract, mark_rejected
from tasks.ingest.sources.web.helpers import Crawler
from tasks.ingest.sources.web.settings import PAGE_COLUMNS


def pages_resource(config: WebSourceConfig) -> DltResource:
    """The pages table: one row per crawled page (merge on ``url``); pages that could not be
    fetched or parsed go to ``<table>__rejected`` (dead letters)."""

    def pages() -> Iterator[Any]:
        crawler = Crawler(config, dlt.current.resource_state())
        with crawler.session:
            yield from crawler.crawl()

    resource = dlt.resource(
        pages,
        name=config.table,
        primary_key="url",
        write_disposition="merge",
        schema_contract=dlt_contract(config.contract),
    )
    # The dead letters' table variant is registered before the page columns are declared: dlt
    # starts a variant from a copy of the resource's hints, and the pages' columns (and their
    # NOT NULLs) must not become columns of ``<table>__rejected``.
    dead_letters = mark_rejected([], config.table).meta
    resource.merge_hints(dead_letters.hints, create_table_variant=True)
    resource.apply_hints(columns=PAGE_COLUMNS)
    return resource


@dlt.source(max_table_nesting=0)
def web_pages(config: WebSourceConfig) -> DltResource:
    """Crawled pages of one ``web`` source declared in the sources file."""
    return pages_resource(config)
