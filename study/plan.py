"""StudySpec -> trial configurations and the unique pretraining runs they need.

A trial is one strategy (a pretraining + a transfer plan, or the supervised baseline) fine-tuned at
one label fraction on one data set. Its id is a hash of everything that determines its numbers
(resolved config, scale, seeds, code version), so the same trial in an enlarged or re-run study is
recognised and never run twice. A pretraining's key hashes only what determines the pretrained
weights, so trials that differ in fine-tuning alone share one pretraining.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from study import __version__
from study.constants import MAX_TRIALS, SUPERVISED
from study.errors import SpecError
from study.scale import Scale
from study.spec import StudySpec, bounds

if TYPE_CHECKING:
    from study.train import FinetuneConfig, PretrainConfig


@dataclass(frozen=True)
class PretrainPoint:
    dataset: str
    task: str
    patch_size: int
    sampler: str
    extent: float
    lr: float
    scale: Scale = field(compare=False, hash=False)
    seed: int = 0
    split_seed: int = 0

    @property
    def key(self) -> str:
        return _digest({"kind": "pretrain", **self._hashed(), "version": __version__})

    def _hashed(self) -> dict:
        return {**self.to_json(), "scale": self.scale.hashed()}

    def to_json(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "scale": self.scale.model_dump(mode="json")}

    @staticmethod
    def from_json(d: dict) -> PretrainPoint:
        return PretrainPoint(**{**d, "scale": Scale.model_validate(d["scale"])})

    def identity(self) -> dict[str, Any]:
        """Everything that names the pretrained weights, as a record carries it."""
        return {"key": self.key, "strategy": self.strategy, "dataset": self.dataset, "task": self.task,
                "patch_size": self.patch_size, "sampler": self.sampler, "extent": self.extent, "lr": self.lr,
                "seed": self.seed, "split_seed": self.split_seed}

    def config(self) -> PretrainConfig:
        return self.scale.pretrain_config(task=self.task, sampler=self.sampler, patch_size=self.patch_size,
                                          extent=self.extent, lr=self.lr)

    @property
    def strategy(self) -> str:
        return f"{self.task}/K{self.patch_size}/{self.sampler}" + (f"/x{self.extent:g}" if self.extent != 1 else "")


@dataclass(frozen=True)
class TrialPoint:
    dataset: str
    label_fraction: float
    scope: str
    schedule: str
    lr: float
    unfrozen_lr: float | None
    pretraining: PretrainPoint | None
    scale: Scale = field(compare=False, hash=False)
    seed: int = 0
    split_seed: int = 0

    @property
    def id(self) -> str:
        p = self.pretraining
        hashed = {**self.to_json(), "pretraining": p._hashed() if p else None, "scale": self.scale.hashed()}
        return _digest({"kind": "trial", **hashed, "version": __version__})

    @property
    def strategy(self) -> str:
        """What the analysis compares: the pretraining and the transfer plan (not the label fraction)."""
        if self.pretraining is None:
            return SUPERVISED
        plan = f"{self.scope}/{self.schedule}"
        return f"{self.pretraining.strategy}|{plan}"

    def params(self) -> dict[str, Any]:
        """The design choices, flat, as MLflow parameters and table columns."""
        p = self.pretraining
        return {
            "dataset": self.dataset, "label_fraction": self.label_fraction, "strategy": self.strategy,
            "task": p.task if p else "none", "patch_size": p.patch_size if p else None,
            "sampler": p.sampler if p else None, "extent": p.extent if p else None,
            "pretrain_lr": p.lr if p else None, "scope": self.scope, "schedule": self.schedule,
            "lr": self.lr, "unfrozen_lr": self.unfrozen_lr, "pretrain_key": p.key if p else None,
            "seed": self.seed, "split_seed": self.split_seed,
        }

    def identity(self) -> dict[str, Any]:
        """Everything that names the trial's numbers, as a record carries it."""
        return {**self.params(), "scale": self.scale.model_dump(mode="json")}

    def finetune_config(self) -> FinetuneConfig:
        return self.scale.finetune_config(scope=self.scope, schedule=self.schedule, lr=self.lr,
                                          unfrozen_lr=self.unfrozen_lr)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        p = self.pretraining
        return {**out, "pretraining": p.to_json() if p else None, "scale": self.scale.model_dump(mode="json")}

    @staticmethod
    def from_json(d: dict) -> TrialPoint:
        p = d.get("pretraining")
        return TrialPoint(**{**d, "pretraining": PretrainPoint.from_json(p) if p else None,
                             "scale": Scale.model_validate(d["scale"])})


def _digest(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def canonical_unfrozen_lr(schedule: str, lr: float, unfrozen_lr: float | None) -> float | None:
    """What the unfrozen learning rate means in context: nothing under ``at_once`` (nothing is
    unfrozen), and ``None`` (the learning rate) when it equals the learning rate, so configurations
    that train alike get one id."""
    if schedule != "freeze_then_unfreeze" or unfrozen_lr is None or float(unfrozen_lr) == float(lr):
        return None
    return float(unfrozen_lr)


def resolve(spec: StudySpec, dataset: str, params: dict[str, Any], replicate: tuple[int, int] | None = None) -> TrialPoint:
    """The trial that a set of axis values (``pretraining.task`` ... ``label_fraction``) means, for
    one replicate ``(seed, split_seed)`` (default: the spec's first).

    ``pretraining.task == "none"`` is the supervised baseline; its pretraining and transfer axes are
    dropped, so every sampled baseline with the same lr and fraction is one trial.
    """
    seed, split_seed = replicate or spec.replicates()[0]
    scale, seeds = spec.scale, {"seed": seed, "split_seed": split_seed}
    if params.get("pretraining.task", "none") == "none":
        return TrialPoint(dataset, float(params["label_fraction"]), "none", "at_once",
                          float(params.get("baseline.lr", params["finetuning.lr"])), None, None, scale, **seeds)
    pretraining = PretrainPoint(
        dataset, params["pretraining.task"], int(params["pretraining.patch_size"]), params["pretraining.sampler"],
        float(params["pretraining.extent"]), float(params["pretraining.lr"]), scale, **seeds,
    )
    unfrozen = canonical_unfrozen_lr(params["finetuning.schedule"], params["finetuning.lr"],
                                     params.get("finetuning.unfrozen_lr"))
    return TrialPoint(
        dataset, float(params["label_fraction"]), params["finetuning.scope"], params["finetuning.schedule"],
        float(params["finetuning.lr"]), unfrozen, pretraining, scale, **seeds,
    )


@dataclass
class Plan:
    spec: StudySpec
    trials: list[TrialPoint]  # every distinct grid point; for a sampled search, filled in as trials are drawn
    grid_points: int = 0  # grid points before configurations that mean the same were merged

    @property
    def enumerable(self) -> bool:
        return self.spec.search.algorithm == "grid"

    def pretrainings(self) -> dict[str, PretrainPoint]:
        return {t.pretraining.key: t.pretraining for t in self.trials if t.pretraining is not None}

    def num_samples(self) -> int:
        if self.enumerable:
            return len(self.trials)
        return self.spec.search.num_samples or 20

    def by_dataset(self) -> dict[str, tuple[int, int]]:
        """Per data set: (trials, unique pretrainings)."""
        out = {}
        for ds in self.spec.datasets:
            trials = [t for t in self.trials if t.dataset == ds]
            out[ds] = (len(trials), len({t.pretraining.key for t in trials if t.pretraining}))
        return out


def optuna_space(spec: StudySpec) -> dict[str, Any]:
    """Axes for a sampled search as Optuna distributions (``pretraining.task`` gains ``none``, the
    baseline, when the baseline is enabled)."""
    import optuna.distributions as d

    space: dict[str, Any] = {"dataset": d.CategoricalDistribution(spec.datasets),
                             "label_fraction": d.CategoricalDistribution(spec.label_fractions)}
    for name, axis in spec.axes().items():
        if name == "baseline.lr":
            continue  # a sampled search tunes one lr for both arms
        if isinstance(axis, list):
            choices = list(axis)
            if name == "pretraining.task" and spec.baseline.enabled:
                choices.append("none")
            space[name] = d.CategoricalDistribution(choices)
        else:
            low, high, log = bounds(axis)
            space[name] = d.FloatDistribution(low, high, log=log)
    if spec.pretraining is None:
        space["pretraining.task"] = d.CategoricalDistribution(["none"])
    return space


def make_plan(spec: StudySpec) -> Plan:
    """Every trial of a grid; for a sampled search the trials are resolved as Optuna draws them."""
    if spec.search.algorithm != "grid":
        return Plan(spec, [])
    axes = spec.axes()
    size = len(spec.replicates()) * len(spec.datasets) * len(spec.label_fractions) * math.prod(
        len(v) for n, v in axes.items() if n.startswith(("pretraining.", "finetuning.")))
    if size > MAX_TRIALS:
        raise SpecError(f"the grid has {size:,} trials, more than {MAX_TRIALS:,}: narrow the axes or use "
                        "search.algorithm tpe with num_samples")
    trials: dict[str, TrialPoint] = {}
    points = 0
    for replicate, dataset, fraction in itertools.product(spec.replicates(), spec.datasets, spec.label_fractions):
        if spec.pretraining is not None:
            names = [n for n in axes if n.startswith(("pretraining.", "finetuning."))]
            for values in itertools.product(*(axes[n] for n in names)):
                params = dict(zip(names, values), label_fraction=fraction)
                t = resolve(spec, dataset, params, replicate)
                trials.setdefault(t.id, t)
                points += 1
        if spec.baseline.enabled:
            for lr in axes.get("baseline.lr", axes["finetuning.lr"]):
                t = resolve(spec, dataset, {"pretraining.task": "none", "finetuning.lr": lr, "label_fraction": fraction},
                            replicate)
                trials.setdefault(t.id, t)
                points += 1
    return Plan(spec, list(trials.values()), points)
