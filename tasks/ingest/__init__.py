"""Ingest: load the declared sources into the warehouse's ``raw_data`` schema with dlt.

``sources/`` holds the sources file's models and one dlt source package per kind (csv, rest_api,
web); ``load.py`` runs one source's dlt pipeline (locking, crash recovery, clear errors);
``tasks.py`` holds the stage's Prefect tasks.
"""
