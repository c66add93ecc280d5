"""Retry timing rules (pure functions, table-driven)."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from tasks.ingest.sources.config import HttpOptions
from tasks.ingest.sources.http import backoff_delay, retry_after_seconds

OPTIONS = HttpOptions(backoff_s=1.0, max_backoff_s=10.0)


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (10, 5.0, 10.0)]
)
def test_exponential_backoff_with_jitter_and_cap(attempt: int, low: float, high: float) -> None:
    delays = {backoff_delay(attempt, OPTIONS, None) for _ in range(50)}
    assert all(low <= d <= high for d in delays)
    assert len(delays) > 1  # jittered


@pytest.mark.parametrize(
    ("header", "expected"), [("3", 3.0), ("  7 ", 7.0), ("soon", None), (None, None)]
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header) == expected


def test_retry_after_http_date_and_cap() -> None:
    seconds = retry_after_seconds(formatdate(time.time() + 30, usegmt=True))
    assert seconds is not None and 25 <= seconds <= 31
    assert backoff_delay(1, OPTIONS, 3600.0) == 10.0  # capped at max_backoff_s
    assert backoff_delay(1, OPTIONS, 2.0) == 2.0
