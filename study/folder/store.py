"""The study folder: the only code that knows its layout (the role Optuna's storage plays for a study).

Everything a study makes lives here, so any process on any node sharing the folder can resume it::

    study.json                       the spec as run, the plan, the MLflow parent run id
    data_checked.json                data files whose voxels passed the check (path, size, mtime)
    pretrain/<key>/result.json       one pretraining's record; weights.pt, inpainting.csv, work/ (until the record)
    pretrain/<key>.lock              held while the pretraining runs: it runs once
    pretrain/executed.log            one line per pretraining actually run
    trials/<id>/trial.json           the trial's configuration
    trials/<id>/result.json          its record, written last: its presence means the trial ended
    trials/<id>/error.json           why Tune gave up on it without a result (retried by a later run)
    trials/<id>/per_case.csv         the per-case table (docs/per-case-table.md)
    trials/<id>/attempts.jsonl       each start: the process, node and epoch it resumed from
    trials/<id>/mlflow_run_id        the MLflow run the trial logs to, across retries and resumes
    trials/<id>/rungs/<r>.json       (pruning) per-case validation Dice when the trial paused at rung r
    trials/<id>/weights.pt           the fine-tuned weights (``keep_weights: best``), written before the record
    trials/<id>/work/                per-epoch checkpoints: a crashed trial resumes here; deleted once
                                     the record is written (the same holds for a pretraining's work/)
    trials/<id>.lock                 held while the trial runs (a sampled duplicate waits)
    trials/finished.log              one line per trial record written
    pretrain/<key>/mlflow_run_id     the pretraining's own MLflow run, which its trials link to
    pruning/<data set>-rung<r>.json  (pruning) the driver's decisions at rung r: tests, p-values, who stopped
    sampled.jsonl                    (sampled searches) what Optuna drew, replayed on resume
    optuna.db                        every ended trial, an Optuna study per data set and fraction (optuna-dashboard)
    invocations.jsonl                one line per invocation: its overrides, code version, host, time
    tune/, report/, analysis/        Ray Tune's logs, the dashboard, the analysis tables
    driver.lock                      held (flock) by the one driver running the study
    driver.json                      that driver: host, pid, start, heartbeat (study/folder/driver_lock.py)

Writes of records are atomic: a reader sees the old file or the whole new one, never half of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from study import faults
from study.folder.driver_lock import DriverLock
from study.folder.records import PretrainRecord, Status, TrialRecord

if TYPE_CHECKING:
    import pandas as pd

    from study.design.plan import PretrainPoint, TrialPoint

PER_CASE = "per_case.csv"  # also what ``python -m study.train --out`` writes
_DRIVER_LOCK, _DRIVER = "driver.lock", "driver.json"


def read_json(path: Path) -> dict | None:
    """The object in ``path``; ``None`` when it is missing or not (yet) whole JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: Path, obj: dict) -> None:
    """Written aside and renamed: a reader sees the old file or the whole new one."""
    faults.before_write(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        out.write(line + "\n")


def _discard(work: Path) -> None:
    """Resume checkpoints (weights, optimiser state, best weights: four models' worth) serve only
    a run that has not ended; once its record is written they go, so disk stays bounded."""
    shutil.rmtree(work, ignore_errors=True)


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class StudyStore:
    """One study folder. Paths are absolute: Tune changes the working directory of its workers."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"StudyStore({str(self.root)!r})"

    # -- layout ------------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.root / "study.json"

    @property
    def content_record(self) -> Path:
        return self.root / "data_checked.json"

    @property
    def tune_dir(self) -> Path:
        return self.root / "tune"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def analysis_dir(self) -> Path:
        return self.root / "analysis"

    @property
    def faults_dir(self) -> Path:
        return self.root / "faults"

    def exists(self) -> bool:
        return self.state_path.is_file()

    def driver_lock(self) -> DriverLock:
        """The one-driver-per-study lock; taken by ``study.run``, probed by ``--dry-run``."""
        return DriverLock(self.root / _DRIVER_LOCK, self.root / _DRIVER, label=str(self.root))

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    def trial_dir(self, trial_id: str) -> Path:
        return self.trials_dir / trial_id

    def trial_work(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / "work"

    def trial_weights_path(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / "weights.pt"

    def per_case_path(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / PER_CASE

    def pretrain_dir(self, key: str) -> Path:
        return self.root / "pretrain" / key

    def pretrain_work(self, key: str) -> Path:
        return self.pretrain_dir(key) / "work"

    def weights_path(self, key: str) -> Path:
        return self.pretrain_dir(key) / "weights.pt"

    def inpainting_path(self, key: str) -> Path:
        return self.pretrain_dir(key) / "inpainting.csv"

    # -- the study ---------------------------------------------------------------------------------

    def read_state(self) -> dict | None:
        return read_json(self.state_path)

    def write_state(self, state: dict) -> None:
        write_json(self.state_path, state)

    def set_aside(self) -> Path | None:
        """``--fresh``: the folder is renamed, never deleted; returns the new name."""
        if not self.root.exists() or set(os.listdir(self.root)) <= {_DRIVER_LOCK, _DRIVER}:
            return None  # nothing but the lock of the driver asking
        kept = self.root.with_name(f"{self.root.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        self.root.rename(kept)
        return kept

    # -- trials ------------------------------------------------------------------------------------

    def trial_result(self, trial_id: str) -> TrialRecord | None:
        data = read_json(self.trial_dir(trial_id) / "result.json")
        return None if data is None else TrialRecord.from_json(data)

    def pending(self, trials: Iterable[TrialPoint]) -> list[TrialPoint]:
        """The trials of a plan that have no record yet (failed ones have one: they are not retried)."""
        return [t for t in trials if self.trial_result(t.id) is None]

    def save_trial_config(self, trial: TrialPoint) -> None:
        write_json(self.trial_dir(trial.id) / "trial.json", trial.to_json())

    def trial_config(self, trial_id: str) -> dict | None:
        """The configuration a trial ran with (``TrialPoint.from_json`` rebuilds it)."""
        return read_json(self.trial_dir(trial_id) / "trial.json")

    def trial_ended(self, trial_id: str) -> float | None:
        """When the trial ended (POSIX seconds): its record is written once, as it ends."""
        try:
            return (self.trial_dir(trial_id) / "result.json").stat().st_mtime
        except OSError:
            return None

    def save_trial_result(self, result: TrialRecord, per_case: pd.DataFrame | None = None) -> None:
        """The per-case table first, then the record that says the trial ended."""
        folder = self.trial_dir(result.trial_id)
        if per_case is not None:
            per_case.to_csv(folder / PER_CASE, index=False)
        write_json(folder / "result.json", result.to_json())
        (folder / "error.json").unlink(missing_ok=True)  # an earlier invocation's give-up, now superseded
        _append(self.trials_dir / "finished.log", f"{result.trial_id} {os.getpid()} {time.time():.0f}")
        _discard(self.trial_work(result.trial_id))

    # -- pruning: per-case validation Dice at each rung, and the driver's decisions ----------------

    def save_rung_values(self, trial_id: str, rung: int, record: dict) -> None:
        write_json(self.trial_dir(trial_id) / "rungs" / f"{rung}.json", record)

    def rung_values(self, trial_id: str, rung: int) -> dict | None:
        """``{"rung", "epoch", "val_dice": {case: Dice}, "val_subject": {case: subject}}`` of a trial
        paused at ``rung`` (``"final"``: of one that ended). Files written before subjects were
        recorded have no ``val_subject``: their cases are their own subjects."""
        return read_json(self.trial_dir(trial_id) / "rungs" / f"{rung}.json")

    def _decisions_path(self, dataset: str, rung: int) -> Path:
        # a data set may be a path: its file is named by a hash of it
        return self.root / "pruning" / f"{hashlib.sha256(dataset.encode()).hexdigest()[:12]}-rung{rung}.json"

    def save_rung_decisions(self, dataset: str, rung: int, decisions: list[dict]) -> None:
        """One data set's decisions at one rung, in one atomic file (one writer: the driver)."""
        write_json(self._decisions_path(dataset, rung), {"dataset": dataset, "rung": rung, "decisions": decisions})

    def rung_decisions(self, dataset: str, rung: int) -> list[dict] | None:
        data = read_json(self._decisions_path(dataset, rung))
        return None if data is None else data["decisions"]

    def save_trial_error(self, trial: TrialPoint, reason: str) -> None:
        """Why Tune gave up on a trial that left no record (its retries spent)."""
        record = TrialRecord(trial_id=trial.id, status=Status.ERRORED, reason=reason, **trial.identity())
        write_json(self.trial_dir(trial.id) / "error.json", record.to_json())

    def trial_error(self, trial_id: str) -> TrialRecord | None:
        data = read_json(self.trial_dir(trial_id) / "error.json")
        return None if data is None else TrialRecord.from_json(data)

    def results(self) -> list[TrialRecord]:
        """Every trial's record, and an ``errored`` one for each trial Tune gave up on."""
        out = []
        for folder in sorted(p for p in self.trials_dir.glob("*") if p.is_dir()):
            for name in ("result.json", "error.json"):  # a result supersedes an earlier give-up
                data = read_json(folder / name)
                if data is not None:
                    out.append(TrialRecord.from_json({"trial_id": folder.name, **data}))
                    break
        return out

    def trial_ids(self) -> list[str]:
        return sorted(p.name for p in self.trials_dir.glob("*") if p.is_dir())

    def read_per_case(self, trial_id: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_csv(self.per_case_path(trial_id))

    def trial_lock(self, trial_id: str) -> FileLock:
        return FileLock(str(self.trial_dir(trial_id)) + ".lock")

    def note_attempt(self, trial_id: str, record: dict[str, Any]) -> None:
        _append(self.trial_dir(trial_id) / "attempts.jsonl", json.dumps(record))

    def attempts(self, trial_id: str) -> list[dict]:
        return _lines(self.trial_dir(trial_id) / "attempts.jsonl")

    def run_id(self, trial_id: str) -> str | None:
        path = self.trial_dir(trial_id) / "mlflow_run_id"
        return path.read_text().strip() if path.exists() else None

    def save_run_id(self, trial_id: str, run_id: str) -> None:
        self.trial_dir(trial_id).mkdir(parents=True, exist_ok=True)
        (self.trial_dir(trial_id) / "mlflow_run_id").write_text(run_id)

    # -- sampled searches --------------------------------------------------------------------------

    def draws(self) -> list[dict]:
        """What Optuna drew, in order: ``{"params": ..., "trial_id": ...}`` (repeats included)."""
        return _lines(self.root / "sampled.jsonl")

    def add_draw(self, params: dict, trial_id: str) -> None:
        _append(self.root / "sampled.jsonl", json.dumps({"params": params, "trial_id": trial_id}))

    # -- what researchers browse -------------------------------------------------------------------

    @property
    def optuna_storage(self) -> str:
        """The RDB URL of the study's Optuna view (written by the driver alone, read by the dashboard)."""
        return f"sqlite:///{self.root / 'optuna.db'}"

    def invocations(self) -> list[dict]:
        """Every invocation of the study, oldest first."""
        return _lines(self.root / "invocations.jsonl")

    def add_invocation(self, record: dict) -> int:
        """Append one invocation; returns its number (1 for the first)."""
        _append(self.root / "invocations.jsonl", json.dumps(record, default=str))
        return len(self.invocations())

    # -- pretrainings ------------------------------------------------------------------------------

    def pretrain_run_id(self, key: str) -> str | None:
        path = self.pretrain_dir(key) / "mlflow_run_id"
        return path.read_text().strip() if path.exists() else None

    def save_pretrain_run_id(self, key: str, run_id: str) -> None:
        self.pretrain_dir(key).mkdir(parents=True, exist_ok=True)
        (self.pretrain_dir(key) / "mlflow_run_id").write_text(run_id)

    def pretrain_result(self, key: str) -> PretrainRecord | None:
        data = read_json(self.pretrain_dir(key) / "result.json")
        return None if data is None else PretrainRecord.from_json(data)

    def pending_pretrainings(self, trials: Iterable[TrialPoint]) -> dict[str, PretrainPoint]:
        points = {t.pretraining.key: t.pretraining for t in trials if t.pretraining is not None}
        return {k: p for k, p in points.items() if self.pretrain_result(k) is None}

    def save_pretrain_result(self, result: PretrainRecord) -> None:
        write_json(self.pretrain_dir(result.key) / "result.json", result.to_json())
        _append(self.root / "pretrain" / "executed.log", f"{result.key} {os.getpid()} {time.time():.0f}")
        _discard(self.pretrain_work(result.key))

    def forget_pretraining(self, key: str) -> None:
        """Weights that no longer load: the pretraining is made again."""
        self.weights_path(key).unlink(missing_ok=True)
        (self.pretrain_dir(key) / "result.json").unlink(missing_ok=True)

    def pretrain_lock(self, key: str) -> FileLock:
        self.pretrain_dir(key).mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.pretrain_dir(key)) + ".lock")

    def read_inpainting(self, key: str) -> pd.DataFrame | None:
        import pandas as pd

        path = self.inpainting_path(key)
        return pd.read_csv(path) if path.exists() else None

    def owns(self, path: Path) -> bool:
        """Whether ``path`` resolves inside this folder: a planted symlink elsewhere does not."""
        return path.resolve().is_relative_to(self.root.resolve())
