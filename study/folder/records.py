"""What a trial or a pretraining ended with, as typed records: written and read by :mod:`study.folder.store`.

A record carries every identity field of its run (data set, strategy, each design value, label
fraction, seeds, scale), so a reader never has to rebuild them from the plan. On disk a record is
one flat JSON object, the same shape earlier versions wrote; fields those lack
read as ``None``.
"""

from __future__ import annotations

import math
from dataclasses import field, fields, make_dataclass
from enum import Enum
from typing import Any

from study.design import axes as design_axes


class Status(str, Enum):
    """How a run ended. ``errored``: Tune gave up on it without a result (a later run retries it);
    ``stopped``: statistical early stopping ended it at a rung, on purpose (``study.execution.pruning``)."""

    FINISHED = "finished"
    FAILED = "failed"
    ERRORED = "errored"
    STOPPED = "stopped"


class _Record:
    """How a record is read and written: known fields by name, every other number in ``metrics``."""

    status: Status
    metrics: dict[str, float]

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED

    @property
    def stopped(self) -> bool:
        return self.status is Status.STOPPED

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "metrics"}
        return {**out, "status": self.status.value, **self.metrics}

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)} - {"metrics"}
        known = {k: v for k, v in data.items() if k in names}
        known["status"] = Status(known.get("status", Status.FINISHED.value))  # older files: finished
        metrics = {
            k: v for k, v in data.items() if k not in names and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        return cls(**known, metrics=metrics)


class _TrialRecordMethods(_Record):
    """How a trial ended: its identity (each design axis's flat name, :mod:`study.design.axes`), status,
    seconds, and every number it reported in ``metrics`` (dice, dice_<class>, val_loss, epochs, ...)."""

    @property
    def dice(self) -> float | None:
        return self.metrics.get("dice")

    @property
    def unit(self) -> str:
        """What the analysis ranks and pruning judges: the strategy at its learning rates."""
        return design_axes.unit_name(
            self.strategy, {a.flat: getattr(self, a.flat) for a in design_axes.AXES if a.in_unit}
        )

    @property
    def val_loss(self) -> float:
        """The search's objective; NaN unless the trial finished."""
        return float(self.metrics.get("val_loss", math.nan)) if self.finished else math.nan


class _PretrainRecordMethods(_Record):
    """How a pretraining ended: its key, identity (each pretraining axis by key), status and curve."""


def _optional(*names: str) -> list[tuple]:
    return [(name, Any, field(default=None)) for name in names]


def _record_class(name: str, methods: type, head: list, axes: list, tail: list) -> type:
    cls = make_dataclass(
        name,
        [*head, *axes, *tail, ("metrics", dict, field(default_factory=dict))],
        bases=(methods,),
        frozen=True,
        kw_only=True,
    )
    cls.__module__, cls.__doc__ = __name__, methods.__doc__
    return cls


# A baseline's record holds each axis's baseline value (a tuned axis, the lr, its own value).
TrialRecord = _record_class(
    "TrialRecord",
    _TrialRecordMethods,
    [("trial_id", str), ("status", Status), ("dataset", str), ("strategy", str), ("label_fraction", float)],
    [(a.flat, Any, field(default=None if a.baseline == design_axes.TUNED else a.baseline)) for a in design_axes.AXES],
    [
        *_optional("pretrain_key", "seed", "split_seed", "scale"),
        ("reason", str, field(default="")),
        *_optional("seconds"),
    ],
)
PretrainRecord = _record_class(
    "PretrainRecord",
    _PretrainRecordMethods,
    [("key", str), ("strategy", str), ("status", Status, field(default=Status.FINISHED)), *_optional("dataset")],
    _optional(*(a.key for a in design_axes.of("pretraining"))),
    [
        *_optional("seed", "split_seed"),
        ("reason", str, field(default="")),
        *_optional("seconds", "best_epoch", "best_val_loss", "inpainting_l2", "n_scans"),
        ("history", list, field(default_factory=list)),
    ],
)
