"""Fault injection for the reliability suite, switched on by ``SSL_STUDY_FAULT`` (off when unset).

The value is a comma-separated list of faults, each fired at a named point of the real code path:

    crash:N              a trial's worker exits after N fine-tuning epochs (once per trial)
    kill-worker:N        a trial's worker SIGKILLs itself after N fine-tuning epochs (once per study)
    raise:N              a trial raises RuntimeError after N fine-tuning epochs (once per study)
    data-error:N         a trial raises DataError after N fine-tuning epochs (every attempt: an
                         error no retry can fix)
    kill-driver:POINT    the driver SIGKILLs itself at POINT: pretrain (first pretraining epoch
                         seen), between (pretrainings done, fine-tuning not started), finetune
                         (first fine-tuning epoch seen), logging (a trial's final MLflow logging
                         half done), rung (a pruning rung decided, its stopped records not written)
    enospc:N             from the N-th write of a checkpoint or result on, a worker's writes fail
                         with OSError(ENOSPC), as on a full disk

"Once per study" faults leave a marker under ``<study>/faults/`` so a retried trial runs clean.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from pathlib import Path

FAULT_ENV = "SSL_STUDY_FAULT"
_writes = 0  # per process, for enospc:N


def _faults() -> dict[str, str]:
    out = {}
    for item in os.environ.get(FAULT_ENV, "").split(","):
        name, _, arg = item.strip().partition(":")
        if name:
            out[name] = arg
    return out


def _once(markers: Path, name: str) -> bool:
    """True for the first caller across all processes sharing the folder of ``markers``."""
    marker = markers / name
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def trial_hook(study_markers: Path, trial_markers: Path) -> Callable[[dict], None]:
    """Called with every fine-tuning epoch record of one trial attempt; fires the worker faults.
    "Once per study" faults mark themselves in ``study_markers``, "once per trial" in ``trial_markers``."""
    faults = _faults()
    if not faults.keys() & {"crash", "kill-worker", "raise", "data-error"}:
        return lambda record: None
    seen: list[dict] = []

    def hook(record: dict) -> None:
        seen.append(record)
        if "crash" in faults and len(seen) >= int(faults["crash"]) and _once(trial_markers, "crashed-once"):
            os._exit(1)
        if "kill-worker" in faults and len(seen) >= int(faults["kill-worker"]) and _once(study_markers, "kill-worker"):
            _kill_self()
        if "raise" in faults and len(seen) >= int(faults["raise"]) and _once(study_markers, "raise"):
            raise RuntimeError(f"injected fault after {len(seen)} fine-tuning epochs")
        if "data-error" in faults and len(seen) >= int(faults["data-error"]):
            from study.errors import DataError

            raise DataError(f"injected data error after {len(seen)} fine-tuning epochs")

    return hook


def driver_point(point: str) -> None:
    """The driver dies here when ``kill-driver:<point>`` is set."""
    if _faults().get("kill-driver") == point:
        _kill_self()


def before_write(path: Path) -> None:
    """Raises OSError(ENOSPC) once the worker's write budget of ``enospc:N`` is spent."""
    global _writes
    limit = _faults().get("enospc")
    if limit is None:
        return
    _writes += 1
    if _writes >= int(limit or 1):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
