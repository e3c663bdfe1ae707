"""What a trial or a pretraining ended with, as typed records: written and read by :mod:`study.store`.

A record carries every identity field of its run (data set, strategy, each design value, label
fraction, seeds, scale), so a reader never has to rebuild them from the plan. On disk a record is
one flat JSON object, the same shape earlier versions wrote; fields those lack
read as ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any


class Status(str, Enum):
    """How a run ended. ``errored``: Tune gave up on it without a result (a later run retries it);
    ``stopped``: statistical early stopping ended it at a rung, on purpose (``study.pruning``)."""

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
        metrics = {k: v for k, v in data.items()
                   if k not in names and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return cls(**known, metrics=metrics)


@dataclass(frozen=True)
class TrialRecord(_Record):
    trial_id: str
    status: Status
    dataset: str
    strategy: str
    label_fraction: float
    task: str = "none"
    patch_size: int | None = None
    sampler: str | None = None
    extent: float | None = None
    pretrain_lr: float | None = None
    scope: str = "none"
    schedule: str = "at_once"
    lr: float | None = None
    unfrozen_lr: float | None = None
    pretrain_key: str | None = None
    seed: int | None = None
    split_seed: int | None = None
    scale: dict | None = None
    reason: str = ""
    seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # dice, dice_<class>, val_loss, epochs, ...

    @property
    def dice(self) -> float | None:
        return self.metrics.get("dice")

    @property
    def val_loss(self) -> float:
        """The search's objective; NaN unless the trial finished."""
        return float(self.metrics.get("val_loss", math.nan)) if self.finished else math.nan


@dataclass(frozen=True)
class PretrainRecord(_Record):
    key: str
    strategy: str
    status: Status = Status.FINISHED  # results of earlier versions have no status: they finished
    dataset: str | None = None
    task: str | None = None
    patch_size: int | None = None
    sampler: str | None = None
    extent: float | None = None
    lr: float | None = None
    seed: int | None = None
    split_seed: int | None = None
    reason: str = ""
    seconds: float | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    inpainting_l2: float | None = None
    n_scans: int | None = None
    history: list = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
