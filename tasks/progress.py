"""Progress of long work, phase by phase, with rate and ETA from the first update.

The indexer reports four phases per namespace (``chunking`` documents, ``planning`` the diff
and its token count, ``embedding`` chunks, ``writing`` chunks to the store). Each phase has a
known total from its start, so every update carries a rate and an ETA. :class:`Progress` measures
and throttles; what shows the updates (a log line, a tqdm bar, a Prefect progress artifact) is a
callback, so the library stays free of Prefect and terminals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: The indexer's phases and their share of an index run's overall progress (embedding and
#: writing are where the time goes when anything changed).
INDEX_PHASE_WEIGHTS = {"chunking": 0.1, "planning": 0.1, "embedding": 0.5, "writing": 0.3}


@dataclass(frozen=True)
class PhaseUpdate:
    """Where one phase of one namespace stands."""

    namespace: str
    phase: str
    done: int
    total: int
    unit: str
    elapsed_s: float

    @property
    def finished(self) -> bool:
        """Whether the phase has done all of its work."""
        return self.done >= self.total

    @property
    def rate(self) -> float | None:
        """Units per second so far (``None`` before any unit or any time)."""
        if self.done <= 0 or self.elapsed_s <= 0:
            return None
        return self.done / self.elapsed_s

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (0 when finished, ``None`` when unknown)."""
        if self.finished:
            return 0.0
        rate = self.rate
        return None if rate is None else (self.total - self.done) / rate

    def to_text(self) -> str:
        """E.g. ``products: embedding 1280/8554 chunks (15%), 21.3 chunks/s, ETA 5m41s``."""
        percent = 100.0 * self.done / self.total if self.total else 100.0
        text = (
            f"{self.namespace}: {self.phase} {self.done}/{self.total} {self.unit} ({percent:.0f}%)"
        )
        rate = self.rate
        text += f", {rate:.1f} {self.unit}/s" if rate is not None else ", rate pending"
        if self.finished:
            return text + f", done in {format_duration(self.elapsed_s)}"
        eta = self.eta_s
        return text + (f", ETA {format_duration(eta)}" if eta is not None else ", ETA pending")


def format_duration(seconds: float) -> str:
    """``42s``, ``5m41s``, ``2h03m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


ProgressCallback = Callable[[PhaseUpdate], None]


class Phase:
    """One running phase: call :meth:`advance` as work is done."""

    def __init__(self, progress: Progress, phase: str, total: int, unit: str) -> None:
        self._progress = progress
        self.phase = phase
        self.total = total
        self.unit = unit
        self.done = 0
        self._started = progress.clock()
        self._last_emit: float | None = None
        self._emit(force=True)  # the start: "0/N", so a long first step is visible at once

    def advance(self, n: int = 1) -> None:
        """Record ``n`` more units done."""
        self.done += n
        self._emit(force=self.done >= self.total)

    def finish(self) -> None:
        """Mark the phase complete (reports it once if not reported complete already)."""
        if self.done < self.total:
            self.done = self.total
            self._emit(force=True)

    def _emit(self, force: bool) -> None:
        now = self._progress.clock()
        if (
            not force
            and self._last_emit is not None
            and now - self._last_emit < self._progress.interval_s
        ):
            return
        self._last_emit = now
        self._progress.callback(
            PhaseUpdate(
                namespace=self._progress.namespace,
                phase=self.phase,
                done=self.done,
                total=self.total,
                unit=self.unit,
                elapsed_s=now - self._started,
            )
        )


class Progress:
    """Phases of one namespace's work, reported to ``callback`` at most every ``interval_s``
    per phase (the start and the end of each phase are always reported)."""

    def __init__(
        self,
        namespace: str,
        callback: ProgressCallback | None,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace = namespace
        self.callback: ProgressCallback = callback or (lambda update: None)
        self.interval_s = interval_s
        self.clock = clock

    def phase(self, name: str, total: int, unit: str = "chunks") -> Phase:
        """Start phase ``name`` with ``total`` units of work."""
        return Phase(self, name, total, unit)


class OverallProgress:
    """One percentage for a whole index run, from its phases' updates (for a progress bar that
    only moves forward, e.g. Prefect's progress artifact)."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = weights or INDEX_PHASE_WEIGHTS
        self._fractions: dict[str, float] = {}

    def update(self, update: PhaseUpdate) -> float:
        """Record ``update``; return the run's progress in percent (0-100)."""
        fraction = update.done / update.total if update.total else 1.0
        self._fractions[update.phase] = min(1.0, fraction)
        total = sum(self.weights.values())
        return 100.0 * sum(self.weights.get(p, 0) * f for p, f in self._fractions.items()) / total
