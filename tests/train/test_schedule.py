"""Tests for study/train/_schedule.py: the step-decay table, the floor, the optimizer helper."""

from __future__ import annotations

import pytest
import torch

from study.errors import SpecError
from study.train._schedule import StepDecay, lr_at, set_lr


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        # Reference Keras schedule: decay ** floor((epoch + 1) / 2)
        (0, 1e-3),
        (1, 1e-3 * 0.9),
        (2, 1e-3 * 0.9),
        (3, 1e-3 * 0.81),
        (4, 1e-3 * 0.81),
        (5, 1e-3 * 0.729),
        (19, 1e-3 * 0.9**10),
    ],
)
def test_lr_at_drops_by_0_9_every_two_epochs_as_the_reference(epoch, expected):
    assert lr_at(epoch, 1e-3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [(0, 1.0), (1, 1.0), (2, 0.9), (3, 0.9), (4, 0.81)],
)
def test_lr_at_without_offset_drops_at_even_epochs(epoch, expected):
    assert lr_at(epoch, 1.0, epoch_offset=0) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("epoch", "initial_lr", "expected"),
    [
        (499, 1e-3, 1e-8),  # 1e-3 * 0.9**250 ~ 3.6e-15, held at the floor
        (300, 1e-5, 1e-8),
        (0, 1e-9, 1e-8),  # the floor also lifts a tiny initial rate, as the reference does
    ],
)
def test_lr_at_never_goes_below_the_floor(epoch, initial_lr, expected):
    assert lr_at(epoch, initial_lr) == expected


def test_lr_at_floor_is_reached_exactly_once_the_decay_passes_it():
    rates = [lr_at(e, 1e-2, decay=0.5, every=1, floor=1e-3, epoch_offset=0) for e in range(6)]
    assert rates == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3, 1e-3, 1e-3])


def test_step_decay_matches_lr_at():
    schedule = StepDecay(initial_lr=1e-4)
    assert [schedule.lr_at(e) for e in range(10)] == [lr_at(e, 1e-4) for e in range(10)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_lr": 0.0}, r"initial_lr=0.0 must be a finite number > 0"),
        ({"initial_lr": float("nan")}, r"initial_lr=nan must be a finite number > 0"),
        ({"initial_lr": 1e-3, "decay": 1.5}, r"lr decay=1.5 must lie in \(0, 1\]"),
        ({"initial_lr": 1e-3, "decay": 0.0}, r"lr decay=0.0 must lie in \(0, 1\]"),
        ({"initial_lr": 1e-3, "every": 0}, r"lr decay every=0 must be a number of epochs > 0"),
        ({"initial_lr": 1e-3, "floor": -1.0}, r"lr floor=-1.0 must be a finite number >= 0"),
        ({"initial_lr": 1e-3, "epoch_offset": -1}, r"lr epoch_offset=-1 must be an integer >= 0"),
    ],
)
def test_step_decay_refuses_bad_settings(kwargs, message):
    with pytest.raises(SpecError, match=message):
        StepDecay(**kwargs)


@pytest.mark.parametrize("epoch", [-1, 1.5, True])
def test_lr_at_refuses_bad_epoch(epoch):
    with pytest.raises(SpecError, match=r"epoch=.* must be an integer >= 0"):
        lr_at(epoch, 1e-3)


def test_set_lr_writes_every_param_group():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    set_lr(optimizer, lr_at(3, 1e-3))
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([8.1e-4, 8.1e-4])


def test_set_lr_refuses_negative_rate():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(SpecError, match=r"lr=-0.1 must be a finite number >= 0"):
        set_lr(optimizer, -0.1)
