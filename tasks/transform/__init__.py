"""Transform: build and test the dbt project (``dbt_models/``) through prefect-dbt.

``dbt.py`` runs dbt and classifies its results with dbt's own types; ``manifest.py`` is the one
reader of dbt's ``manifest.json``. The stage has no Prefect task of its own: prefect-dbt mirrors
every dbt node as a task of the ``transform`` flow.
"""
