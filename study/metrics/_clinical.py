"""Clinical metrics per case and tissue, and their percent errors (docs/science.md §5, P §2.7).

For each test case the same function runs twice, once with the predicted masks and once with the
ground-truth masks, on the same image; the percent error between the two isolates what the
segmentation gets wrong (P §2.7: "values derived from using ground truth segmentations").

- MRI (:func:`mri_clinical`): mean T2 in ms per tissue, the nan-mean of the qDESS T2 map
  (:func:`study.data.qdess.estimate_t2`) over the mask, and tissue volume in mL.
- CT (:func:`ct_clinical`): cross-sectional area in cm² and mean HU per tissue.
- :func:`percent_error`: signed 100 · (pred − truth) / truth, with |truth| for HU, which can be
  negative (fat lies near −100 HU) and would otherwise flip the sign.

Per-case table rows (:func:`clinical_rows`, merged with Dice by :func:`case_rows`), one per class:

========================  ==================================================================
``case_id``               test case: an MRI volume or a CT slice
``class``                 tissue name, e.g. ``femoral_cartilage``, ``visceral_fat``
``dice``                  Dice of the predicted mask (from :func:`~study.metrics.dice_rows`)
``t2_ms_{pred,true}``     MRI mean T2 (ms) over the predicted / ground-truth mask
``volume_ml_{pred,true}`` MRI tissue volume (mL)
``area_cm2_{pred,true}``  CT cross-sectional area (cm²)
``mean_hu_{pred,true}``   CT mean attenuation (HU)
``{metric}_pct_err``      :func:`percent_error` of ``{metric}_pred`` against ``{metric}_true``
========================  ==================================================================

Values that are undefined are NaN, never dropped: mean T2 or HU of an empty mask, or of a mask
whose voxels all fail T2 estimation; a percent error whose truth is 0 (tissue absent from the
ground truth) or NaN.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from study.data.qdess import QDessParams, estimate_t2
from study.errors import DataError, SpecError
from study.metrics._dice import as_masks, to_numpy

# Class order of the segmentation heads (docs/science.md §1); names as they appear in the tables.
MRI_CLASSES: tuple[str, ...] = (
    "patellar_cartilage",
    "femoral_cartilage",
    "tibial_cartilage",
    "meniscus",
)
CT_CLASSES: tuple[str, ...] = ("muscle", "intramuscular_fat", "visceral_fat", "subcutaneous_fat")

# Which metrics take |truth| as the percent-error denominator (docs/science.md §5: mean HU).
ABSOLUTE_DENOMINATOR: dict[str, bool] = {
    "t2_ms": False,
    "volume_ml": False,
    "area_cm2": False,
    "mean_hu": True,
}


@dataclass(frozen=True)
class MriTissue:
    """Clinical values of one MRI tissue under one mask (predicted or ground truth).

    ``t2_ms``: mean T2 over the voxels with a valid estimate (NaN if none). ``volume_ml``: all mask
    voxels × voxel volume. ``n_voxels``: mask voxels; ``n_t2_voxels``: those with a valid T2.
    """

    class_name: str
    t2_ms: float
    volume_ml: float
    n_voxels: int
    n_t2_voxels: int

    def metrics(self) -> dict[str, float]:
        return {"t2_ms": self.t2_ms, "volume_ml": self.volume_ml}


@dataclass(frozen=True)
class CtTissue:
    """Clinical values of one CT tissue under one mask (predicted or ground truth).

    ``area_cm2``: cross-sectional area (mean over slices for a stack). ``mean_hu``: mean HU over
    the mask (NaN if empty). ``n_pixels``: mask pixels over all slices.
    """

    class_name: str
    area_cm2: float
    mean_hu: float
    n_pixels: int

    def metrics(self) -> dict[str, float]:
        return {"area_cm2": self.area_cm2, "mean_hu": self.mean_hu}


def _check_spacing(spacing_mm: Sequence[float], lengths: tuple[int, ...], layout: str) -> tuple[float, ...]:
    values = tuple(spacing_mm)
    ok = len(values) in lengths and all(isinstance(v, numbers.Real) and math.isfinite(v) and v > 0 for v in values)
    if not ok:
        raise DataError(f"spacing_mm={tuple(spacing_mm)!r} must be {layout}: positive sizes in mm")
    return tuple(float(v) for v in values)


def _check_t1(name: str, value: float) -> None:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
        raise SpecError(f"{name}={value!r} must be a T1 in ms > 0 (1200 for cartilage, docs/science.md §6)")


def _check_classes(class_names: Sequence[str], k: int) -> None:
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names {tuple(class_names)} for {k} mask channels")


def mri_clinical(
    echo1: Any,
    echo2: Any,
    masks: Any,
    params: QDessParams,
    spacing_mm: Sequence[float],
    t1_ms: float = 1200.0,
    meniscus_t1_ms: float | None = None,
    class_names: Sequence[str] = MRI_CLASSES,
    meniscus_class: str = "meniscus",
) -> list[MriTissue]:
    """Mean T2 (ms) and volume (mL) of each tissue of one qDESS volume.

    ``echo1``, ``echo2``: (S, H, W) qDESS echo magnitudes as acquired (not z-scored: T2 comes from
    their ratio). ``masks``: (K, S, H, W) binary, predicted or ground truth. ``spacing_mm``:
    (slice, row, col) voxel size in mm, in the same axis order as the arrays (SKM-TEA stores
    ``voxel_spacing`` in (X, Y, Z) order with sagittal slices on Z, so reorder it to match).

    T2 uses ``t1_ms`` (1200 ms, docs/science.md §6) everywhere, except in the ``meniscus_class``
    mask when ``meniscus_t1_ms`` is given (the optional 1000 ms for meniscus). Voxels whose
    estimate is undefined or outside [0, 100] ms are left out of the mean; the volume counts every
    mask voxel.
    """
    _check_t1("t1_ms", t1_ms)
    if meniscus_t1_ms is not None:
        _check_t1("meniscus_t1_ms", meniscus_t1_ms)
        if meniscus_class not in class_names:
            raise SpecError(
                f"meniscus_class={meniscus_class!r} is not among class_names {tuple(class_names)}; "
                "meniscus_t1_ms needs it"
            )
    e1, e2 = to_numpy(echo1), to_numpy(echo2)
    masks = as_masks(masks, "masks")
    if e1.ndim != 3 or e1.shape != e2.shape or masks.ndim != 4 or masks.shape[1:] != e1.shape:
        raise ValueError(
            f"echo1 {e1.shape}, echo2 {e2.shape} and masks {masks.shape} must be (S, H, W), "
            "(S, H, W) and (K, S, H, W) with the same (S, H, W)"
        )
    _check_classes(class_names, masks.shape[0])
    voxel_ml = math.prod(_check_spacing(spacing_mm, (3,), "(slice, row, col)")) / 1000.0

    tissues = []
    for name, mask in zip(class_names, masks):
        t1 = meniscus_t1_ms if (meniscus_t1_ms is not None and name == meniscus_class) else t1_ms
        # Estimating only inside the mask keeps a 512 × 512 × 160 volume cheap; the formula is
        # voxel-wise, so the values are those of the full map.
        t2 = estimate_t2(e1[mask], e2[mask], params, t1_ms=t1).astype(np.float64)
        valid = np.isfinite(t2)
        n_voxels = int(mask.sum())
        tissues.append(
            MriTissue(
                class_name=name,
                t2_ms=float(t2[valid].mean()) if valid.any() else math.nan,
                volume_ml=n_voxels * voxel_ml,
                n_voxels=n_voxels,
                n_t2_voxels=int(valid.sum()),
            )
        )
    return tissues


def ct_clinical(
    hu: Any,
    masks: Any,
    spacing_mm: Sequence[float],
    class_names: Sequence[str] = CT_CLASSES,
) -> list[CtTissue]:
    """Cross-sectional area (cm²) and mean HU of each tissue of one CT case.

    ``hu``: (H, W) slice or (S, H, W) stack of raw Hounsfield units (before windowing and
    z-scoring: the mean of a clipped window would be biased). ``masks``: (K, H, W) or (K, S, H, W)
    binary, predicted or ground truth. ``spacing_mm``: (row, col) pixel size in mm; a longer
    sequence (e.g. (slice, row, col)) is accepted and its last two entries are used.

    For a stack the area is the mean over its S slices, so it stays a cross-sectional area; the
    paper's CT cases are single L3 slices (S = 1).
    """
    image = to_numpy(hu).astype(np.float64, copy=False)
    masks = as_masks(masks, "masks")
    if image.ndim not in (2, 3) or masks.ndim != image.ndim + 1 or masks.shape[1:] != image.shape:
        raise ValueError(
            f"hu {image.shape} and masks {masks.shape} must be (H, W) and (K, H, W), or (S, H, W) and (K, S, H, W)"
        )
    _check_classes(class_names, masks.shape[0])
    row, col = _check_spacing(spacing_mm, (2, 3), "(row, col) or (slice, row, col)")[-2:]
    n_slices = 1 if image.ndim == 2 else image.shape[0]
    pixel_cm2 = row * col / 100.0

    tissues = []
    for name, mask in zip(class_names, masks):
        n_pixels = int(mask.sum())
        tissues.append(
            CtTissue(
                class_name=name,
                area_cm2=n_pixels * pixel_cm2 / n_slices,
                mean_hu=float(image[mask].mean()) if n_pixels else math.nan,
                n_pixels=n_pixels,
            )
        )
    return tissues


def percent_error(pred: Any, truth: Any, absolute_denominator: bool = False) -> float | np.ndarray:
    """Signed percent error 100 · (pred − truth) / truth, elementwise.

    With ``absolute_denominator=True`` the denominator is |truth| (for HU, docs/science.md §5), so
    the sign always says "pred above truth" (+) or below (−), also for negative truths such as fat HU.
    NaN where truth is 0 or NaN, or pred is NaN. Returns a float for scalar inputs.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    denominator = np.abs(t) if absolute_denominator else t
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.where(denominator != 0, 100.0 * (p - t) / denominator, math.nan)
    return float(error) if error.ndim == 0 else error


def clinical_rows(
    pred: Sequence[MriTissue] | Sequence[CtTissue],
    true: Sequence[MriTissue] | Sequence[CtTissue],
) -> list[dict[str, Any]]:
    """Per-class rows ``class, {metric}_pred, {metric}_true, {metric}_pct_err`` of one case.

    ``pred`` and ``true`` are the outputs of the same clinical function on the predicted and the
    ground-truth masks of one case, classes in the same order.
    """
    pred_names = [t.class_name for t in pred]
    true_names = [t.class_name for t in true]
    if pred_names != true_names:
        raise ValueError(f"predicted classes {pred_names} differ from ground-truth classes {true_names}")
    rows = []
    for p, t in zip(pred, true):
        if type(p) is not type(t):
            raise ValueError(f"class {p.class_name}: {type(p).__name__} compared with {type(t).__name__}")
        row: dict[str, Any] = {"class": p.class_name}
        for metric, p_value in p.metrics().items():
            t_value = t.metrics()[metric]
            row[f"{metric}_pred"] = p_value
            row[f"{metric}_true"] = t_value
            row[f"{metric}_pct_err"] = percent_error(p_value, t_value, ABSOLUTE_DENOMINATOR[metric])
        rows.append(row)
    return rows


def case_rows(case_id: str, *row_lists: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge per-class row lists of one case (Dice, clinical) into one row per class + ``case_id``.

    Every list must name the same classes in the same order; a column found in two lists is
    refused rather than silently overwritten. ``pandas.DataFrame(case_rows(...))`` gives the table.
    """
    if not row_lists:
        raise ValueError("case_rows needs at least one list of rows")
    classes = [row["class"] for row in row_lists[0]]
    merged: list[dict[str, Any]] = [{"case_id": case_id, "class": name} for name in classes]
    for rows in row_lists:
        if [row["class"] for row in rows] != classes:
            found = [row["class"] for row in rows]
            raise ValueError(f"rows for classes {found} do not match {classes}")
        for target, row in zip(merged, rows):
            for column, value in row.items():
                if column == "class":
                    continue
                if column in target:
                    raise ValueError(f"column {column!r} appears in two row lists for case {case_id}")
                target[column] = value
    return merged
