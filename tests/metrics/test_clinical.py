"""Tests for study/metrics/_clinical.py: T2, volume, area, HU, percent error, per-case rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from study.data.qdess import QDessParams, dess_echoes
from study.errors import DataError, SpecError
from study.metrics import (
    CtTissue,
    case_rows,
    clinical_rows,
    ct_clinical,
    dice_rows,
    mri_clinical,
    percent_error,
)

# Typical SKM-TEA qDESS parameters (ms, degrees, as stored, µs).
PARAMS = QDessParams(repetition_time=18.176, echo_time=5.8, flip_angle=20.0, spoiler_area=3132.0, spoiler_time=1560.0)
SPACING = (0.8, 0.3125, 0.3125)  # (slice, row, col) mm -> 0.078125 mm^3 per voxel
MRI_NAMES = ("patellar_cartilage", "femoral_cartilage", "tibial_cartilage", "meniscus")


def _phantom(meniscus_t1_ms: float = 1200.0) -> tuple[np.ndarray, ...]:
    """(S=3, H=8, W=9) volume with a known T2 map, its echoes and 4 class masks (K, S, H, W)."""
    rng = np.random.default_rng(7)
    shape = (3, 8, 9)
    t2 = np.zeros(shape)  # 0 = air: no signal, T2 undefined
    masks = np.zeros((4,) + shape, dtype=bool)
    masks[0, :, 0:2, :] = True  # patellar cartilage: 54 voxels
    masks[1, :, 2:5, :4] = True  # femoral cartilage: 36 voxels
    masks[2, 1, 5:7, :] = True  # tibial cartilage: 18 voxels
    masks[3, :, 5:8, 6:] = True  # meniscus: 27 voxels, some shared with tibial on slice 1
    masks[3, 1, 5:7, 6:] = False  # keep the classes disjoint: meniscus 21 voxels
    t2[masks[0]] = rng.uniform(30, 50, masks[0].sum())
    t2[masks[1]] = rng.uniform(25, 45, masks[1].sum())
    t2[masks[2]] = rng.uniform(20, 40, masks[2].sum())
    t2[masks[3]] = rng.uniform(10, 20, masks[3].sum())
    t1 = np.where(masks[3], meniscus_t1_ms, 1200.0)
    echo1, echo2 = dess_echoes(rng.uniform(0.5, 1.0, shape), t1, t2, PARAMS)
    return echo1, echo2, masks, t2


def test_mean_t2_of_each_mask_matches_the_known_map_within_1_percent():
    echo1, echo2, masks, t2 = _phantom()
    tissues = mri_clinical(echo1, echo2, masks, PARAMS, SPACING)
    assert [t.class_name for t in tissues] == list(MRI_NAMES)
    for tissue, mask in zip(tissues, masks):
        assert tissue.t2_ms == pytest.approx(t2[mask].mean(), rel=0.01)
        assert tissue.n_t2_voxels == tissue.n_voxels


def test_meniscus_t1_is_used_inside_the_meniscus_mask_only():
    echo1, echo2, masks, t2 = _phantom(meniscus_t1_ms=1000.0)
    truth = t2[masks[3]].mean()
    with_t1 = mri_clinical(echo1, echo2, masks, PARAMS, SPACING, meniscus_t1_ms=1000.0)
    without = mri_clinical(echo1, echo2, masks, PARAMS, SPACING)
    assert with_t1[3].t2_ms == pytest.approx(truth, rel=0.01)
    assert abs(without[3].t2_ms - truth) > 0.02 * truth  # 1200 ms in meniscus biases T2 down ~3 %
    assert [t.t2_ms for t in with_t1[:3]] == [t.t2_ms for t in without[:3]]


def test_mean_t2_skips_invalid_voxels_and_is_nan_for_an_empty_mask():
    echo1, echo2, masks, t2 = _phantom()
    predicted = masks.copy()
    predicted[1, 0, 7, :6] = True  # femoral mask leaks into 6 air voxels: no signal, no T2
    predicted[2] = False  # tibial cartilage missed entirely
    tissues = mri_clinical(echo1, echo2, predicted, PARAMS, SPACING)
    assert tissues[1].t2_ms == pytest.approx(t2[masks[1]].mean(), rel=0.01)
    assert (tissues[1].n_voxels, tissues[1].n_t2_voxels) == (42, 36)
    assert math.isnan(tissues[2].t2_ms) and tissues[2].volume_ml == 0.0


def test_t2_above_100_ms_is_left_out_of_the_mean():
    # (S=1, H=1, W=2): one voxel at 40 ms, one at 150 ms (outside DOSMA's [0, 100] ms).
    echo1, echo2 = dess_echoes(np.ones((1, 1, 2)), 1200.0, np.array([[[40.0, 150.0]]]), PARAMS)
    mask = np.ones((1, 1, 1, 2), bool)  # (K, S, H, W)
    [tissue] = mri_clinical(echo1, echo2, mask, PARAMS, SPACING, class_names=["fc"])
    assert tissue.t2_ms == pytest.approx(40.0, rel=0.01)
    assert tissue.n_t2_voxels == 1


@pytest.mark.parametrize(
    ("spacing", "expected_ml"),
    [
        ((0.8, 0.3125, 0.3125), [n * 0.078125e-3 for n in (54, 36, 18, 21)]),
        ((1.0, 1.0, 1.0), [0.054, 0.036, 0.018, 0.021]),  # 1 mm^3 voxels: mL = voxels / 1000
        ((2.0, 0.5, 1.5), [0.081, 0.054, 0.027, 0.0315]),  # 1.5 mm^3 voxels
    ],
)
def test_volume_is_voxel_count_times_voxel_volume(spacing, expected_ml):
    echo1, echo2, masks, _ = _phantom()
    tissues = mri_clinical(echo1, echo2, masks, PARAMS, spacing)
    assert [t.n_voxels for t in tissues] == [54, 36, 18, 21]
    assert [t.volume_ml for t in tissues] == pytest.approx(expected_ml)


def test_mri_clinical_errors():
    echo1, echo2, masks, _ = _phantom()
    with pytest.raises(DataError, match=r"spacing_mm=\(0.3125, 0.3125\) must be \(slice, row, col\)"):
        mri_clinical(echo1, echo2, masks, PARAMS, (0.3125, 0.3125))
    with pytest.raises(DataError, match=r"spacing_mm=\(0.8, 0.0, 0.3\) must be"):
        mri_clinical(echo1, echo2, masks, PARAMS, (0.8, 0.0, 0.3))
    with pytest.raises(SpecError, match=r"t1_ms=-5.0 must be a T1 in ms > 0"):
        mri_clinical(echo1, echo2, masks, PARAMS, SPACING, t1_ms=-5.0)
    with pytest.raises(SpecError, match=r"meniscus_class='meniscus' is not among class_names"):
        mri_clinical(echo1, echo2, masks, PARAMS, SPACING, meniscus_t1_ms=1000.0, class_names="abcd")
    with pytest.raises(ValueError, match=r"must be \(S, H, W\), \(S, H, W\) and \(K, S, H, W\)"):
        mri_clinical(echo1, echo2, masks[:, :2], PARAMS, SPACING)
    with pytest.raises(ValueError, match=r"3 class names .* for 4 mask channels"):
        mri_clinical(echo1, echo2, masks, PARAMS, SPACING, class_names=MRI_NAMES[:3])


def _ct_case() -> tuple[np.ndarray, np.ndarray]:
    """(H=4, W=5) HU slice and (K=2, H, W) masks: 6 muscle pixels at 40/60 HU, 4 fat at -100/-80."""
    hu = np.full((4, 5), -1000.0)
    masks = np.zeros((2, 4, 5), dtype=bool)
    masks[0, 0:2, 0:3] = True
    hu[0, 0:3], hu[1, 0:3] = 40.0, 60.0
    masks[1, 2:4, 3:5] = True
    hu[2, 3:5], hu[3, 3:5] = -100.0, -80.0
    return hu, masks


@pytest.mark.parametrize(
    ("spacing", "pixel_cm2"),
    [((1.0, 1.0), 0.01), ((0.8, 0.8), 0.0064), ((0.7, 0.9), 0.0063), ((5.0, 0.8, 0.8), 0.0064)],
)
def test_ct_area_and_mean_hu_of_a_slice(spacing, pixel_cm2):
    hu, masks = _ct_case()
    muscle, fat = ct_clinical(hu, masks, spacing, class_names=["muscle", "subcutaneous_fat"])
    assert (muscle.n_pixels, fat.n_pixels) == (6, 4)
    assert muscle.area_cm2 == pytest.approx(6 * pixel_cm2)
    assert fat.area_cm2 == pytest.approx(4 * pixel_cm2)
    assert muscle.mean_hu == pytest.approx(50.0)
    assert fat.mean_hu == pytest.approx(-90.0)


def test_ct_area_of_a_stack_is_the_mean_cross_section():
    hu, masks = _ct_case()
    stack_hu = np.stack([hu, hu])  # (S=2, H, W)
    # (K, S, H, W): the second slice has no tissue
    stack_masks = np.stack([masks, np.zeros_like(masks)], axis=1)
    muscle, _ = ct_clinical(stack_hu, stack_masks, (1.0, 1.0), class_names=["m", "f"])
    assert muscle.area_cm2 == pytest.approx(0.03)  # (6 + 0) pixels / 2 slices * 0.01 cm^2
    assert muscle.mean_hu == pytest.approx(50.0)


def test_ct_mean_hu_of_an_empty_mask_is_nan():
    hu, masks = _ct_case()
    masks[1] = False
    _, fat = ct_clinical(hu, masks, (1.0, 1.0), class_names=["m", "f"])
    assert fat.area_cm2 == 0.0 and math.isnan(fat.mean_hu)


def test_ct_clinical_errors():
    hu, masks = _ct_case()
    with pytest.raises(ValueError, match=r"hu \(4, 5\) and masks \(2, 4, 4\) must be"):
        ct_clinical(hu, masks[:, :, :4], (1.0, 1.0))
    with pytest.raises(DataError, match=r"spacing_mm=\(1.0,\) must be \(row, col\) or \(slice, row, col\)"):
        ct_clinical(hu, masks, (1.0,), class_names=["m", "f"])


@pytest.mark.parametrize(
    ("pred", "truth", "absolute", "expected"),
    [
        (110.0, 100.0, False, 10.0),
        (90.0, 100.0, False, -10.0),
        (100.0, 100.0, False, 0.0),
        (3.0, 2.0, True, 50.0),  # positive truth: |truth| changes nothing
        (-90.0, -100.0, True, 10.0),  # fat HU: pred above truth -> positive with |truth|
        (-90.0, -100.0, False, -10.0),  # ... and a misleading negative without it
        (-110.0, -100.0, True, -10.0),
        (20.0, -10.0, True, 300.0),
        (5.0, 0.0, False, math.nan),  # tissue absent from the ground truth
        (5.0, 0.0, True, math.nan),
        (5.0, math.nan, False, math.nan),
        (math.nan, 5.0, False, math.nan),
    ],
)
def test_percent_error_hand_cases(pred, truth, absolute, expected):
    error = percent_error(pred, truth, absolute_denominator=absolute)
    assert isinstance(error, float)
    assert (math.isnan(error) and math.isnan(expected)) or error == pytest.approx(expected)


def test_percent_error_is_elementwise_on_arrays():
    error = percent_error(np.array([110.0, -90.0, 1.0]), np.array([100.0, -100.0, 0.0]), True)
    assert error[:2] == pytest.approx([10.0, 10.0]) and math.isnan(error[2])


def test_clinical_rows_pair_pred_and_truth_with_hu_sign_fixed():
    hu, masks = _ct_case()
    names = ["muscle", "subcutaneous_fat"]
    truth = ct_clinical(hu, masks, (1.0, 1.0), class_names=names)
    predicted_masks = masks.copy()
    predicted_masks[1, 3, 3:5] = False  # fat prediction misses the -80 HU row
    predicted = ct_clinical(hu, predicted_masks, (1.0, 1.0), class_names=names)
    rows = clinical_rows(predicted, truth)
    assert rows[0] == {
        "class": "muscle",
        "area_cm2_pred": pytest.approx(0.06),
        "area_cm2_true": pytest.approx(0.06),
        "area_cm2_pct_err": 0.0,
        "mean_hu_pred": 50.0,
        "mean_hu_true": 50.0,
        "mean_hu_pct_err": 0.0,
    }
    assert rows[1]["area_cm2_pct_err"] == pytest.approx(-50.0)
    assert rows[1]["mean_hu_pct_err"] == pytest.approx(-100 * 10 / 90)  # -100 vs -90 HU, |truth|


def test_case_rows_build_the_per_case_table():
    echo1, echo2, masks, _ = _phantom()
    predicted = masks.copy()
    predicted[0, 0] = False  # patellar cartilage loses its first slice: 36 of 54 voxels
    rows = case_rows(
        "scan_07",
        dice_rows(predicted, masks, MRI_NAMES),
        clinical_rows(
            mri_clinical(echo1, echo2, predicted, PARAMS, SPACING),
            mri_clinical(echo1, echo2, masks, PARAMS, SPACING),
        ),
    )
    table = pd.DataFrame(rows)
    assert list(table.columns) == [
        "case_id",
        "class",
        "dice",
        "t2_ms_pred",
        "t2_ms_true",
        "t2_ms_pct_err",
        "volume_ml_pred",
        "volume_ml_true",
        "volume_ml_pct_err",
    ]
    assert table["class"].tolist() == list(MRI_NAMES)
    assert (table["case_id"] == "scan_07").all()
    patellar = table.iloc[0]
    assert patellar["dice"] == pytest.approx(2 * 36 / (36 + 54))
    assert patellar["volume_ml_pct_err"] == pytest.approx(-100 / 3)
    assert table.iloc[1:][["dice"]].to_numpy() == pytest.approx(1.0)
    assert table.iloc[1:][["t2_ms_pct_err", "volume_ml_pct_err"]].to_numpy() == pytest.approx(0.0)


def test_case_rows_refuse_mismatched_classes_and_duplicate_columns():
    a = [{"class": "muscle", "dice": 0.9}]
    with pytest.raises(ValueError, match=r"rows for classes \['fat'\] do not match \['muscle'\]"):
        case_rows("c1", a, [{"class": "fat", "dice": 0.5}])
    with pytest.raises(ValueError, match="column 'dice' appears in two row lists for case c1"):
        case_rows("c1", a, a)


def test_clinical_rows_refuse_mismatched_classes():
    one = [CtTissue("muscle", 1.0, 40.0, 100)]
    other = [CtTissue("fat", 1.0, -90.0, 100)]
    with pytest.raises(ValueError, match=r"predicted classes \['muscle'\] differ from ground-truth classes \['fat'\]"):
        clinical_rows(one, other)
