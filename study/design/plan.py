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
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from study import __version__
from study.constants import MAX_TRIALS, SUPERVISED
from study.design import axes as design_axes
from study.design.scale import Scale
from study.design.spec import StudySpec, distribution
from study.errors import SpecError


class _PretrainPointMethods:
    """A pretraining: one value of each pretraining axis (:mod:`study.design.axes`) on one data set."""

    @property
    def key(self) -> str:
        return _digest({"kind": "pretrain", **self._hashed(), "version": __version__})

    def _hashed(self) -> dict:
        return {**_in_id(self.to_json(), design_axes.of("pretraining")), "scale": self.scale.hashed()}

    def to_json(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "scale": self.scale.model_dump(mode="json")}

    @classmethod
    def from_json(cls, d: dict) -> PretrainPoint:
        return cls(**{**d, "scale": Scale.model_validate(d["scale"])})

    def values(self) -> dict[str, Any]:
        """The point's value of each pretraining axis, by key."""
        return {a.key: getattr(self, a.key) for a in design_axes.of("pretraining")}

    def identity(self) -> dict[str, Any]:
        """Everything that names the pretrained weights, as a record carries it."""
        return {
            "key": self.key,
            "strategy": self.strategy,
            "dataset": self.dataset,
            **self.values(),
            "seed": self.seed,
            "split_seed": self.split_seed,
        }

    @property
    def strategy(self) -> str:
        return design_axes.strategy_name(self.values(), "pretraining")


class _TrialPointMethods:
    """A trial: a strategy (a pretraining and one value of each fine-tuning axis, or the supervised
    baseline) fine-tuned at one label fraction on one data set."""

    @property
    def id(self) -> str:
        p = self.pretraining
        hashed = {
            **_in_id(self.to_json(), design_axes.of("finetuning")),
            "pretraining": p._hashed() if p else None,
            "scale": self.scale.hashed(),
        }
        return _digest({"kind": "trial", **hashed, "version": __version__})

    def values(self) -> dict[str, Any]:
        """The trial's value of each fine-tuning axis, by key."""
        return {a.key: getattr(self, a.key) for a in design_axes.of("finetuning")}

    @property
    def strategy(self) -> str:
        """What the analysis compares: the pretraining and the transfer plan (not the label fraction)."""
        if self.pretraining is None:
            return SUPERVISED
        return f"{self.pretraining.strategy}|{design_axes.strategy_name(self.values(), 'finetuning')}"

    @property
    def unit(self) -> str:
        """What the analysis ranks and pruning judges: the strategy at its learning rates."""
        return design_axes.unit_name(
            self.strategy, {a.flat: getattr(self, a.key) for a in design_axes.of("finetuning") if a.in_unit}
        )

    def params(self) -> dict[str, Any]:
        """The design choices, flat, as MLflow parameters and table columns."""
        p = self.pretraining
        pretraining = {a.flat: getattr(p, a.key) if p else a.baseline for a in design_axes.of("pretraining")}
        finetuning = {a.flat: getattr(self, a.key) for a in design_axes.of("finetuning")}
        return {
            "dataset": self.dataset,
            "label_fraction": self.label_fraction,
            "strategy": self.strategy,
            **pretraining,
            **finetuning,
            "pretrain_key": p.key if p else None,
            "seed": self.seed,
            "split_seed": self.split_seed,
        }

    def identity(self) -> dict[str, Any]:
        """Everything that names the trial's numbers, as a record carries it."""
        return {**self.params(), "scale": self.scale.model_dump(mode="json")}

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        p = self.pretraining
        return {**out, "pretraining": p.to_json() if p else None, "scale": self.scale.model_dump(mode="json")}

    @classmethod
    def from_json(cls, d: dict) -> TrialPoint:
        p = d.get("pretraining")
        return cls(
            **{**d, "pretraining": PretrainPoint.from_json(p) if p else None, "scale": Scale.model_validate(d["scale"])}
        )


def _point_class(name: str, methods: type, section: str, head: list, middle: list = ()) -> type:
    """A frozen point with a keyword-only field per axis of its section; an axis declared after
    studies ran defaults to the value it left out of their ids, so their saved points still read."""
    axes = [
        (a.key, Any) if a.id_default is design_axes.ALWAYS_IN_ID else (a.key, Any, field(default=a.id_default))
        for a in design_axes.of(section)
    ]
    tail = [
        ("scale", Scale, field(compare=False, hash=False)),
        ("seed", int, field(default=0)),
        ("split_seed", int, field(default=0)),
    ]
    cls = make_dataclass(name, [*head, *axes, *middle, *tail], bases=(methods,), frozen=True, kw_only=True)
    cls.__module__, cls.__doc__ = __name__, methods.__doc__
    return cls


PretrainPoint = _point_class("PretrainPoint", _PretrainPointMethods, "pretraining", [("dataset", str)])
TrialPoint = _point_class(
    "TrialPoint",
    _TrialPointMethods,
    "finetuning",
    [("dataset", str), ("label_fraction", float)],
    [("pretraining", Any)],
)


def _in_id(values: dict, section_axes: list) -> dict:
    """A point's JSON less the axes that hold the value they had before they were declared."""
    return {k: v for k, v in values.items() if all(a.key != k or a.in_id(v) for a in section_axes)}


def _digest(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def resolve(
    spec: StudySpec, dataset: str, params: dict[str, Any], replicate: tuple[int, int] | None = None
) -> TrialPoint:
    """The trial that a set of axis values (``pretraining.task`` ... ``label_fraction``) means, for
    one replicate ``(seed, split_seed)`` (default: the spec's first).

    The baseline's choice (``pretraining.task == "none"``, :data:`study.design.axes.BASELINE_CHOICE`) is
    the supervised baseline; its pretraining and transfer axes are dropped, so every sampled
    baseline with the same lr and fraction is one trial.
    """
    seed, split_seed = replicate or spec.replicates()[0]
    return point(
        dataset=dataset,
        label_fraction=float(params["label_fraction"]),
        params=params,
        scale=spec.scale,
        seed=seed,
        split_seed=split_seed,
    )


def point(
    *, dataset: str, label_fraction: float, params: dict[str, Any], scale: Scale, seed: int = 0, split_seed: int = 0
) -> TrialPoint:
    """The trial of axis values given by dotted name (:meth:`StudySpec.axes`), typed and made
    canonical by their declarations (:func:`study.design.axes.canonical`)."""
    common = {"dataset": dataset, "scale": scale, "seed": seed, "split_seed": split_seed}
    path, none = design_axes.BASELINE_CHOICE
    if params.get(path, none) == none:
        return TrialPoint(
            label_fraction=label_fraction, pretraining=None, **common, **design_axes.baseline_values(params)
        )
    pretraining = PretrainPoint(**common, **design_axes.canonical(params, "pretraining"))
    return TrialPoint(
        label_fraction=label_fraction, pretraining=pretraining, **common, **design_axes.canonical(params, "finetuning")
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
    """The sampled search's parameters, by dotted name: the dataset, the label fraction and each
    axis (the baseline's choice joins its axis when the baseline is enabled)."""
    import optuna.distributions as d

    space: dict[str, Any] = {
        "dataset": d.CategoricalDistribution(spec.datasets),
        "label_fraction": d.CategoricalDistribution(spec.label_fractions),
    }
    path, none = design_axes.BASELINE_CHOICE
    for name, axis in spec.axes().items():
        if name.startswith("baseline."):
            continue  # a sampled search tunes one value for both arms
        extra = [none] if name == path and spec.baseline.enabled else []
        space[name] = distribution(axis, extra)
    if spec.pretraining is None:
        space[path] = d.CategoricalDistribution([none])
    return space


def make_plan(spec: StudySpec) -> Plan:
    """Every trial of a grid; for a sampled search the trials are resolved as Optuna draws them."""
    if spec.search.algorithm != "grid":
        return Plan(spec, [])
    axes = spec.axes()
    names = [n for n in axes if not n.startswith("baseline.")]
    size = (
        len(spec.replicates()) * len(spec.datasets) * len(spec.label_fractions) * math.prod(len(axes[n]) for n in names)
    )
    if size > MAX_TRIALS:
        raise SpecError(
            f"the grid has {size:,} trials, more than {MAX_TRIALS:,}: narrow the axes or use "
            "search.algorithm tpe with num_samples"
        )
    path, none = design_axes.BASELINE_CHOICE
    tuned = design_axes.tuned_by_baseline()
    baseline_axes = [axes.get(f"baseline.{a.key}", axes[a.path]) for a in tuned]
    trials: dict[str, TrialPoint] = {}
    points = 0
    for replicate, dataset, fraction in itertools.product(spec.replicates(), spec.datasets, spec.label_fractions):
        if spec.pretraining is not None:
            for values in itertools.product(*(axes[n] for n in names)):
                t = resolve(spec, dataset, dict(zip(names, values), label_fraction=fraction), replicate)
                trials.setdefault(t.id, t)
                points += 1
        if spec.baseline.enabled:
            for values in itertools.product(*baseline_axes):
                params = {path: none, **{a.path: v for a, v in zip(tuned, values)}, "label_fraction": fraction}
                t = resolve(spec, dataset, params, replicate)
                trials.setdefault(t.id, t)
                points += 1
    return Plan(spec, list(trials.values()), points)
