"""Library behind the Prefect flows: settings, warehouse, ingest, transform, embed, index, search.

Everything here is importable from a notebook; nothing starts a server or reads settings at import
time.
"""
