"""Property-based run of every operation in the OpenAPI schema (schemathesis): no 5xx.

Bounded (``MAX_EXAMPLES`` per operation and generation mode) to keep the suite quick. Sends real
requests over HTTP to the server over the demo index, with a valid API key: schema-conforming
cases (they reach the search path) and non-conforming ones (they must be refused with 4xx).

Uses schemathesis' strategies with Hypothesis directly: its pytest plugin (lazy fixtures) does
not run under pytest 9 (``'Function' object has no attribute '_nodeid'``).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from tests.api.conftest import API_KEYS

MAX_EXAMPLES = 15
#: Operations with inputs to break (the probes take none, so they have no negative cases).
WITH_INPUTS = {"/search", "/documents/{document_id}"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_url: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    # An Err (a schema schemathesis cannot read) has no .ok(): the test fails on it, as it should.
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 5  # search, documents, healthz, readyz, metrics
    if mode == GenerationMode.NEGATIVE:
        operations = [o for o in operations if o.path in WITH_INPUTS]
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=api_url, headers={"X-API-Key": API_KEYS[0]}, timeout=60)
            statuses.append(response.status_code)
            assert response.status_code < 500, (case.as_curl_command(), response.text)

        run()
    assert statuses and max(statuses) < 500
