"""The study's search as Optuna studies on disk, one per data set, for ``optuna-dashboard``.

Tune's Optuna searcher keeps its study in memory, and a grid is not an Optuna search at all, so
the driver writes every trial that ends into Optuna's own RDB storage (``StudyStore.optuna_storage``)
as a finished Optuna trial: its design values as parameters, its objective (the best validation
loss of its fine-tuning; lower is better) as the value. The dashboard then shows the history,
parallel coordinates and parameter importance of what the study tried.

Only the driver writes (from its Tune callback), so SQLite has one writer. Each Optuna trial names
its study trial (user attribute ``trial_id``): a resumed study adds only what is missing. The
parameters' distributions come from the spec; a spec whose axes changed rebuilds the view from the
records, since Optuna refuses a parameter whose choices differ between trials of one study.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from study.records import Status, TrialRecord
from study.spec import StudySpec, bounds

# Record field -> the spec axis whose values it takes.
_AXES = {"task": "pretraining.task", "patch_size": "pretraining.patch_size", "sampler": "pretraining.sampler",
         "extent": "pretraining.extent", "pretrain_lr": "pretraining.lr", "scope": "finetuning.scope",
         "schedule": "finetuning.schedule", "lr": "finetuning.lr", "unfrozen_lr": "finetuning.unfrozen_lr"}


def study_name(study: str, dataset: str) -> str:
    """``pretext/mri``; a data set given as a folder is named by its last component."""
    return f"{study}/{Path(dataset).name if '/' in dataset else dataset}"


def distributions(spec: StudySpec) -> dict[str, Any]:
    """Each parameter's Optuna distribution, the same for every trial of the study."""
    import optuna.distributions as d

    def of(axis: Any, extra: Iterable = ()) -> Any:
        if isinstance(axis, list):
            return d.CategoricalDistribution(list(dict.fromkeys([*axis, *extra])))
        low, high, log = bounds(axis)
        return d.FloatDistribution(low, high, log=log)

    axes = spec.axes()
    out: dict[str, Any] = {"label_fraction": of(spec.label_fractions)}
    tasks = ["none"] if spec.baseline.enabled else []
    out["task"] = of(list(axes.get("pretraining.task", [])), tasks)
    for field, axis in _AXES.items():
        if field in ("task", "lr", "unfrozen_lr") or axis not in axes:
            continue
        out[field] = of(axes[axis])
    lr, base = axes["finetuning.lr"], axes.get("baseline.lr")
    out["lr"] = of(lr, base if isinstance(lr, list) and isinstance(base, list) else ())
    if "pretraining.task" in axes:
        out["unfrozen_lr"] = of(axes["finetuning.unfrozen_lr"], [None])
    if len(spec.replicates()) > 1:
        out["seed"] = of([s for s, _ in spec.replicates()])
    return out


class OptunaLog:
    """Writes ended trials to the study's Optuna storage; safe to call again with the same trial."""

    def __init__(self, storage: str, spec: StudySpec) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna, self.spec = optuna, spec
        self.storage = optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 30}})
        self.space = distributions(spec)
        self._space_text = json.dumps({k: optuna.distributions.distribution_to_json(v) for k, v in self.space.items()},
                                      sort_keys=True)
        self._studies: dict[str, Any] = {}
        self._known: dict[str, set[str]] = {}

    def _study(self, dataset: str) -> Any:
        if dataset in self._studies:
            return self._studies[dataset]
        name = study_name(self.spec.name, dataset)
        study = self._optuna.create_study(study_name=name, storage=self.storage, direction="minimize",
                                          load_if_exists=True)
        if study.user_attrs.get("space", self._space_text) != self._space_text:
            # The axes changed since the view was written: rebuilt from the records by sync().
            self._optuna.delete_study(study_name=name, storage=self.storage)
            study = self._optuna.create_study(study_name=name, storage=self.storage, direction="minimize")
        study.set_user_attr("space", self._space_text)
        study.set_user_attr("objective", "best validation soft-Dice loss of the fine-tuning (lower is better)")
        self._studies[dataset] = study
        self._known[dataset] = {t.user_attrs.get("trial_id") for t in study.get_trials(deepcopy=False)}
        return study

    def params(self, record: TrialRecord) -> dict[str, Any]:
        """The record's design values that the study's space holds (a baseline has no patch size)."""
        values = {"label_fraction": record.label_fraction, "task": record.task, "seed": record.seed}
        if record.task != "none":
            values |= {f: getattr(record, f) for f in _AXES if f != "task"}
        else:
            values["lr"] = record.lr
        out = {}
        for name, value in values.items():
            dist = self.space.get(name)
            if dist is None or (value is None and name != "unfrozen_lr"):
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
        study = self._study(record.dataset)
        if record.trial_id in self._known[record.dataset]:
            return False
        state = self._optuna.trial.TrialState
        value = record.val_loss
        ok = record.finished and math.isfinite(value)
        params = self.params(record)
        attrs = {"trial_id": record.trial_id, "strategy": record.strategy, "status": record.status.value}
        if record.dice is not None:
            attrs["test_dice"] = float(record.dice)  # shown, never optimised: the objective is validation
        if record.reason:
            attrs["reason"] = record.reason[:500]
        trial = self._optuna.trial.create_trial(
            state=state.COMPLETE if ok else state.FAIL, value=value if ok else None, params=params,
            distributions={k: self.space[k] for k in params}, user_attrs=attrs)
        study.add_trial(trial)
        self._known[record.dataset].add(record.trial_id)
        return True

    def sync(self, records: Iterable[TrialRecord]) -> int:
        """Add every ended trial not yet in the view (a resume, an earlier driver killed after a
        record was written); returns how many were added."""
        return sum(self.add(r) for r in records)
