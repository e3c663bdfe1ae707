"""The study's search as Optuna studies on disk, one per data set and label fraction, for ``optuna-dashboard``.

Tune's Optuna searcher keeps its study in memory, and a grid is not an Optuna search at all, so
the driver writes every trial that ends into Optuna's own RDB storage (``StudyStore.optuna_storage``)
as a finished Optuna trial: the design values the study varies as parameters, its objective (the
best validation loss of its fine-tuning; lower is better, named in the dashboard) as the value,
its real start and end (the record's end and seconds) as its times. The label fraction is not a
parameter: like the report, each data set and fraction is a study of its own (its "best trial"
and parameter importance are those of one fraction, as the report's ranking and effects are).
The dashboard then shows the history, timeline, parallel coordinates and parameter importance.

Only the driver writes (from its Tune callback), so SQLite has one writer. Each Optuna trial names
its study trial (user attribute ``trial_id``): a resumed study adds only what is missing. The
parameters' distributions come from the spec; a spec whose axes changed rebuilds the view from the
records, since Optuna refuses a parameter whose choices differ between trials of one study.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from study.design import axes as design_axes
from study.design.spec import StudySpec, distribution
from study.folder.records import Status, TrialRecord

OBJECTIVE_NAME = "validation loss"  # the best validation soft-Dice loss of the fine-tuning
OBJECTIVE = "best validation soft-Dice loss of the fine-tuning (lower is better); test data never steer the search"


def study_name(study: str, dataset: str, label_fraction: float) -> str:
    """``pretext/mri 5 % labels``; a data set given as a folder is named by its last component."""
    return f"{study}/{Path(dataset).name if '/' in dataset else dataset} {label_fraction * 100:g} % labels"


def describe(dist: Any) -> str:
    """A parameter's values as a person reads them: ``8, 16, 32`` or ``log-uniform 0.0003..0.03``."""
    if hasattr(dist, "choices"):
        return ", ".join("-" if c is None else str(c) for c in dist.choices)
    return f"{'log-uniform' if dist.log else 'uniform'} {dist.low:g}..{dist.high:g}"


def distributions(spec: StudySpec) -> dict[str, Any]:
    """Each parameter's Optuna distribution, the same for every trial of the study: each design
    axis by its flat name (:mod:`study.design.axes`), with the baseline's values joined (its choice of the
    baseline's axis, its own learning rates), then the seed when the study has replicates."""
    axes = spec.axes()
    path, none = design_axes.BASELINE_CHOICE
    out: dict[str, Any] = {}
    for a in design_axes.AXES:
        if a.path not in axes and a.path != path:
            continue
        axis, base, extra = axes.get(a.path, []), axes.get(f"baseline.{a.key}"), []
        if a.path == path and spec.baseline.enabled:
            extra = [none]
        elif a.baseline == design_axes.TUNED and isinstance(axis, list) and isinstance(base, list):
            extra = base
        elif a.optional and spec.pretraining is not None:
            extra = [None]
        out[a.flat] = distribution(axis, extra)
    if len(spec.replicates()) > 1:
        out["seed"] = distribution([s for s, _ in spec.replicates()])
    # Only what varies: a value every trial shares would fill the dashboard's slice, contour and
    # parallel-coordinate plots with one point each.
    return {k: v for k, v in out.items() if not hasattr(v, "choices") or len(v.choices) > 1}


class OptunaLog:
    """Writes ended trials to the study's Optuna storage; safe to call again with the same trial.
    ``ended`` (``StudyStore.trial_ended``) dates each trial by its record."""

    def __init__(self, storage: str, spec: StudySpec, ended: Callable[[str], float | None] | None = None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna, self.spec, self.ended = optuna, spec, ended
        self.storage = optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 30}})
        self.space = distributions(spec)
        self._space_text = "; ".join(f"{k}: {describe(v)}" for k, v in self.space.items()) or "(no parameter varies)"
        self._studies: dict[tuple, Any] = {}
        self._known: dict[tuple, set[str]] = {}

    def _study(self, dataset: str, fraction: float) -> Any:
        where = (dataset, fraction)
        if where in self._studies:
            return self._studies[where]
        import warnings

        name = study_name(self.spec.name, dataset, fraction)
        study = self._optuna.create_study(
            study_name=name, storage=self.storage, direction="minimize", load_if_exists=True
        )
        if study.user_attrs.get("space", self._space_text) != self._space_text:
            # The axes changed since the view was written: rebuilt from the records by sync().
            self._optuna.delete_study(study_name=name, storage=self.storage)
            study = self._optuna.create_study(study_name=name, storage=self.storage, direction="minimize")
        study.set_user_attr("space", self._space_text)
        study.set_user_attr("objective", OBJECTIVE)
        study.set_user_attr("data set", dataset)
        study.set_user_attr("label fraction", fraction)
        with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna
            warnings.simplefilter("ignore")
            study.set_metric_names([OBJECTIVE_NAME])
        self._studies[where] = study
        self._known[where] = {t.user_attrs.get("trial_id") for t in study.get_trials(deepcopy=False)}
        return study

    def _times(self, record: TrialRecord) -> tuple[Any, Any]:
        """When the trial started and ended: its record's file was written as it ended, and the
        record says how many seconds it ran (now, for a record not found)."""
        import datetime as dt

        ended = (self.ended(record.trial_id) if self.ended else None) or time.time()
        started = ended - (record.seconds or 0.0)
        return dt.datetime.fromtimestamp(started), dt.datetime.fromtimestamp(ended)

    def params(self, record: TrialRecord) -> dict[str, Any]:
        """The record's design values that the study's space holds (a baseline has no patch size)."""
        path, none = design_axes.BASELINE_CHOICE
        choice = design_axes.by_path()[path].flat
        if getattr(record, choice) != none:
            values = {a.flat: getattr(record, a.flat) for a in design_axes.AXES}
        else:  # the baseline: its choice and the values it is trained at
            values = {
                a.flat: getattr(record, a.flat)
                for a in design_axes.AXES
                if a.flat == choice or a.baseline == design_axes.TUNED
            }
        values["seed"] = record.seed
        out = {}
        for name, value in values.items():
            dist = self.space.get(name)
            optional = name in design_axes.by_flat() and design_axes.by_flat()[name].optional
            if dist is None or (value is None and not optional):
                continue
            if isinstance(dist, self._optuna.distributions.CategoricalDistribution):
                if value not in dist.choices:
                    continue
            elif value is None or not dist.low <= value <= dist.high:
                continue
            out[name] = value
        return out

    def add(self, record: TrialRecord) -> bool:
        """Add one ended trial (finished: COMPLETE with its objective; failed: FAIL); errored trials
        are left out until a later run finishes them. Returns whether it was added."""
        if record.status is Status.ERRORED:
            return False
        where = (record.dataset, record.label_fraction)
        study = self._study(*where)
        if record.trial_id in self._known[where]:
            return False
        state = self._optuna.trial.TrialState
        value = record.val_loss
        ok = record.finished and math.isfinite(value)
        params = self.params(record)
        attrs = {
            "trial_id": record.trial_id,
            "strategy": record.strategy,
            "status": record.status.value,
            "epochs": record.metrics.get("epochs"),
        }
        attrs = {k: v for k, v in attrs.items() if v is not None}
        if record.dice is not None:
            attrs["test_dice"] = float(record.dice)  # shown, never optimised: the objective is validation
        if record.reason:
            attrs["reason"] = record.reason[:500]
        trial = self._optuna.trial.create_trial(
            state=state.COMPLETE if ok else state.FAIL,
            value=value if ok else None,
            params=params,
            distributions={k: self.space[k] for k in params},
            user_attrs=attrs,
        )
        trial.datetime_start, trial.datetime_complete = self._times(record)
        study.add_trial(trial)
        self._known[where].add(record.trial_id)
        return True

    def sync(self, records: Iterable[TrialRecord]) -> int:
        """Add every ended trial not yet in the view (a resume, an earlier driver killed after a
        record was written); returns how many were added."""
        return sum(self.add(r) for r in records)
