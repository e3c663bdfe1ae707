"""Tests for study/train/_early_stopping.py: improvement sequences, modes, divergence, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from study.errors import SpecError
from study.train._early_stopping import Diverged, EarlyStopping


def _run(stopper: EarlyStopping, losses: list[float]) -> tuple[list[bool], int | None]:
    """Feed ``losses`` as epochs 0, 1, ...; return the improved flags and the epoch it stopped at."""
    improved = []
    for epoch, loss in enumerate(losses):
        improved.append(stopper.step(loss, epoch))
        if stopper.should_stop:
            return improved, epoch
    return improved, None


@pytest.mark.parametrize(
    ("patience", "min_delta", "mode", "losses", "improved", "stopped_at", "best_epoch"),
    [
        # Steady improvement never stops.
        (2, 0.0, "absolute", [5, 4, 3, 2], [True, True, True, True], None, 3),
        # Two flat epochs exhaust patience 2.
        (2, 0.0, "absolute", [5, 4, 4, 4], [True, True, False, False], 3, 1),
        # A new best resets the count: 1 bad, best, 1 bad -> still running.
        (2, 0.0, "absolute", [5, 6, 4, 7], [True, False, True, False], None, 2),
        # Absolute 1e-3: 0.5 -> 0.4995 is too small a gain, 0.4989 counts (beats 0.5 by 1.1e-3).
        (3, 1e-3, "absolute", [0.5, 0.4995, 0.4989], [True, False, True], None, 2),
        # Improvement must *exceed* min delta (Keras): a gain of exactly 0.25 does not count.
        (1, 0.25, "absolute", [1.0, 0.75], [True, False], 1, 0),
        # Relative 1e-3 on a loss in the thousands: -0.5 is 5e-5 of best (no), -3 is 3e-3 (yes).
        (2, 1e-3, "relative", [1000.0, 999.5, 997.0], [True, False, True], None, 2),
        # The same absolute 1e-3 would have taken the -0.5 as an improvement.
        (2, 1e-3, "absolute", [1000.0, 999.5, 997.0], [True, True, True], None, 2),
        # Patience 1 stops at the first epoch without improvement.
        (1, 0.0, "relative", [3.0, 3.0], [True, False], 1, 0),
    ],
)
def test_step_sequences(patience, min_delta, mode, losses, improved, stopped_at, best_epoch):
    stopper = EarlyStopping(patience, min_delta, mode=mode)
    flags, stopped = _run(stopper, losses)
    assert flags == improved
    assert stopped == stopped_at
    assert stopper.best_epoch == best_epoch
    assert stopper.best == losses[best_epoch]


def test_relative_min_delta_means_the_same_at_every_image_size():
    # The inpainting loss scales with H*W: multiply a curve by 64 (64x64 -> 512x512).
    curve = [1.0, 0.9, 0.8995, 0.8994, 0.8996, 0.8997]  # gains under 1e-3 of best after epoch 1
    small, large = EarlyStopping.for_inpainting(), EarlyStopping.for_inpainting()
    assert _run(small, curve) == _run(large, [64 * v for v in curve])
    assert small.should_stop and small.best_epoch == 1
    # An absolute 1e-3 reads the same curve differently at the two sizes.
    assert _run(EarlyStopping(4, 1e-3, "absolute"), curve) != _run(
        EarlyStopping(4, 1e-3, "absolute"), [64 * v for v in curve]
    )


def test_presets_follow_the_reference():
    seg, inp = EarlyStopping.for_segmentation(), EarlyStopping.for_inpainting()
    assert (seg.patience, seg.min_delta, seg.mode) == (10, 1e-3, "absolute")
    assert (inp.patience, inp.mode) == (4, "relative")


def test_segmentation_preset_stops_after_ten_flat_epochs():
    stopper = EarlyStopping.for_segmentation()
    _, stopped = _run(stopper, [0.4] + [0.3995] * 20)
    assert stopped == 10 and stopper.best_epoch == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_raises_diverged(bad):
    stopper = EarlyStopping(5, 0.0, mode="absolute")
    stopper.step(1.0, 0)
    with pytest.raises(Diverged, match=rf"validation loss diverged: {bad} at epoch 1 \(best 1 at epoch 0\)"):
        stopper.step(bad, 1)
    assert stopper.diverged and stopper.should_stop
    assert stopper.best == 1.0 and stopper.best_epoch == 0  # the last good checkpoint is kept


def test_diverged_on_first_epoch_says_no_finite_loss():
    stopper = EarlyStopping(5, 0.0)
    with pytest.raises(Diverged, match=r"at epoch 0 \(no finite loss before\)") as info:
        stopper.step(float("nan"), 0)
    assert info.value.epoch == 0 and info.value.best_epoch is None


def test_step_after_divergence_keeps_raising():
    stopper = EarlyStopping(5, 0.0)
    with pytest.raises(Diverged):
        stopper.step(math.nan, 0)
    with pytest.raises(Diverged):
        stopper.step(0.1, 1)


def test_step_accepts_a_scalar_tensor():
    stopper = EarlyStopping(2, 0.0)
    assert stopper.step(torch.tensor(0.5), 0) is True
    assert stopper.best == 0.5


def test_step_refuses_replayed_epochs():
    stopper = EarlyStopping(2, 0.0)
    stopper.step(1.0, 4)
    with pytest.raises(ValueError, match="epoch 4 is not after the last recorded epoch 4"):
        stopper.step(0.5, 4)


def test_state_round_trip_continues_the_run():
    losses = [5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 3.5]
    uninterrupted = EarlyStopping(4, 0.01)
    expected = _run(uninterrupted, losses)

    first = EarlyStopping(4, 0.01)
    flags = [first.step(v, e) for e, v in enumerate(losses[:3])]
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
    resumed = EarlyStopping(4, 0.01)
    resumed.load_state_dict(state)
    assert (resumed.best, resumed.best_epoch, resumed.wait) == (4.0, 1, 1)
    for epoch, value in enumerate(losses[3:], start=3):
        flags.append(resumed.step(value, epoch))
    assert flags == expected[0]
    assert resumed.state_dict() == uninterrupted.state_dict()


def test_state_of_a_fresh_stopper_has_no_best():
    state = EarlyStopping(2, 0.0).state_dict()
    assert state["best"] is None and state["best_epoch"] is None
    restored = EarlyStopping(2, 0.0)
    restored.load_state_dict(state)
    assert restored.best == math.inf and not restored.should_stop


def test_load_state_refuses_other_settings():
    state = EarlyStopping(4, 1e-3).state_dict()
    with pytest.raises(SpecError, match=r"early stopping patience=10 differs from the checkpoint's patience=4"):
        EarlyStopping(10, 1e-3).load_state_dict(state)
    with pytest.raises(SpecError, match=r"mode='absolute' differs from the checkpoint's mode='relative'"):
        EarlyStopping(4, 1e-3, mode="absolute").load_state_dict(state)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0.0, "relative"), r"patience=0 must be an integer >= 1"),
        ((2.5, 0.0, "relative"), r"patience=2.5 must be an integer >= 1"),
        ((3, -1e-3, "absolute"), r"min_delta=-0.001 must be a finite number >= 0"),
        ((3, math.nan, "absolute"), r"min_delta=nan must be a finite number >= 0"),
        ((3, 1.0, "relative"), r"min_delta=1.0 must lie in \[0, 1\) in relative mode"),
        ((3, 0.0, "percent"), r"mode='percent' must be one of relative, absolute"),
    ],
)
def test_refuses_bad_settings(args, message):
    with pytest.raises(SpecError, match=message):
        EarlyStopping(*args)
