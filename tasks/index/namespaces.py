"""Logical namespaces (declared in dbt ``meta.embedding.namespace``) and the physical namespace
in the vector store that currently serves each of them.

Every index configuration (embedder + chunker fingerprint) is built into its own physical
namespace: the logical name for the very first build, ``<logical>__<fingerprint[:12]>`` for
later configurations. A new configuration is built next to the serving
one and switched over (one transaction in the ledger, :meth:`tasks.index.ledger.Ledger.switch`)
only when it is complete and validated, so search never sees an empty or mixed-model namespace.
The search path always asks :func:`serving_namespace`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tasks.index.ledger import NamespaceEntry, serving_physical
from tasks.settings import Settings, check_identifier
from tasks.warehouse import get_warehouse

logger = logging.getLogger(__name__)


def choose_target(logical: str, fingerprint: str, registered: Sequence[NamespaceEntry]) -> str:
    """The physical namespace a run with ``fingerprint`` writes into.

    The one already registered with that fingerprint (serving, or a build to resume); the
    logical name itself for the very first build (so a fresh install's table is named like its
    namespace); otherwise a new ``<logical>__<fingerprint>`` next to the serving one.
    """
    for entry in registered:
        if entry.fingerprint == fingerprint:
            return entry.physical
    if not registered:
        return logical
    return physical_name(logical, fingerprint)


def physical_name(logical: str, fingerprint: str) -> str:
    """The physical namespace that holds ``logical`` built with ``fingerprint``."""
    return check_identifier(f"{logical[:48]}__{fingerprint[:12]}", "namespace")


def serving_namespace(settings: Settings, logical: str) -> str:
    """The physical namespace that answers queries for ``logical``.

    Before the first indexing run completes (or without a ledger) that is ``logical`` itself.
    """
    physical = serving_physical(get_warehouse(settings), logical, settings.index_state_schema)
    return physical or logical
