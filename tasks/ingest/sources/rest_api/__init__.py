"""dlt source for REST APIs declared in the sources file, built on dlt's ``rest_api`` source."""

from __future__ import annotations

from dlt.sources import DltSource
from dlt.sources.rest_api import rest_api_source

from tasks.ingest.sources.config import RestApiSourceConfig
from tasks.ingest.sources.contracts import dlt_contract
from tasks.ingest.sources.http import SafeSession
from tasks.ingest.sources.rest_api.helpers import contract_step, rest_api_config


def rest_api(config: RestApiSourceConfig) -> DltSource:
    """All resources of one ``rest_api`` source, with retries, auth and the declared contract.

    Incremental cursors are dlt ``Incremental`` objects, so their last value lives in the
    pipeline's state and is only committed with a completed load.
    """
    # REST APIs are declared by the operator, not discovered: they may be internal services.
    session = SafeSession(config.http, allow_private=True, check_json=True)
    source = rest_api_source(
        rest_api_config(config, session),
        name=config.name,
        max_table_nesting=0,
        schema_contract=dlt_contract(config.contract),
    )
    for spec in config.resources:
        if spec.columns and spec.name in source.resources:
            source.resources[spec.name].add_step(
                contract_step(spec.name, spec.columns, config.contract)
            )
    return source
