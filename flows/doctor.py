"""Flow: the index doctor. Compare every serving namespace of the vector store with the ledger
(missing records, orphans, wrong dimensions, stale content hashes or metadata) and, with
``repair``, fix the drift from the embedding cache (tasks/index/doctor.py).

Found drift is announced as the event ``pipeline.index.drift`` (counts and example ids per
namespace), which an automation can turn into an alert.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

import flows  # noqa: F401  (offline defaults, also when Prefect loads this file by path)
from tasks.index.doctor import DoctorReport
from tasks.index.tasks import doctor_task
from tasks.ops.report import emit_stage_event


@flow(name="index-doctor", timeout_seconds=3 * 3600)
def doctor(repair: bool = False) -> list[DoctorReport]:
    """Check (with ``repair``: also fix) every serving namespace against the ledger."""
    reports = doctor_task(repair=repair)
    drifting = [r for r in reports if not r.clean]
    if drifting:
        emit_stage_event(
            "index",
            "drift",
            {"repaired": repair, "namespaces": [r.payload() for r in drifting]},
        )
        get_run_logger().warning(
            "Drift in %s%s", ", ".join(r.namespace for r in drifting), " (repaired)" * repair
        )
    return reports


if __name__ == "__main__":
    doctor()
