"""What the driver does while Tune runs: a concise live view, MLflow logging and the Optuna view,
one Tune callback.

The callback runs in the driver process, so it is the only writer of the study's MLflow runs and of
its Optuna storage.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray.tune import Callback

from study import faults
from study.constants import INCOMPLETE, SUPERVISED
from study.design.plan import PretrainPoint
from study.execution.tune import Context, storage_full
from study.folder.records import PretrainRecord, Status, TrialRecord
from study.folder.store import StudyStore
from study.tracking.mlflow_runs import dataset_label, pretraining_name, trial_name
from study.tracking.uri import redacted

HEARTBEAT_S = 30.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


@dataclass
class StudyClock:
    """One time left for the whole study, shared by its phases (a grid's pretrainings, then its
    trials): each phase's wall seconds per unit of work done (a run; in a pruned grid, where every
    trial pauses at each rung and few end before the last, a fine-tuning epoch), the trials counted
    at the pretrainings' rate per run until one of them has made progress."""

    trials: int = 0  # still to run after the pretrainings
    rates: dict[str, float] = field(default_factory=dict)

    def left(self, phase: str, elapsed: float, finished: float, total: float) -> float | None:
        if finished:
            self.rates[phase] = elapsed / finished
        rate = self.rates.get(phase)
        if rate is None or finished >= total and phase == "trial":
            return None
        seconds = rate * (total - finished)
        if phase == "pretrain":
            seconds += rate * self.trials
        return seconds or None


class Progress:
    """``[ 3m12s] pretext: 12/102 done, 2 running, 88 pending, 0 failed | last ... | ~21m left``.

    It shows validation figures only (what the search optimises; test data are the report's): the
    last finished run's validation loss beside the best of its data set and label fraction. With a
    :class:`StudyClock` the time left is the whole study's, not the phase's."""

    def __init__(
        self,
        title: str,
        total: int,
        done_before: int = 0,
        *,
        clock: StudyClock | None = None,
        phase: str = "trial",
        epochs_per_trial: int | None = None,
    ) -> None:
        self.title, self.total, self.before = title, total, done_before
        self.clock, self.phase = clock or StudyClock(), phase
        self.done = self.failed = self.running = 0
        # A pruned grid's time left counts fine-tuning epochs: run (at each rung and at the end) and
        # still to run (a trial stopped or ended early takes its remaining budget off the total).
        self.epochs_per_trial = epochs_per_trial
        self.work_total = float(total * (epochs_per_trial or 1))
        self.work_done = 0.0
        self.credited: dict[str, int] = {}  # trial -> its epochs counted so far (pruned grids)
        self.n_stopped = 0
        self.last_note: str | None = None
        self.best: dict[tuple, tuple[float, str]] = {}  # (data set, label fraction) -> (val loss, label)
        self.started = self.last = time.time()
        self.line(f"{total} to run" + (f" ({done_before} finished before)" if done_before else ""))

    def line(self, note: str = "") -> None:
        elapsed = time.time() - self.started
        pending = self.total - self.done - self.failed - self.running
        parts = [
            f"[{_clock(elapsed):>7}] {self.title}: {self.before + self.done}/{self.before + self.total} done, "
            f"{self.running} running, {max(pending, 0)} pending, {self.failed} failed"
            + (f", {self.n_stopped} stopped by pruning" if self.n_stopped else "")
        ]
        if self.last_note:
            parts.append(self.last_note)
        left = self.clock.left(self.phase, elapsed, self.work_done, self.work_total)
        if left is not None:
            parts.append(
                f"~{_clock(left)} left"
                + (" (with the trials)" if self.phase == "pretrain" and self.clock.trials else "")
            )
        if note:
            parts.append(note)
        print(" | ".join(parts), flush=True)
        self.last = time.time()

    def reached(self, trial: str, epoch: int) -> None:
        """A pruned grid's trial paused at a rung after ``epoch`` fine-tuning epochs in all."""
        self.work_done += max(0, epoch - self.credited.get(trial, 0))
        self.credited[trial] = max(epoch, self.credited.get(trial, 0))

    def stopped(self, trial: str, epoch: int) -> None:
        """A pruned grid's rung stopped ``trial`` after ``epoch`` epochs: ended on purpose."""
        self._count(trial, epoch)
        self.done += 1
        self.n_stopped += 1

    def _count(self, trial: str | None, epochs: int | None) -> None:
        if not self.epochs_per_trial:
            self.work_done += 1
            return
        before = self.credited.pop(trial, 0)
        ran = max(before, min(self.epochs_per_trial, epochs if epochs is not None else before))
        self.work_done += ran - before
        self.work_total -= self.epochs_per_trial - ran

    def finished(self, result: TrialRecord | PretrainRecord | None, label: str, trial: str | None = None) -> None:
        self.running = max(0, self.running - 1)
        if result is None or not result.finished:
            self._count(trial, None)  # what it ran is done; the rest of its budget will not run
        else:
            self._count(trial, int((getattr(result, "metrics", None) or {}).get("epochs", self.epochs_per_trial or 1)))
        if result is None or not result.finished:
            self.failed += 1
            reason = "" if result is None else f": {result.reason[:80]}"
            self.line(f"failed {label}{reason}")
            return
        self.done += 1
        if isinstance(result, TrialRecord):
            where = (result.dataset, result.label_fraction)
            value = result.val_loss
            if where not in self.best or value < self.best[where][0]:
                self.best[where] = (value, label.split(" | ")[0])  # its design: the rest is where
            best, who = self.best[where]
            self.last_note = f"last {label}: validation loss {value:.3f}" + (
                f" (best there {best:.3f}, {who})" if value > best else " (best there)"
            )
        elif result.best_val_loss is not None:
            self.last_note = f"last {label}: inpainting validation loss {result.best_val_loss:.4g}"
        self.line()

    def tick(self) -> None:
        if time.time() - self.last > HEARTBEAT_S:
            self.line()


class StudyCallback(Callback):
    """Maps each Tune trial to its study trial, logs it to MLflow and keeps the live view."""

    def __init__(
        self,
        tracker: Any,
        context: Context,
        progress: Progress,
        *,
        kind: str = "trial",
        sampled: bool = False,
        halt: Any = None,
        search_log: Any = None,
    ) -> None:
        self.tracker, self.context, self.progress = tracker, context, progress
        self.kind, self.sampled, self.halt, self.search_log = kind, sampled, halt, search_log
        self.store = context.store
        self.runs: dict[str, tuple[Any, str | None]] = {}
        self.pretrain_runs: dict[str, str] = {}  # Tune trial id -> the run of the pretraining it may make

    def _examples(self, point: PretrainPoint):
        """Draws the pretraining's masks on one of its data set's slices, when the run ends."""
        from study.report._figures import mask_examples

        return lambda: mask_examples(point, self.context.data_paths.get(point.dataset))

    def _finish_pretraining(self, point: PretrainPoint, run_id: str | None) -> PretrainRecord | None:
        done = self.store.pretrain_result(point.key)
        if done is not None and run_id is not None:
            self.tracker.finish_pretraining(run_id, done, self._examples(point))
        return done

    def _label(self, config: dict) -> str:
        if self.kind == "pretrain":
            point = PretrainPoint.from_json(config["point"])
            return f"{pretraining_name(point)} | {dataset_label(point.dataset)}"
        return trial_name(self.context.trial_of(config))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.running += 1
        if self.kind == "pretrain":
            pre = PretrainPoint.from_json(trial.config["point"])
            self.runs[trial.trial_id] = (pre, self.tracker.start_pretraining(pre) if self.tracker else None)
            return
        point = self.context.trial_of(trial.config)
        if self.sampled and trial.trial_id not in self.runs:
            self.store.add_draw(dict(trial.config), point.id)
        pre_run = None
        if point.pretraining is not None:  # made first by a grid, or lazily by this trial in a sampled search
            pre_run = self.tracker.start_pretraining(point.pretraining)
            self.pretrain_runs[trial.trial_id] = pre_run
        self.runs[trial.trial_id] = (point, self.tracker.start_trial(point, pre_run))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        point, run_id = self.runs.get(trial.trial_id, (None, None))
        if result.get("stage") == "pretrain" and self.kind == "trial":
            run_id = self.pretrain_runs.get(trial.trial_id)  # a sampled trial making its pretraining
        if run_id is not None and not result.get("final") and "stage" in result:
            record = {k: v for k, v in result.items() if k in ("stage", "lr", "train_loss", "val_loss")}
            self.tracker.log_epoch(run_id, record, int(result.get("epoch", 0)))
        if not result.get("final"):
            faults.driver_point("pretrain" if self.kind == "pretrain" else "finetune")
        self.progress.tick()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        point, run_id = self.runs.get(trial.trial_id, (None, None))
        if self.kind == "pretrain":
            done = self._finish_pretraining(point, run_id)
            self.progress.finished(done, self._label(trial.config))
            return
        if point.pretraining is not None:
            self._finish_pretraining(point.pretraining, self.pretrain_runs.get(trial.trial_id))
        if trial.last_result.get("paused"):  # a pruning rung: the trial runs on once its data set is decided
            self.progress.running = max(0, self.progress.running - 1)
            self.progress.reached(point.id, int(trial.last_result.get("paused_at_epoch", 0)))
            self.progress.line(f"{self._label(trial.config)} reached rung {int(trial.last_result['rung']) + 1}")
            return
        result = self.store.trial_result(point.id)
        if result is not None:
            self.tracker.finish_trial(run_id, result)
            if self.search_log is not None:
                self.search_log.add(result)
        self.progress.finished(result, self._label(trial.config), point.id)

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
        if self.kind == "pretrain":  # its trials fail or error in their own right
            if run_id is not None:
                self.tracker.stop_trial(run_id, "FAILED", last_line(self._error_text(trial)))
            self.progress.finished(None, f"{self._label(trial.config)} (see the Tune log under {self.store.tune_dir})")
            return
        if point is None:  # it failed before it started
            self.progress.finished(None, f"{self._label(trial.config)} (see the Tune log under {self.store.tune_dir})")
            return
        attempts = len(self.store.attempts(point.id))
        reason = (
            f"{last_line(self._error_text(trial))} (after {attempts} attempt(s); the Tune log is "
            f"under {self.store.tune_dir})"
        )
        self.store.save_trial_error(point, reason)
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


def _natural(text: str) -> tuple:
    """Sorts K8 before K16 before K32: numbers in a name compared as numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part)


def summary_table(results: list[TrialRecord]) -> pd.DataFrame:
    """Mean test Dice per strategy (rows: the baseline first and marked, then the strategies with
    their numbers in order, K8 before K16) and data set x label fraction (columns)."""
    ok = pd.DataFrame(
        [
            {
                "strategy": r.strategy,
                "dataset": dataset_label(r.dataset),
                "label_fraction": r.label_fraction,
                "dice": r.dice,
            }
            for r in results
            if r.finished
        ]
    )
    if ok.empty:
        return ok
    table = ok.pivot_table(index="strategy", columns=["dataset", "label_fraction"], values="dice", aggfunc="mean")
    table = table.loc[sorted(table.index, key=lambda s: (s != SUPERVISED, _natural(s)))]
    return table.rename(index={SUPERVISED: f"{SUPERVISED} (baseline)"})


@dataclass
class Outcome:
    """What became of the planned trials: finished, failed (with a record saying why), errored
    (Tune gave up, no record) and not run at all (draws a sampled search did not make)."""

    finished: list[TrialRecord]
    failed: list[TrialRecord]
    errored: list[TrialRecord]
    not_run: int
    stopped: list[TrialRecord] = field(default_factory=list)  # by statistical early stopping, on purpose

    @property
    def complete(self) -> bool:
        return not (self.failed or self.errored or self.not_run)

    @classmethod
    def of(cls, trials: list, store: StudyStore, not_run: int) -> Outcome:
        records = {t.id: r for t in trials if (r := store.trial_result(t.id)) is not None}
        errored = [
            store.trial_error(t.id)
            or TrialRecord(trial_id=t.id, status=Status.ERRORED, reason="no result", **t.identity())
            for t in trials
            if t.id not in records
        ]
        ended = records.values()
        return cls(
            [r for r in ended if r.finished],
            [r for r in ended if not (r.finished or r.stopped)],
            errored,
            not_run,
            [r for r in ended if r.stopped],
        )


def compute_line(outcome: Outcome) -> str:
    """Fine-tuning compute used (optimiser steps x batch = images seen) and, with stopped trials,
    about what running them to the end would have used: each stopped trial counted at the median of
    the finished trials of its data set and label fraction."""

    def images(r: TrialRecord) -> float:
        return float(r.metrics.get("finetune_images", 0) or 0)

    used = sum(images(r) for r in outcome.finished + outcome.stopped)
    wall = sum(r.seconds or 0 for r in outcome.finished + outcome.stopped)
    line = f"fine-tuning compute: {used:,.0f} images (steps x batch), {wall / 60:.1f} min of trial time"
    if not outcome.stopped:
        return line
    typical = used - sum(images(r) for r in outcome.stopped)
    for r in outcome.stopped:
        peers = [images(f) for f in outcome.finished if (f.dataset, f.label_fraction) == (r.dataset, r.label_fraction)]
        typical += float(np.median(peers)) if peers else images(r)
    return line + f"; {len(outcome.stopped)} stopped trials would have made the grid about {typical:,.0f} images"


def print_summary(
    name: str, outcome: Outcome, store: StudyStore, *, uri: str, seconds: float, ui: str | None = None
) -> None:
    table = summary_table(outcome.finished)
    counts = [f"{len(outcome.finished)} trials finished", f"{len(outcome.failed)} failed"]
    counts += [f"{len(outcome.stopped)} stopped early"] if outcome.stopped else []
    counts += [f"{len(outcome.errored)} errored"] if outcome.errored else []
    counts += [f"{outcome.not_run} not run"] if outcome.not_run else []
    print(f"\n{name}: {', '.join(counts)}, {seconds / 60:.1f} min")
    if not table.empty:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print("mean test Dice per strategy (columns: data set, label fraction):")
            print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if outcome.stopped or outcome.finished:
        print(compute_line(outcome))
    for kind, records in (("failed", outcome.failed), ("errored", outcome.errored)):
        for r in records:
            print(f"  {kind}: {r.trial_id} {r.strategy} {r.dataset} {r.label_fraction}: {r.reason}")
    if not outcome.complete:
        print(
            f"the study is incomplete (exit status {INCOMPLETE}): failed trials keep their result; errored and "
            "unrun ones run again when the same command is repeated"
        )
    print(f"study folder: {store.root}")
    if uri.startswith("sqlite"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        print(
            f"MLflow: {uri}: run `mlflow ui` in {folder}, then open {ui or 'http://127.0.0.1:5000'}"
            + (" (the training runs)" if ui else "")
        )
    else:
        print(f"MLflow: {redacted(uri)}" + (f": {ui}" if ui else ""))
    print(f"Optuna: optuna-dashboard {store.optuna_storage}")
    sys.stdout.flush()
