"""The pipeline's library and its Prefect tasks, one folder per stage.

Stages: ``ingest/`` (dlt into ``raw_data``), ``transform/`` (dbt), ``index/`` (chunk, embed,
write, switch), ``search/`` (query, hybrid, evaluation), ``ops/`` (validation, report, alerts,
backup). Each stage's Prefect tasks are in its ``tasks.py``; the rest is plain Python.
Shared pieces beside them: ``settings.py`` (the one settings object), ``warehouse.py`` and
``embedded_server.py`` (Postgres), ``errors.py``, ``retry.py`` (the one retry policy),
``embedders/`` and ``stores/`` (one module per provider), ``progress.py``, ``runtime.py``.

Everything here is importable from a notebook; nothing starts a server or reads settings at
import time.
"""
