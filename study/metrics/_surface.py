"""Boundary metrics per class per test case: normalised surface distance (NSD) and HD95, in mm.

Dice rewards overlap and is blind to where a boundary goes wrong; Metrics Reloaded (Maier-Hein et
al., Nature Methods 2024) pairs an overlap metric with a boundary metric, and thin (cartilage,
meniscus) or scattered (intramuscular fat) tissues are where the two disagree.

- The **surface** of a mask is its boundary voxels: mask voxels with a face-neighbour outside the
  mask (``mask XOR binary_erosion(mask)``, voxels beyond the case's grid counting as outside), as
  MONAI's ``get_mask_edges`` defines it.
- **Surface distances**: from every boundary voxel of the prediction to the nearest boundary voxel of
  the truth, and back, in mm, with the case's voxel spacing (anisotropic voxels count as they are).
- **NSD** at a tolerance of tau mm: the share of both boundaries' voxels that lie within tau of the
  other boundary, (|{p: d(p, T) <= tau}| + |{t: d(t, P) <= tau}|) / (|P| + |T|), in [0, 1], higher
  is better (MONAI's ``compute_surface_dice`` without sub-voxel areas).
- **HD95**: the larger of the two directions' 95th percentiles (linear interpolation, as
  ``numpy.percentile`` and ``torch.quantile``) of the surface distances, in mm, lower is better
  (MONAI's ``compute_hausdorff_distance(percentile=95)``).

A case is measured on its own grid, as Dice is: an MRI volume in 3-D with (slice, row, col)
spacing, a CT slice in 2-D with (row, col) spacing (:func:`case_geometry`).

**Empty masks** (named ``EMPTY_POLICY``, beside Dice's ``empty`` in :mod:`study.metrics._dice`):

- absent from both truth and prediction: NSD and HD95 are NaN, like Dice's default: the case says
  nothing about that class, and class means skip it;
- absent from one of them: NSD is 0 (no boundary voxel lies near a boundary that does not exist;
  MONAI gives 0 too) and HD95 is the diagonal of the case's field of view in mm, the worst value the
  case allows (Metrics Reloaded's advice; MONAI gives inf), so that class means and paired tests
  stay defined and such a case ranks a strategy last, not nowhere.

Why scipy's Euclidean distance transform rather than MONAI's functions: MONAI would become a
dependency of every study (and of its torch version) for two functions, and it computes in float32;
``scipy.ndimage.distance_transform_edt`` is exact (not a chamfer approximation), takes the voxel
spacing (``sampling``), runs in float64 and scipy is already a dependency. Each class is first
cropped to the bounding box of prediction and truth with a one-voxel zero margin: every boundary
voxel lies inside it, so the distances are the same as on the whole grid, and a 512 x 512 x 160 knee
volume costs the size of its cartilage rather than of the volume. The tests check the results
against MONAI's (the ``test`` extra) to 1e-6 mm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from study.constants import nsd_tolerances
from study.errors import SpecError
from study.metrics._dice import as_masks

HD_PERCENTILE = 95.0
EMPTY_POLICY = "nan_if_both_empty_worst_if_one"  # both empty: NaN; one empty: NSD 0, HD95 the case's diagonal


def check_tolerances(tolerances: Mapping[str, Any] | None) -> dict[str, float]:
    """The defaults (:data:`study.constants.DEFAULT_NSD_TOLERANCE_MM`) updated with ``tolerances``
    (class name -> mm, ``default`` for any other class); :class:`SpecError` for a value that is not
    a finite number >= 0."""
    try:
        return nsd_tolerances(tolerances)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def class_tolerances(class_names: Sequence[str], tolerances: Mapping[str, Any] | None = None) -> list[float]:
    """The NSD tolerance (mm) of each class, in order."""
    table = check_tolerances(tolerances)
    return [table.get(name, table["default"]) for name in class_names]


def case_geometry(masks_shape: tuple[int, ...], spacing_mm: Sequence[float]) -> tuple[bool, tuple[float, ...]]:
    """How a case (K, S, H, W) is measured: ``(planar, spacing)``. One slice (a CT case, a 2-D
    import) is 2-D with its (row, col) spacing; a volume (an MRI case) is 3-D with (slice, row, col)."""
    spacing = tuple(float(s) for s in spacing_mm)
    if len(masks_shape) != 4 or len(spacing) != 3:
        raise ValueError(f"masks {masks_shape} and spacing {spacing} must be (K, S, H, W) and (slice, row, col)")
    if masks_shape[1] == 1:
        return True, spacing[1:]
    return False, spacing


def _edges(mask: np.ndarray) -> np.ndarray:
    return mask ^ ndimage.binary_erosion(mask)


def surface_distances(pred: np.ndarray, true: np.ndarray, spacing_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm, float64) from each boundary voxel of ``pred`` to the boundary of ``true``, and
    from each of ``true`` to that of ``pred``, for one class: boolean masks of any rank, the spacing
    one value per axis. A direction whose target boundary is empty gives inf for each voxel."""
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    spacing = tuple(float(s) for s in spacing_mm)
    if pred.shape != true.shape or len(spacing) != pred.ndim:
        raise ValueError(f"masks {pred.shape}, {true.shape} and spacing {spacing} do not match")
    union = pred | true
    if not union.any():
        return np.empty(0), np.empty(0)
    # The bounding box of both, with a zero margin: every boundary voxel is inside, and a voxel at the
    # grid's edge still has an outside neighbour (as scipy's erosion has at the border).
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(union))
    pred, true = np.pad(pred[box], 1), np.pad(true[box], 1)
    edge_pred, edge_true = _edges(pred), _edges(true)

    def towards(source: np.ndarray, target: np.ndarray) -> np.ndarray:
        if not target.any():
            return np.full(int(source.sum()), np.inf)
        return ndimage.distance_transform_edt(~target, sampling=spacing)[source]

    return towards(edge_pred, edge_true), towards(edge_true, edge_pred)


def diagonal_mm(shape: Sequence[int], spacing_mm: Sequence[float]) -> float:
    """The diagonal of a grid's field of view in mm: the worst HD95 a case allows."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing_mm))))


def nsd_hd95(
    pred: np.ndarray, true: np.ndarray, spacing_mm: Sequence[float], tolerance_mm: float
) -> tuple[float, float]:
    """(NSD at ``tolerance_mm``, HD95 in mm) of one class of one case, under the empty-mask policy."""
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    has_pred, has_true = bool(pred.any()), bool(true.any())
    if not (has_pred or has_true):
        return math.nan, math.nan
    if has_pred != has_true:
        return 0.0, diagonal_mm(pred.shape, spacing_mm)
    d_pred, d_true = surface_distances(pred, true, spacing_mm)
    nsd = (np.count_nonzero(d_pred <= tolerance_mm) + np.count_nonzero(d_true <= tolerance_mm)) / (
        d_pred.size + d_true.size
    )
    hd95 = max(np.percentile(d_pred, HD_PERCENTILE), np.percentile(d_true, HD_PERCENTILE))
    return float(nsd), float(hd95)


def boundary_per_class(
    pred_mask: Any, true_mask: Any, spacing_mm: Sequence[float], tolerances_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """NSD and HD95 of each class of ONE case: masks (K, ...) with any spatial rank after the class
    axis, one spacing value (mm) per spatial axis, one tolerance (mm) per class. Float64 (K,) each."""
    pred, true = as_masks(pred_mask, "pred_mask"), as_masks(true_mask, "true_mask")
    if pred.shape != true.shape:
        raise ValueError(f"pred_mask shape {pred.shape} differs from true_mask shape {true.shape}")
    if len(tolerances_mm) != pred.shape[0]:
        raise ValueError(f"{len(tolerances_mm)} tolerances for {pred.shape[0]} mask channels")
    values = [nsd_hd95(p, t, spacing_mm, tol) for p, t, tol in zip(pred, true, tolerances_mm)]
    return np.array([v[0] for v in values], dtype=np.float64), np.array([v[1] for v in values], dtype=np.float64)


def boundary_rows(
    pred_mask: Any,
    true_mask: Any,
    class_names: Sequence[str],
    spacing_mm: Sequence[float],
    tolerances_mm: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per-case table rows ``{"class", "nsd", "hd95", "nsd_tol_mm"}`` of one case (K, S, H, W),
    measured as :func:`case_geometry` says with the per-class tolerances (defaults:
    :data:`DEFAULT_NSD_TOLERANCE_MM`)."""
    pred, true = as_masks(pred_mask, "pred_mask"), as_masks(true_mask, "true_mask")
    if len(class_names) != pred.shape[0]:
        raise ValueError(f"{len(class_names)} class names for {pred.shape[0]} mask channels")
    planar, spacing = case_geometry(pred.shape, spacing_mm)
    if planar:
        pred, true = pred[:, 0], true[:, 0]
    tolerances = class_tolerances(class_names, tolerances_mm)
    nsd, hd95 = boundary_per_class(pred, true, spacing, tolerances)
    return [
        {"class": name, "nsd": float(n), "hd95": float(h), "nsd_tol_mm": tol}
        for name, n, h, tol in zip(class_names, nsd, hd95, tolerances)
    ]
