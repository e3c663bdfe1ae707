"""What the driver does while Tune runs: a concise live view and MLflow logging, one Tune callback.

The callback runs in the driver process, so it is the only MLflow writer of the study.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import Callback

from study import faults
from study.trial import read_json, trial_dir, write_error
from study.tune import Context, finished_result, storage_full

HEARTBEAT_S = 30.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """``[ 3m12s] pretext: 12/102 done, 2 running, 88 pending, 0 failed | best ... | ~21m left``."""

    def __init__(self, title: str, total: int, done_before: int = 0) -> None:
        self.title, self.total, self.before = title, total, done_before
        self.done = self.failed = self.running = 0
        self.best: tuple[float, str] | None = None
        self.started = self.last = time.time()
        self.line(f"{total} to run" + (f" ({done_before} finished before)" if done_before else ""))

    def line(self, note: str = "") -> None:
        elapsed = time.time() - self.started
        pending = self.total - self.done - self.failed - self.running
        parts = [f"[{_clock(elapsed):>7}] {self.title}: {self.before + self.done}/{self.before + self.total} done, "
                 f"{self.running} running, {max(pending, 0)} pending, {self.failed} failed"]
        if self.best:
            parts.append(f"best Dice {self.best[0]:.3f} ({self.best[1]})")
        finished = self.done + self.failed
        if finished and finished < self.total:
            parts.append(f"~{_clock(elapsed / finished * (self.total - finished))} left")
        if note:
            parts.append(note)
        print(" | ".join(parts), flush=True)
        self.last = time.time()

    def finished(self, result: dict | None, label: str) -> None:
        self.running = max(0, self.running - 1)
        if result is None or result.get("status") == "failed":
            self.failed += 1
            reason = "" if result is None else f": {str(result.get('reason', ''))[:80]}"
            self.line(f"failed {label}{reason}")
            return
        self.done += 1
        dice = result.get("dice")
        if dice is not None and (self.best is None or dice > self.best[0]):
            self.best = (dice, label)
        self.line()

    def tick(self) -> None:
        if time.time() - self.last > HEARTBEAT_S:
            self.line()


class StudyCallback(Callback):
    """Maps each Tune trial to its study trial, logs it to MLflow and keeps the live view."""

    def __init__(self, tracker: Any, context: Context, progress: Progress, kind: str = "trial", sampled: bool = False,
                 halt: Any = None) -> None:
        self.tracker, self.context, self.progress = tracker, context, progress
        self.kind, self.sampled, self.halt = kind, sampled, halt
        self.study_dir = Path(context.study_dir)
        self.runs: dict[str, tuple[Any, str | None]] = {}

    def _label(self, config: dict) -> str:
        if self.kind == "pretrain":
            p = config["point"]
            return f"{p['dataset']} {p['task']}/K{p['patch_size']}/{p['sampler']}"
        t = self.context.trial_of(config)
        return f"{t.dataset} {t.strategy} @{t.label_fraction:g}"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.running += 1
        if self.kind == "pretrain":
            self.runs[trial.trial_id] = (None, None)
            return
        point = self.context.trial_of(trial.config)
        if self.sampled and trial.trial_id not in self.runs:
            with open(self.study_dir / "sampled.jsonl", "a") as out:
                params = {k: v for k, v in trial.config.items()}
                out.write(json.dumps({"params": params, "trial_id": point.id}) + "\n")
        self.runs[trial.trial_id] = (point, self.tracker.start_trial(point))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        point, run_id = self.runs.get(trial.trial_id, (None, None))
        if run_id is not None and not result.get("final") and "stage" in result:
            record = {k: v for k, v in result.items() if k in ("stage", "lr", "train_loss", "val_loss")}
            self.tracker.log_epoch(run_id, record, int(result.get("epoch", 0)))
        if not result.get("final"):
            faults.driver_point("pretrain" if self.kind == "pretrain" else "finetune")
        self.progress.tick()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        point, run_id = self.runs.get(trial.trial_id, (None, None))
        if self.kind == "pretrain":
            key = trial.last_result.get("key", "")
            done = read_json(self.study_dir / "pretrain" / key / "result.json")
            self.progress.finished(None if done is None else {"status": "finished", **done}, self._label(trial.config))
            return
        result = finished_result(self.study_dir, point.id)
        if result is not None:
            self.tracker.finish_trial(run_id, point.id, result)
        self.progress.finished(result, self._label(trial.config))

    @staticmethod
    def _error_text(trial: Any) -> str | None:
        try:  # Tune appends each failure's traceback to the trial's local error file
            return Path(trial.error_file).read_text()
        except Exception:  # no file: on a really full disk it may be what could not be written
            return None

    def _check_storage(self, trial: Any) -> None:
        reason = storage_full(self._error_text(trial))
        if self.halt is not None and reason and self.halt.reason is None:
            self.halt.reason = reason

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check_storage(trial)
        point, run_id = self.runs.get(trial.trial_id, (None, None))
        if point is None:  # a pretraining: its trials fail or error in their own right
            self.progress.finished(None, f"{self._label(trial.config)} (see the Tune log under {self.study_dir / 'tune'})")
            return
        log = trial_dir(self.study_dir, point.id) / "attempts.jsonl"
        attempts = len(log.read_text().splitlines()) if log.exists() else 0
        reason = f"{last_line(self._error_text(trial))} (after {attempts} attempt(s); the Tune log is under {self.study_dir / 'tune'})"
        write_error(self.study_dir, point, reason)
        if run_id is not None:
            self.tracker.stop_trial(run_id, "FAILED", reason)
        self.progress.finished(None, f"{self._label(trial.config)}: {reason}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check_storage(trial)
        self.progress.running = max(0, self.progress.running - 1)
        self.progress.line(f"retrying {self._label(trial.config)} from its last checkpoint")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.progress.tick()


def last_line(text: str | None) -> str:
    """The exception line that ends a traceback: what went wrong, in one line."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:500] if lines else "the trial errored without a traceback"


def summary_table(results: list[dict]) -> pd.DataFrame:
    """Mean test Dice per strategy (rows) and data set x label fraction (columns)."""
    ok = pd.DataFrame([r for r in results if r.get("status") == "finished"])
    if ok.empty:
        return ok
    return ok.pivot_table(index="strategy", columns=["dataset", "label_fraction"], values="dice", aggfunc="mean")
