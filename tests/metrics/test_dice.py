"""Tests for study/metrics/_dice.py: hand-computed Dice, empty-mask policies, 3D cases, binarize."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study.errors import SpecError
from study.metrics import binarize, dice_per_class, dice_rows


def _masks(*rows: list) -> np.ndarray:
    return np.array(rows, dtype=bool)


@pytest.mark.parametrize(
    ("pred", "true", "expected"),
    [
        # (1, 4): |P| = 2, |T| = 1, overlap 1 -> 2/3
        ([[1, 1, 0, 0]], [[1, 0, 0, 0]], [2 / 3]),
        # (1, 4): identical -> 1
        ([[0, 1, 1, 0]], [[0, 1, 1, 0]], [1.0]),
        # (1, 4): disjoint -> 0
        ([[1, 0, 0, 0]], [[0, 0, 0, 1]], [0.0]),
        # (2, 3): per class: 2*1/(1+2) and 2*2/(3+2)
        ([[1, 0, 0], [1, 1, 1]], [[1, 1, 0], [1, 1, 0]], [2 / 3, 4 / 5]),
        # (1, 5): predicted nothing of a present class -> 0, whatever the empty policy
        ([[0, 0, 0, 0, 0]], [[0, 1, 1, 0, 0]], [0.0]),
        # (1, 5): predicted a class absent from the truth -> 0
        ([[1, 0, 0, 0, 0]], [[0, 0, 0, 0, 0]], [0.0]),
    ],
)
def test_dice_per_class_hand_cases(pred, true, expected):
    for empty in ("nan", "one", "zero"):
        assert dice_per_class(_masks(*pred), _masks(*true), empty=empty) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("empty", "expected"),
    [("nan", math.nan), ("one", 1.0), ("zero", 0.0), (1.0, 1.0), (0.25, 0.25), (math.nan, math.nan)],
)
def test_empty_policy_applies_only_when_both_masks_are_empty(empty, expected):
    pred = _masks([1, 1, 0], [0, 0, 0])  # (K=2, 3): class 1 absent from both
    true = _masks([1, 0, 0], [0, 0, 0])
    dice = dice_per_class(pred, true, empty=empty)
    assert dice[0] == pytest.approx(2 / 3)
    assert (math.isnan(dice[1]) and math.isnan(expected)) or dice[1] == expected


def test_default_empty_policy_is_nan():
    assert math.isnan(dice_per_class(_masks([0, 0]), _masks([0, 0]))[0])


def test_dice_of_a_volume_pools_its_slices():
    # (K=1, S=2, H=2, W=2). Slice 0: 4 of 4 right; slice 1: truth has 2 voxels, nothing predicted.
    pred = np.zeros((1, 2, 2, 2), dtype=bool)
    true = np.zeros((1, 2, 2, 2), dtype=bool)
    pred[0, 0] = True
    true[0, 0] = True
    true[0, 1, 0] = True
    # Volume Dice: 2*4 / (4 + 6) = 0.8 (the mean of per-slice Dice would be 0.5).
    assert dice_per_class(pred, true) == pytest.approx([0.8])


def test_dice_matches_a_direct_formula_on_random_3d_masks():
    rng = np.random.default_rng(3)
    pred = rng.random((4, 5, 7, 9)) > 0.6  # (K, S, H, W), odd sizes
    true = rng.random((4, 5, 7, 9)) > 0.4
    expected = [2 * (p & t).sum() / (p.sum() + t.sum()) for p, t in zip(pred, true)]
    assert dice_per_class(pred, true) == pytest.approx(expected)


def test_dice_accepts_0_1_numbers_and_tensors():
    pred = torch.tensor([[1, 1, 0, 0]], dtype=torch.uint8)
    true = np.array([[1.0, 0.0, 0.0, 0.0]])
    assert dice_per_class(pred, true) == pytest.approx([2 / 3])


def test_dice_refuses_probabilities():
    with pytest.raises(ValueError, match=r"pred_mask must be a binary mask .* binarize\(logits\)"):
        dice_per_class(np.array([[0.2, 0.9]]), np.array([[0, 1]]))


def test_dice_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"pred_mask shape \(4, 8, 8\) differs from true_mask shape \(4, 8, 9\)"):
        dice_per_class(np.zeros((4, 8, 8), bool), np.zeros((4, 8, 9), bool))


@pytest.mark.parametrize(
    ("empty", "message"),
    [
        ("skip", r"dice empty='skip' must be a number or one of nan, one, zero"),
        (2.0, r"dice empty=2.0 must be NaN, a number in \[0, 1\] or one of nan, one, zero"),
        (True, r"dice empty=True must be NaN"),
    ],
)
def test_dice_refuses_bad_empty_policy(empty, message):
    with pytest.raises(SpecError, match=message):
        dice_per_class(_masks([1]), _masks([1]), empty=empty)


def test_dice_rows_name_the_classes():
    rows = dice_rows(_masks([1, 0], [0, 0]), _masks([1, 0], [0, 0]), ["muscle", "visceral_fat"])
    assert rows[0] == {"class": "muscle", "dice": 1.0}
    assert rows[1]["class"] == "visceral_fat" and math.isnan(rows[1]["dice"])
    with pytest.raises(ValueError, match="1 class names for 2 mask channels"):
        dice_rows(_masks([1, 0], [0, 0]), _masks([1, 0], [0, 0]), ["muscle"])


@pytest.mark.parametrize(
    ("logits", "threshold", "expected"),
    [
        ([-3.0, -1e-7, 0.0, 1e-7, 2.0], 0.5, [False, False, False, True, True]),  # sigmoid > 0.5
        ([1.0, 1.38, 1.39, 5.0], 0.8, [False, False, True, True]),  # logit(0.8) = ln 4 = 1.386
    ],
)
def test_binarize_thresholds_the_sigmoid(logits, threshold, expected):
    assert binarize(np.array(logits), threshold=threshold).tolist() == expected


def test_binarize_agrees_with_sigmoid_on_tensors():
    logits = torch.randn(2, 4, 6, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    mask = binarize(logits)
    assert mask.dtype == bool and mask.shape == (2, 4, 6, 5)
    assert (mask == (torch.sigmoid(logits) > 0.5).numpy()).all()


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5])
def test_binarize_refuses_threshold_outside_0_1(threshold):
    with pytest.raises(SpecError, match=rf"binarize threshold={threshold} must lie in \(0, 1\)"):
        binarize(np.zeros(3), threshold=threshold)
