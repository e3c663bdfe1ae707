"""Names and numbers the whole platform shares, in one light module (no torch, numpy or pandas), so
that parsing a spec or reading a study folder stays quick and each constant has one home."""

from __future__ import annotations

from typing import Literal, get_args

from study._suggest import did_you_mean

SUPERVISED = "supervised"  # the strategy name of the baseline: random init, the same labels
DEFAULT_SEED = 11725701  # training seed of the authors' code (docs/science.md §4)
MAX_TRIALS = 20_000  # a typo in an axis should not plan a study that would run for years

# The paper's network: five levels, the last the bottleneck (docs/science.md §3).
PAPER_WIDTHS: tuple[int, ...] = (32, 64, 128, 256, 512)
LAPTOP_WIDTHS: tuple[int, ...] = (16, 32, 64, 128)
LAPTOP_GROUPS = 8

# Pretext design choices (docs/science.md §2): patch sizes are given for a 512 x 512 image.
TASKS: tuple[str, ...] = ("prediction", "restoration")
SAMPLERS: tuple[str, ...] = ("random", "poisson_disc", "poisson_disc_spread")
PAPER_IMAGE_SIZE = 512
PAPER_PATCH_SIZES: tuple[int, ...] = (64, 32, 16, 8)

# Transfer design choices (docs/science.md §4).
TransferScope = Literal["none", "encoder", "encoder+decoder"]
Schedule = Literal["at_once", "freeze_then_unfreeze"]
SCOPES: tuple[str, ...] = get_args(TransferScope)
SCHEDULES: tuple[str, ...] = get_args(Schedule)

# How a slice is padded up to the U-Net's multiple (docs/science.md §3). Zero, the mean of a z-scored
# image, is also what nnU-Net and MONAI's DivisiblePad pad with.
PadMode = Literal["constant", "reflect", "replicate"]
PAD_MODES: tuple[str, ...] = get_args(PadMode)
DEFAULT_PAD_MODE: PadMode = "constant"


def check_pad_mode(mode: object) -> str:
    """``mode`` when it is one of :data:`PAD_MODES`; otherwise ValueError with the one message a pad
    mode is refused with (the spec's ``scale.pad_mode`` and :class:`study.train.TrainSettings` ask here)."""
    if mode not in PAD_MODES:
        raise ValueError(f"{mode!r} is not one of {', '.join(PAD_MODES)}{did_you_mean(mode, PAD_MODES)}")
    return mode


# NSD tolerance in mm per class (study.metrics._surface, docs/per-case-table.md). Knee cartilage and
# meniscus are 1-3 mm thin structures: 1 mm is about three in-plane voxels of SKM-TEA (0.31 mm) and
# one 0.8 mm slice. The CT tissues' boundaries (muscle against fat, fat against fat) blur over a few
# 0.7-0.9 mm pixels: 2 mm. Any other class (a NIfTI import's own names) gets "default". At the laptop
# phantoms' coarser pixels (about 2.5 mm) a tolerance below a pixel counts only boundary voxels that
# coincide. The spec's analysis.nsd_tolerance_mm replaces any of them.
DEFAULT_NSD_TOLERANCE_MM: dict[str, float] = {
    "default": 1.0,
    "patellar_cartilage": 1.0,
    "femoral_cartilage": 1.0,
    "tibial_cartilage": 1.0,
    "meniscus": 1.0,
    "muscle": 2.0,
    "intramuscular_fat": 2.0,
    "visceral_fat": 2.0,
    "subcutaneous_fat": 2.0,
}


def nsd_tolerances(given: dict | None) -> dict[str, float]:
    """:data:`DEFAULT_NSD_TOLERANCE_MM` with the classes ``given`` names replaced; ValueError naming
    a value that is not a finite distance >= 0 mm."""
    out = dict(DEFAULT_NSD_TOLERANCE_MM)
    for name, value in (given or {}).items():
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value == value
            and 0 <= value < float("inf")
        )
        if not ok:
            raise ValueError(f"nsd_tolerance_mm.{name}={value!r} must be a distance in mm >= 0")
        out[str(name)] = float(value)
    return out


INCOMPLETE = 3  # exit status: the study ran, but some planned trial has no finished result
