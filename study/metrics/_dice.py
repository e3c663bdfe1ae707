"""Dice per class per test case, from binarised sigmoid outputs (docs/science.md §5, P §2.5.2).

A test case is a whole 3D volume for MRI (masks (K, S, H, W): the slices' predictions stacked) and
one slice for CT (masks (K, H, W)); Dice is computed over all its voxels at once, not per slice.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from study.errors import SpecError

EMPTY_POLICIES: dict[str, float] = {"nan": math.nan, "one": 1.0, "zero": 0.0}


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array-like or a (possibly GPU, possibly grad-tracking) tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def binarize(logits: Any, threshold: float = 0.5) -> np.ndarray:
    """Boolean masks ``sigmoid(logits) > threshold`` (the paper thresholds at 0.5), same shape.

    ``logits``: raw network outputs, e.g. (K, S, H, W) or (B, K, H, W), numpy or torch. The test is
    done on the logits, ``logits > log(t / (1 − t))`` (0 for t = 0.5), which is the same decision
    without the sigmoid saturating to exactly 0.5 or 1 in float32.
    """
    if not (isinstance(threshold, numbers.Real) and 0 < threshold < 1):
        raise SpecError(f"binarize threshold={threshold!r} must lie in (0, 1) (a probability)")
    cut = math.log(threshold / (1 - threshold))
    return to_numpy(logits) > cut


def _empty_value(empty: float | str) -> float:
    if isinstance(empty, str):
        if empty not in EMPTY_POLICIES:
            raise SpecError(f"dice empty={empty!r} must be a number or one of {', '.join(EMPTY_POLICIES)}")
        return EMPTY_POLICIES[empty]
    if isinstance(empty, numbers.Real) and not isinstance(empty, bool):
        if math.isnan(empty) or 0.0 <= empty <= 1.0:
            return float(empty)
    raise SpecError(f"dice empty={empty!r} must be NaN, a number in [0, 1] or one of {', '.join(EMPTY_POLICIES)}")


def as_masks(masks: Any, name: str) -> np.ndarray:
    """Check that ``masks`` is binary (bool, or numbers that are all 0 or 1) and return it as bool.

    Probabilities or logits are refused rather than cast: ``!= 0`` would count every pixel with a
    small probability as foreground.
    """
    array = to_numpy(masks)
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.number) and np.isin(array, (0, 1)).all()):
        raise ValueError(
            f"{name} must be a binary mask (bool or 0/1 values), got dtype {array.dtype}; "
            "turn logits into masks with binarize(logits)"
        )
    return array.astype(bool)


def dice_per_class(pred_mask: Any, true_mask: Any, empty: float | str = "nan") -> np.ndarray:
    """Dice 2|P ∩ T| / (|P| + |T|) of each class for ONE test case, as float64 of shape (K,).

    ``pred_mask``, ``true_mask``: (K, ...) binary masks with the class axis first and any spatial
    rank after it: (K, S, H, W) for an MRI volume, (K, H, W) for a CT slice. Predictions come from
    :func:`binarize` applied to the network's logits.

    ``empty`` is what a class scores when it is absent from both prediction and ground truth, where
    the ratio is 0/0: ``"nan"`` (default; the class is left out of any nan-mean, like MONAI's
    ``ignore_empty=True``, so a case cannot score a free 1.0 for a tissue it does not contain),
    ``"one"`` (an empty prediction of an empty class is perfect), ``"zero"``, or a number in [0, 1].
    A class absent from the truth but predicted scores 0, and vice versa, whatever ``empty``.
    """
    fill = _empty_value(empty)
    pred = as_masks(pred_mask, "pred_mask")
    true = as_masks(true_mask, "true_mask")
    if pred.shape != true.shape:
        raise ValueError(f"pred_mask shape {pred.shape} differs from true_mask shape {true.shape}")
    if pred.ndim < 2:
        raise ValueError(f"masks have shape {pred.shape}; expected (K, ...) with a class axis first")
    pred = pred.reshape(pred.shape[0], -1)
    true = true.reshape(true.shape[0], -1)
    intersection = np.logical_and(pred, true).sum(axis=1, dtype=np.int64)
    total = pred.sum(axis=1, dtype=np.int64) + true.sum(axis=1, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * intersection / total, fill)
    return dice.astype(np.float64)


def dice_rows(
    pred_mask: Any,
    true_mask: Any,
    class_names: Sequence[str],
    empty: float | str = "nan",
) -> list[dict[str, Any]]:
    """:func:`dice_per_class` as per-case table rows ``{"class": name, "dice": value}``."""
    dice = dice_per_class(pred_mask, true_mask, empty=empty)
    if len(class_names) != len(dice):
        raise ValueError(f"{len(class_names)} class names for {len(dice)} mask channels")
    return [{"class": name, "dice": float(d)} for name, d in zip(class_names, dice)]
