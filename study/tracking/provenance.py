"""What produced a study's results: the code version, the package versions and each invocation,
kept by the study folder and the MLflow parent run."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from study.tracking.uri import redacted

PACKAGES = ("torch", "numpy", "scipy", "pandas", "ray", "optuna", "mlflow", "h5py", "pydantic")


def package_versions() -> dict[str, str]:
    """``version.<package>`` for each dependency that shapes the results, and the Python version."""
    return {**{f"version.{p}": _version(p) for p in PACKAGES}, "python": platform.python_version()}


def code_version() -> dict[str, Any]:
    """The package version and, in a git checkout, its commit and whether it has local changes."""
    import subprocess

    from study import __version__

    out: dict[str, Any] = {"package": __version__}
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            )
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return out
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            out["git_dirty"] = bool(dirty.stdout.strip())
    return out


def invocation_record(space_file: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """What one ``study.run`` invocation asked for, as the study folder and the parent run keep it."""
    import socket

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "space": str(Path(space_file).resolve()),
        "overrides": [redacted(o) for o in overrides],
        "code": code_version(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
