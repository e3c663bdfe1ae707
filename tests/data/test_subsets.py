from __future__ import annotations

import pytest

from study.data import (
    Split,
    check_selections,
    guard_training_scans,
    label_subsets,
    open_dataset,
    pretraining_scans,
    subset_size,
)
from study.data.subsets import finetuning_scans
from study.errors import DataError, SpecError

FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05)


@pytest.mark.parametrize(
    "n, rounding, counts",
    [
        (86, "ceil", (86, 43, 22, 9, 5)),  # the paper's MRI training volumes
        (709, "half_even", (709, 354, 177, 71, 35)),  # the paper's CT training slices
        (20, "ceil", (20, 10, 5, 2, 1)),  # built-in MRI phantom
        (100, "half_even", (100, 50, 25, 10, 5)),  # built-in CT phantom
        (3, "half_even", (3, 2, 1, 1, 1)),  # never an empty subset
    ],
)
def test_subset_sizes_reproduce_the_paper(n: int, rounding: str, counts: tuple) -> None:
    assert tuple(subset_size(n, f, rounding) for f in FRACTIONS) == counts  # type: ignore[arg-type]


def test_subsets_are_nested_and_deterministic() -> None:
    ids = [f"scan{i:03d}" for i in range(86)]
    subsets = label_subsets(ids, FRACTIONS, seed=7, rounding="ceil")
    assert [len(subsets[f]) for f in FRACTIONS] == [86, 43, 22, 9, 5]
    for larger, smaller in zip(FRACTIONS, FRACTIONS[1:]):
        assert set(subsets[smaller]) <= set(subsets[larger])
    assert label_subsets(list(reversed(ids)), FRACTIONS, seed=7, rounding="ceil") == subsets
    assert label_subsets(ids, FRACTIONS, seed=8, rounding="ceil")[0.05] != subsets[0.05]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_label_fraction_outside_unit_interval_is_refused(fraction: float) -> None:
    with pytest.raises(SpecError, match=r"must be in \(0, 1\]"):
        subset_size(10, fraction, "ceil")


def test_pretraining_extents_add_unlabeled_scans_nested() -> None:
    split = Split(
        train=tuple(f"t{i}" for i in range(10)), val=("v",), test=("x",), unlabeled=tuple(f"u{i}" for i in range(10))
    )
    base, half, double = (pretraining_scans(split, e, seed=3) for e in (1.0, 1.5, 2.0))
    assert base == split.train
    assert len(half) == 15 and len(double) == 20
    assert set(base) < set(half) < set(double)
    with pytest.raises(DataError, match="needs 20 unlabeled scans, the data set has 10"):
        pretraining_scans(split, 3.0)
    with pytest.raises(SpecError, match="must be a positive multiple"):
        pretraining_scans(split, 0.0)


@pytest.mark.parametrize("rounding", ["ceil", "half_even"])
def test_pretraining_extents_below_one_are_nested_training_subsets(rounding: str) -> None:
    split = Split(train=tuple(f"t{i:02d}" for i in range(40)), val=("v",), test=("x",), unlabeled=("u0",))
    quarter, half, full = (pretraining_scans(split, e, seed=5, rounding=rounding) for e in (0.25, 0.5, 1.0))
    assert (len(quarter), len(half)) == (10, 20)
    assert set(quarter) < set(half) < set(full) == set(split.train)
    assert not set(half) & {"v", "x", "u0"}
    # the label subset of a fraction lies inside every pretraining subset at least as large
    labels = label_subsets(split.train, (0.1, 0.25), seed=5, rounding=rounding)
    assert set(labels[0.1]) < set(quarter) and set(labels[0.25]) == set(quarter)
    # another seed draws another subset; the same seed the same one
    assert pretraining_scans(split, 0.25, seed=6, rounding=rounding) != quarter
    assert pretraining_scans(split, 0.25, seed=5, rounding=rounding) == quarter
    # a tiny extent still pretrains on one scan
    assert len(pretraining_scans(split, 0.001, seed=5, rounding=rounding)) == 1


def test_selections_a_study_cannot_make_are_named() -> None:
    split = Split(
        train=tuple(f"t{i}" for i in range(10)), val=("v",), test=("x",), unlabeled=tuple(f"u{i}" for i in range(5))
    )
    check_selections(split, "ceil", [0.25, 1.0, 1.5], [0.05, 1.0])
    with pytest.raises(DataError, match=r"^pretraining.extent 2: .*needs 10 unlabeled scans, the data set has 5"):
        check_selections(split, "ceil", [0.5, 2.0], [0.05])


def test_leak_guard_refuses_validation_and_test_scans() -> None:
    split = Split(train=("a", "b"), val=("v",), test=("x",))
    assert guard_training_scans(split, ["a"], "fine-tuning") == ("a",)
    with pytest.raises(DataError, match="fine-tuning would use 1 held-out scan.*test scan 'x'"):
        guard_training_scans(split, ["a", "x"], "fine-tuning")
    with pytest.raises(DataError, match="validation scan 'v'"):
        guard_training_scans(split, ["v"], "pretraining")


def test_finetuning_scans_of_a_dataset_come_from_train_only(tiny_mri) -> None:
    ds = open_dataset(tiny_mri)
    chosen = finetuning_scans(ds, 0.5, seed=0)
    assert len(chosen) == 3 and set(chosen) <= set(ds.split.train)
