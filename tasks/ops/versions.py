"""The versions of everything that shaped a run: recorded with each index run
(``index_state.runs``), in the run report artifact and in every pipeline event, so that any output
can be traced back to the code, the sources file, the dbt models and the index configuration that
made it (``semantic-index diff`` compares two runs by them; docs/indexing.md "Versions and diff").

:func:`collect_versions` never fails a run for a version it cannot find: a field it cannot know is
``None`` (no git checkout and no ``PIPELINE_GIT_COMMIT``, no dbt manifest before the first
transform, a distribution that is not installed).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import re
import subprocess
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from tasks.errors import ConfigError
from tasks.settings import PROJECT_ROOT, Settings
from tasks.transform.manifest import manifest_path, read_manifest

logger = logging.getLogger(__name__)

#: The distribution whose version is recorded (pyproject.toml ``[project] name``).
DISTRIBUTION = "semantic-index-pipeline"

_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


@dataclass(frozen=True)
class RunVersions:
    """What made a run's outputs; a field is ``None`` when it cannot be known here."""

    #: Version of the installed ``semantic-index-pipeline`` distribution.
    package_version: str | None
    #: ``git rev-parse HEAD`` of the checkout the code runs from, else ``PIPELINE_GIT_COMMIT``.
    git_commit: str | None
    #: sha256 of the sources file (``SOURCES_FILE``).
    sources_sha256: str | None
    #: :meth:`tasks.transform.manifest.Manifest.fingerprint` of dbt's manifest.
    dbt_manifest_hash: str | None
    #: ``version`` of ``dbt_project.yml``.
    dbt_project_version: str | None
    #: The index fingerprint (embedder + chunker, :func:`tasks.index.run.index_fingerprint`).
    index_fingerprint: str | None

    def as_dict(self) -> dict[str, str | None]:
        """The fields by name (for JSON, events and the ``runs`` table)."""
        return asdict(self)


#: Field names of :class:`RunVersions`, in order.
VERSION_FIELDS = tuple(f.name for f in fields(RunVersions))


def collect_versions(settings: Settings, fingerprint: str | None = None) -> RunVersions:
    """The versions of this process's code and of the inputs ``settings`` point at.

    ``fingerprint`` is the index fingerprint when the caller knows it (an index run does).
    """
    return RunVersions(
        package_version=package_version(),
        git_commit=git_commit(PROJECT_ROOT, settings.pipeline_git_commit),
        sources_sha256=file_sha256(settings.sources_file),
        dbt_manifest_hash=manifest_hash(settings.dbt_target_dir),
        dbt_project_version=dbt_project_version(settings.dbt_project_dir),
        index_fingerprint=fingerprint,
    )


def package_version() -> str | None:
    """The installed version of :data:`DISTRIBUTION` (``None``: not installed, e.g. a bare
    checkout on ``PYTHONPATH``)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(root: Path, fallback: str | None = None) -> str | None:
    """The commit checked out at ``root``, else ``fallback`` (``PIPELINE_GIT_COMMIT``, which
    images set at build time), else ``None``.

    Git missing, ``root`` not being a checkout, or git refusing it (another owner's repository
    in a container) are all normal outside a development checkout: they give the fallback.
    """
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        done = None
    commit = done.stdout.strip() if done is not None and done.returncode == 0 else ""
    if _COMMIT.match(commit):
        return commit
    return fallback or None


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes (``None``: there is no such file)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def manifest_hash(target_dir: Path) -> str | None:
    """The fingerprint of the dbt manifest in ``target_dir`` (``None``: none written yet).

    An unreadable manifest is logged and recorded as ``None``: this is bookkeeping, and the
    stages that need the manifest (the indexer, the search service) fail on it themselves with
    the fix in their message.
    """
    path = manifest_path(target_dir)
    if not path.exists():
        return None
    try:
        return read_manifest(path).fingerprint()
    except ConfigError as exc:
        logger.warning("dbt manifest hash not recorded: %s", exc)
        return None


def dbt_project_version(project_dir: Path) -> str | None:
    """``version`` of ``dbt_project.yml`` (``None``: no file, or no version in it)."""
    try:
        project = yaml.safe_load((project_dir / "dbt_project.yml").read_text())
    except FileNotFoundError:
        return None
    version = project.get("version") if isinstance(project, dict) else None
    return None if version is None else str(version)
