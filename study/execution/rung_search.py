"""The Tune searcher of a pruned grid: trials run rung by rung, stopped by ``study.execution.pruning``.

Each Tune trial is one stretch of a study trial: up to its next rung, or to the end once every
rung it passed was decided. A trial that reaches a rung saves its per-case validation Dice (with
each case's subject: patients are what is compared) and ends its Tune trial, so it frees its slot
and a data set with more trials than slots cannot deadlock. When the last trial of a data set has
reached a rung, the rung is decided (the tests of ``study.execution.pruning.decide``), the decisions are
written to the study folder and the stopped configurations' trials get their stopped record; the
survivors are handed out again and resume from their checkpoints. Everything the searcher knows
is read back from the study folder, so a driver killed between rungs resumes with the decisions
already made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from study import faults
from study.analysis import pooled_fractions
from study.constants import SUPERVISED
from study.design.plan import TrialPoint
from study.design.spec import StudySpec
from study.execution.pruning import Decision, decide, rung_epochs, unit_values
from study.folder.records import Status, TrialRecord
from study.folder.store import StudyStore

FINAL = "final"  # the rung file of a trial that ended: its validation Dice for the rungs after it


class RungSearch(Searcher):
    def __init__(
        self,
        trials: list[TrialPoint],
        store: StudyStore,
        spec: StudySpec,
        metric: str,
        on_stop: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode="min")
        self.store, self.spec = store, spec
        self.on_stop = on_stop  # (trial id, its epochs run): the live view's count and time left
        self.epochs = rung_epochs(spec.pruning.rungs, spec.scale.finetune_max_epochs)
        self.trials = {t.id: t for t in trials}
        self.running: dict[str, str] = {}  # Tune trial id -> study trial id
        # Trials with a result (never taken back within an invocation), or whose Tune retries this
        # invocation are spent: no value to wait for.
        self.ended: set[str] = set()
        self.pooled = {ds: pooled_fractions(spec.label_fractions, None) for ds in spec.datasets}
        # Rung files and decisions are written once and never change: each is read once, not on
        # every one of Tune's many suggest() calls.
        self._reached: dict[tuple[str, int | str], dict] = {}
        self._decisions: dict[tuple[str, int], list[Decision]] = {}
        for dataset in spec.datasets:
            self._decide(dataset)  # a driver killed after the last pause of a rung decides it now

    # -- state, all from the study folder -------------------------------------------------------

    def _ended(self, trial_id: str) -> bool:
        if trial_id not in self.ended and self.store.trial_result(trial_id) is not None:
            self.ended.add(trial_id)
        return trial_id in self.ended

    def _rung_values(self, trial_id: str, rung: int | str) -> dict | None:
        if (trial_id, rung) not in self._reached:
            record = self.store.rung_values(trial_id, rung)
            if record is None:
                return None
            self._reached[trial_id, rung] = record
        return self._reached[trial_id, rung]

    def _rung_decisions(self, dataset: str, rung: int) -> list[Decision] | None:
        if (dataset, rung) not in self._decisions:
            saved = self.store.rung_decisions(dataset, rung)
            if saved is None:
                return None
            self._decisions[dataset, rung] = [Decision.from_json(d) for d in saved]
        return self._decisions[dataset, rung]

    def _next_rung(self, trial_id: str) -> int:
        """The first rung the trial has not reached; ``len(self.epochs)``: none is left."""
        for r in range(len(self.epochs)):
            if self._rung_values(trial_id, r) is None:
                return r
        return len(self.epochs)

    def _decided(self, dataset: str, rung: int) -> bool:
        return self._rung_decisions(dataset, rung) is not None

    def _runnable(self, trial: TrialPoint) -> int | None:
        """The rung the trial may run to now, or None while it waits (or has ended)."""
        if trial.id in self.running.values() or self._ended(trial.id):
            return None
        target = self._next_rung(trial.id)
        if all(self._decided(trial.dataset, r) for r in range(target)):
            return target
        return None

    # -- Tune's side ----------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict | None:
        for trial in self.trials.values():
            target = self._runnable(trial)
            if target is not None:
                self.running[trial_id] = trial.id
                until = self.epochs[target] if target < len(self.epochs) else None
                return {"trial": trial.id, "rung": target, "until_epoch": until}
        if all(self._ended(t) for t in self.trials):
            return Searcher.FINISHED
        return None  # survivors wait for the rest of their data set to reach the rung

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        study_id = self.running.pop(trial_id, None)
        if study_id is None:
            return
        if error:
            self.ended.add(study_id)
        self._decide(self.trials[study_id].dataset)

    # -- decisions ------------------------------------------------------------------------------

    def _record(self, trial_id: str, rung: int) -> dict | None:
        """The trial's rung file at ``rung`` (or its final one, once it ended before it)."""
        record = self._rung_values(trial_id, rung)
        if record is None:
            result = self.store.trial_result(trial_id)
            record = self._rung_values(trial_id, FINAL) if result is not None and result.finished else None
        return record

    def _decide(self, dataset: str) -> None:
        members = [t for t in self.trials.values() if t.dataset == dataset]
        for rung in range(len(self.epochs)):
            if self._decided(dataset, rung):
                self._stop(members, rung)  # idempotent: records a driver killed mid-way did not write
                continue
            alive = [t for t in members if not self._stopped(t)]
            if any(not self._ended(t.id) and self._rung_values(t.id, rung) is None for t in alive):
                return  # some trial has not reached this rung yet
            pooled = {
                t.id: record
                for t in alive
                if t.label_fraction in self.pooled[dataset] and (record := self._record(t.id, rung)) is not None
            }
            # Every trial sees the same validation cases: one trial's subjects name them for all
            # (rung files written before subjects were recorded have none: cases are the units).
            subjects = {c: s for record in pooled.values() for c, s in (record.get("val_subject") or {}).items()}
            values, unit = unit_values(
                {i: record["val_dice"] for i, record in pooled.items()},
                configuration_of={t.id: _unit(t) for t in alive},
                cell_of={t.id: (t.label_fraction, t.seed) for t in alive},
                subject_of=subjects,
            )
            protected = {_unit(t) for t in members if t.strategy == SUPERVISED}
            decisions = decide(
                values,
                dataset=dataset,
                rung=rung,
                protected=protected,
                strategies={_unit(t): t.strategy for t in members},
                alpha=self.spec.pruning.alpha,
                min_survivors=self.spec.pruning.min_survivors,
                unit=unit,
            )
            self.store.save_rung_decisions(dataset, rung, [d.to_json() for d in decisions])
            faults.driver_point("rung")
            self._stop(members, rung)

    def _stopped_at(self, dataset: str) -> dict[str, Decision]:
        out = {}
        for rung in range(len(self.epochs)):
            for decision in self._rung_decisions(dataset, rung) or []:
                if decision.stopped:
                    out.setdefault(decision.strategy, decision)
        return out

    def _stopped(self, trial: TrialPoint) -> bool:
        return _unit(trial) in self._stopped_at(trial.dataset)

    def _stop(self, members: list[TrialPoint], rung: int) -> None:
        stopped = self._stopped_at(members[0].dataset) if members else {}
        for trial in members:
            decision = stopped.get(_unit(trial))
            if decision is None or decision.rung != rung or self.store.trial_result(trial.id) is not None:
                continue
            at = self._rung_values(trial.id, rung) or {}
            seconds = sum((self._rung_values(trial.id, r) or {}).get("seconds", 0.0) for r in range(rung + 1))
            record = TrialRecord(
                trial_id=trial.id,
                **trial.identity(),
                status=Status.STOPPED,
                seconds=seconds,
                reason=decision.reason(self.epochs[rung]),
                metrics={
                    "rung": rung,
                    "rung_epoch": self.epochs[rung],
                    "p": decision.p,
                    "p_holm": decision.p_holm,
                    **_compute(at),
                },
            )
            self.store.save_trial_result(record)
            if self.on_stop is not None:
                self.on_stop(trial.id, self.epochs[rung])


def _unit(trial: TrialPoint) -> str:
    return trial.unit


def _compute(rung_record: dict) -> dict[str, Any]:
    return {
        k: rung_record[k] for k in ("finetune_steps", "finetune_images", "step_seconds", "val_loss") if k in rung_record
    }
