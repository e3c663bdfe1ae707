"""Step-decay learning rate: ×0.9 every 2 epochs, never below 1e-8 (docs/science.md §4, C).

The authors' Keras callback computes, for the 0-based epoch Keras passes it,

    lr = initial_lr · decay ** floor((epoch + 1) / every),   then at least ``floor``

so with ``every=2`` the first drop already applies in epoch 1 (epochs 0 | 1, 2 | 3, 4 | ...). That
``+ 1`` is kept as ``epoch_offset=1`` (the default: where paper and code differ, the default
follows the code, docs/science.md §8); ``epoch_offset=0`` gives the textbook schedule with drops
at epochs 2, 4, ...
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from study.errors import SpecError


@dataclass(frozen=True)
class StepDecay:
    """Settings of the step-decay schedule; checked at construction.

    initial_lr: learning rate of epoch 0 (> 0). decay: factor per drop, in (0, 1].
    every: epochs between drops (> 0; the reference allows fractions). floor: lower bound (>= 0).
    epoch_offset: added to the epoch before dividing by ``every`` (1 in the reference, see module).
    """

    initial_lr: float
    decay: float = 0.9
    every: float = 2
    floor: float = 1e-8
    epoch_offset: int = 1

    def __post_init__(self) -> None:
        if not (_is_number(self.initial_lr) and self.initial_lr > 0):
            raise SpecError(f"initial_lr={self.initial_lr!r} must be a finite number > 0")
        if not (_is_number(self.decay) and 0 < self.decay <= 1):
            raise SpecError(f"lr decay={self.decay!r} must lie in (0, 1]")
        if not (_is_number(self.every) and self.every > 0):
            raise SpecError(f"lr decay every={self.every!r} must be a number of epochs > 0")
        if not (_is_number(self.floor) and self.floor >= 0):
            raise SpecError(f"lr floor={self.floor!r} must be a finite number >= 0")
        if not (_is_integer(self.epoch_offset) and self.epoch_offset >= 0):
            raise SpecError(f"lr epoch_offset={self.epoch_offset!r} must be an integer >= 0")

    def lr_at(self, epoch: int) -> float:
        """Learning rate for the 0-based ``epoch``."""
        if not (_is_integer(epoch) and epoch >= 0):
            raise SpecError(f"epoch={epoch!r} must be an integer >= 0")
        drops = math.floor((epoch + self.epoch_offset) / self.every)
        # As in the reference, the floor also lifts an initial_lr set below it.
        return max(self.initial_lr * self.decay**drops, self.floor)


def _is_number(value: object) -> bool:
    # numbers.Real admits numpy scalars; bool is excluded so that `every=True` is not read as 1.
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def lr_at(
    epoch: int,
    initial_lr: float,
    decay: float = 0.9,
    every: float = 2,
    floor: float = 1e-8,
    epoch_offset: int = 1,
) -> float:
    """Learning rate for the 0-based ``epoch`` (pure; see :class:`StepDecay` for the arguments)."""
    return StepDecay(initial_lr, decay, every, floor, epoch_offset).lr_at(epoch)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group of ``optimizer``, before the epoch's first step.

    All groups get the same rate: the paper fine-tunes with one initial rate per run (frozen layers
    are excluded by ``requires_grad``, not by a zero rate).
    """
    if not (_is_number(lr) and lr >= 0):
        raise SpecError(f"lr={lr!r} must be a finite number >= 0")
    for group in optimizer.param_groups:
        group["lr"] = lr
