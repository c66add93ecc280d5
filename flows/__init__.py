"""Prefect flows: thin compositions of the tasks in ``tasks/``.

``from flows.main import data_pipeline`` works in a notebook after ``pip install -e .``.
"""

from tasks.runtime import apply_offline_defaults

apply_offline_defaults()
