"""Per-case evaluation metrics: Dice, NSD and HD95, inpainting L2, clinical metrics (docs/science.md §5).

Everything here works on one test case at a time (an MRI volume, a CT slice) and returns plain
numbers, arrays or row dicts for the per-case table that tracking logs and analysis reads; the
table's columns are listed in :mod:`study.metrics._clinical`. Inputs may be numpy arrays or torch
tensors; outputs are numpy / Python floats.
"""

from __future__ import annotations

from study.constants import DEFAULT_NSD_TOLERANCE_MM
from study.metrics._clinical import (
    CT_CLASSES,
    MRI_CLASSES,
    CtTissue,
    MriTissue,
    case_rows,
    clinical_rows,
    ct_clinical,
    mri_clinical,
    percent_error,
)
from study.metrics._dice import binarize, dice_per_class, dice_rows
from study.metrics._inpainting import inpainting_l2
from study.metrics._surface import (
    EMPTY_POLICY,
    boundary_per_class,
    boundary_rows,
    case_geometry,
    check_tolerances,
    class_tolerances,
    nsd_hd95,
    surface_distances,
)

__all__ = [
    "CT_CLASSES",
    "DEFAULT_NSD_TOLERANCE_MM",
    "EMPTY_POLICY",
    "MRI_CLASSES",
    "CtTissue",
    "MriTissue",
    "binarize",
    "boundary_per_class",
    "boundary_rows",
    "case_geometry",
    "case_rows",
    "check_tolerances",
    "class_tolerances",
    "clinical_rows",
    "ct_clinical",
    "dice_per_class",
    "dice_rows",
    "inpainting_l2",
    "mri_clinical",
    "nsd_hd95",
    "percent_error",
    "surface_distances",
]
