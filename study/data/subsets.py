"""Label-limited subsets and pretraining extents (Dominic et al. 2023, section 2.1).

Label fractions are nested: the 5 % subset lies inside the 10 % subset, which lies inside the 25 %
one, and so on, because every subset is a prefix of one seeded permutation of the training scans.
Counts are in scans: volumes for MRI, slices for CT (a CT scan is one slice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from study.data._model import Dataset, Split
from study.errors import DataError, SpecError

DEFAULT_LABEL_FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05)
Rounding = Literal["ceil", "half_even"]


def subset_size(n: int, fraction: float, rounding: Rounding) -> int:
    """Number of scans in the ``fraction`` subset of ``n`` training scans (at least 1).

    ``ceil`` (the default for volumes) never gives fewer volumes than the fraction asks for and
    reproduces the paper's MRI counts 86 -> 43/22/9/5; ``half_even`` (the default for slices)
    reproduces its CT counts 709 -> 354/177/71/35.
    """
    if not 0 < fraction <= 1:
        raise SpecError(f"label fraction {fraction!r} must be in (0, 1]")
    exact = n * fraction
    # Guard against float noise such as 0.29 * 100 = 28.999999999999996.
    exact = round(exact, 9)
    size = math.ceil(exact) if rounding == "ceil" else round(exact)
    return max(1, min(n, size))


def default_rounding(dataset: Dataset) -> Rounding:
    return "ceil" if dataset.volumetric else "half_even"


def label_subsets(
    train_ids: Sequence[str],
    fractions: Sequence[float] = DEFAULT_LABEL_FRACTIONS,
    seed: int = 0,
    rounding: Rounding = "half_even",
) -> dict[float, tuple[str, ...]]:
    """Nested subsets of the training scans, one per label fraction, deterministic from ``seed``.

    The order of ``train_ids`` does not matter: they are sorted before the seeded permutation.
    """
    ids = sorted(train_ids)
    if not ids:
        raise DataError("the training split is empty: no label subsets can be drawn")
    order = np.random.default_rng(seed).permutation(len(ids))
    ranked = [ids[i] for i in order]
    return {float(f): tuple(ranked[: subset_size(len(ids), f, rounding)]) for f in fractions}


def pretraining_scans(split: Split, extent: float, seed: int = 0, rounding: Rounding = "ceil") -> tuple[str, ...]:
    """Scans a pretraining sees, ``extent`` in multiples of the training set.

    Below 1.0 it is a seeded subset of the training scans, drawn from the same permutation as the
    label subsets (so 25 % lies inside 50 % inside 100 %, and a label subset of fraction f lies
    inside every pretraining subset of extent >= f); counts round as the label subsets do. From 1.0
    up it is every training scan plus unlabeled ones (the paper's 100 %, 150 %, 200 % for MRI, up
    to 1200 % for CT are 1.0, 1.5, 2.0, 12.0), added in a seeded order, so a larger extent contains
    a smaller one. Validation and test scans are never used.
    """
    if not math.isfinite(extent) or extent <= 0:
        raise SpecError(f"pretraining extent {extent!r} must be a positive multiple of the training set")
    if extent < 1:
        subset = label_subsets(split.train, (extent,), seed, rounding)[float(extent)]
        return guard_training_scans(split, subset, "pretraining")
    n_extra = round(len(split.train) * (extent - 1), 9)
    n_extra = math.ceil(n_extra)
    if n_extra > len(split.unlabeled):
        raise DataError(
            f"pretraining extent {extent:g} needs {n_extra} unlabeled scans, the data set has {len(split.unlabeled)}"
        )
    pool = sorted(split.unlabeled)
    order = np.random.default_rng(seed).permutation(len(pool))
    extra = tuple(pool[i] for i in order[:n_extra])
    return guard_training_scans(split, tuple(split.train) + extra, "pretraining")


def guard_training_scans(split: Split, scan_ids: Sequence[str], purpose: str) -> tuple[str, ...]:
    """Return ``scan_ids`` unchanged, or raise if any of them is a validation or test scan.

    Every path that feeds scans to pretraining or fine-tuning goes through here: a leak of held-out
    data is an error, never a warning.
    """
    held_out = set(split.val) | set(split.test)
    leaked = [s for s in scan_ids if s in held_out]
    if leaked:
        role = "test" if leaked[0] in split.test else "validation"
        raise DataError(f"{purpose} would use {len(leaked)} held-out scan(s), e.g. {role} scan {leaked[0]!r}")
    return tuple(scan_ids)


def finetuning_scans(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[str, ...]:
    """The labeled training scans of one label fraction, nested across fractions."""
    return labeled_scans(dataset.split, fraction, seed, default_rounding(dataset))


def labeled_scans(split: Split, fraction: float, seed: int = 0, rounding: Rounding = "half_even") -> tuple[str, ...]:
    subsets = label_subsets(split.train, (fraction,), seed, rounding)
    return guard_training_scans(split, subsets[float(fraction)], "fine-tuning")


def check_selections(
    split: Split, rounding: Rounding, extents: Sequence[float], fractions: Sequence[float], seed: int = 0
) -> None:
    """Draw every pretraining and label subset a study will ask of this split, so that a selection
    no trial could make is refused before the study starts (the errors name the value)."""
    for extent in extents:
        try:
            pretraining_scans(split, extent, seed, rounding)
        except (SpecError, DataError) as exc:
            raise type(exc)(f"pretraining.extent {extent:g}: {exc}") from None
    for fraction in fractions:
        try:
            labeled_scans(split, fraction, seed, rounding)
        except (SpecError, DataError) as exc:
            raise type(exc)(f"label_fractions {fraction:g}: {exc}") from None
