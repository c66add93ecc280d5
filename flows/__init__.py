"""Prefect flows: thin compositions of the tasks in ``tasks/``, and the ``semantic-index`` command
(:mod:`flows.cli`).

``from flows.main import data_pipeline`` works in a notebook after ``pip install -e .``. Importing
this package applies the offline defaults, so every entry point gets them before Prefect is
imported.
"""

from tasks.runtime import apply_offline_defaults

apply_offline_defaults()
