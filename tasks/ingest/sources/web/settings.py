"""Constants of the web source."""

from __future__ import annotations

from dlt.common.schema.typing import TTableSchemaColumns

#: Content types stored as pages.
HTML_TYPES = ("text/html", "application/xhtml+xml")

#: Redirect hops followed per page (each is checked against the domains and the SSRF guard).
MAX_REDIRECTS = 10

#: Columns of the pages table (documents models read these).
PAGE_COLUMNS: TTableSchemaColumns = {
    "url": {"data_type": "text", "nullable": False},
    "canonical_url": {"data_type": "text"},
    "title": {"data_type": "text"},
    "text": {"data_type": "text"},
    "headings": {"data_type": "json"},
    "sections": {"data_type": "json"},
    "language": {"data_type": "text"},
    "last_modified": {"data_type": "timestamp"},
    "etag": {"data_type": "text"},
    "content_hash": {"data_type": "text", "nullable": False},
    "depth": {"data_type": "bigint"},
    "fetched_at": {"data_type": "timestamp", "nullable": False},
    # Set only on the row that deletes a page that is gone (404/410): dlt's merge removes the
    # stored row and never inserts this one.
    "deleted": {"data_type": "bool", "hard_delete": True},
}

#: Statuses that mean a page stored earlier is gone for good.
GONE_STATUSES = frozenset({404, 410})

#: Version of the row layout. A page remembered under an older one is fetched without
#: conditional headers and stored again once, so a new column (2: ``sections``) gets filled.
ROW_LAYOUT = 2

#: Characters (whitespace removed) of a section's first text used to find it in the stored text.
PROBE_CHARS = 40

#: Permalink marks that documentation generators append to headings (Sphinx: the pilcrow).
HEADING_LINK_MARKS = "¶§#"
