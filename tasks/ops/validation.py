"""Final checks that the index agrees with the documents and answers queries."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.errors import ValidationFailed


@dataclass
class ValidationReport:
    """Each check with its outcome; ``ok`` when all passed."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, passed: bool, detail: str) -> None:
        """Record one check."""
        self.checks.append((name, passed, detail))

    @property
    def ok(self) -> bool:
        """All checks passed."""
        return all(passed for _, passed, _ in self.checks)

    def raise_if_failed(self) -> None:
        """Raise :class:`ValidationFailed` listing the failed checks."""
        failed = [f"{name}: {detail}" for name, passed, detail in self.checks if not passed]
        if failed:
            raise ValidationFailed("Validation failed: " + "; ".join(failed))
