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

from tasks.sources.config import WebSourceConfig
from tasks.sources.contracts import dlt_contract
from tasks.sources.web.helpers import Crawler
from tasks.sources.web.settings import PAGE_COLUMNS


def pages_resource(config: WebSourceConfig) -> DltResource:
    """The pages table: one row per crawled page (merge on ``url``)."""

    def pages() -> Iterator[dict[str, Any]]:
        crawler = Crawler(config, dlt.current.resource_state())
        with crawler.session:
            yield from crawler.crawl()

    return dlt.resource(
        pages,
        name=config.table,
        primary_key="url",
        write_disposition="merge",
        columns=PAGE_COLUMNS,
        schema_contract=dlt_contract(config.contract),
    )


@dlt.source(max_table_nesting=0)
def web_pages(config: WebSourceConfig) -> DltResource:
    """Crawled pages of one ``web`` source declared in the sources file."""
    return pages_resource(config)
