"""Operations: validate a run, report it, alert on failures, back up and restore.

``validation.py`` and ``report.py`` are a run's final checks and its report artifacts;
``alerts.py`` sets up the Prefect work pool, limits and automations; ``backup.py`` dumps and
restores the warehouse; ``tasks.py`` holds the stage's Prefect tasks.
"""
