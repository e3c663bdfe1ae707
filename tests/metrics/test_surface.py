"""Tests for study/metrics/_surface.py: NSD and HD95 against MONAI's implementation (an independent
computation: KD-tree over edge voxels, float32), anisotropic voxels, the empty-mask policy, and the
2-D / 3-D geometry of CT slices and MRI volumes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from study.errors import SpecError
from study.metrics import (
    DEFAULT_NSD_TOLERANCE_MM,
    boundary_per_class,
    boundary_rows,
    case_geometry,
    class_tolerances,
    nsd_hd95,
    surface_distances,
)

monai_metrics = pytest.importorskip("monai.metrics")


def _monai(pred: np.ndarray, true: np.ndarray, spacing, tolerance: float) -> tuple[float, float]:
    """MONAI's NSD (compute_surface_dice) and HD95 (compute_hausdorff_distance, percentile 95) of one
    class: masks (H, W) or (D, H, W), given as (1 batch, 1 class, ...)."""
    y_pred = torch.from_numpy(pred[None, None].astype(np.float32))
    y = torch.from_numpy(true[None, None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on an empty class; the values are what is compared
        nsd = monai_metrics.compute_surface_dice(y_pred, y, [tolerance], include_background=True, spacing=list(spacing))
        hd = monai_metrics.compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=list(spacing)
        )
    return float(nsd[0, 0]), float(hd[0, 0])


def _disc(shape, centre, radius, spacing=(1.0, 1.0)) -> np.ndarray:
    """A disc (an ellipse in index space when the spacing is anisotropic) of ``radius`` mm."""
    grid = np.indices(shape).astype(float)
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing)) <= radius**2


def _ball(shape, centre, radius, spacing) -> np.ndarray:
    return _disc(shape, centre, radius, spacing)


CASES_2D = {
    "disc vs shifted disc": (lambda: (_disc((40, 40), (20, 20), 9), _disc((40, 40), (22, 17), 9)), (1.0, 1.0)),
    "disc vs smaller disc": (lambda: (_disc((40, 40), (20, 20), 6), _disc((40, 40), (20, 20), 11)), (0.7, 0.7)),
    "anisotropic pixels": (
        lambda: (_disc((40, 40), (20, 20), 8, (0.5, 1.5)), _disc((40, 40), (23, 19), 8, (0.5, 1.5))),
        (0.5, 1.5),
    ),
    "thin shell": (
        lambda: (
            _disc((40, 40), (20, 20), 10) & ~_disc((40, 40), (20, 20), 8),
            _disc((40, 40), (20, 21), 11) & ~_disc((40, 40), (20, 21), 9),
        ),
        (0.8, 0.8),
    ),
    "touches the grid's edge": (lambda: (_disc((30, 30), (3, 15), 7), _disc((30, 30), (0, 14), 8)), (1.0, 1.0)),
}


@pytest.mark.parametrize("name", list(CASES_2D))
@pytest.mark.parametrize("tolerance", [0.0, 1.0, 2.5])
def test_2d_masks_equal_monai(name: str, tolerance: float) -> None:
    make, spacing = CASES_2D[name]
    pred, true = make()
    nsd, hd95 = nsd_hd95(pred, true, spacing, tolerance)
    want_nsd, want_hd95 = _monai(pred, true, spacing, tolerance)
    assert nsd == pytest.approx(want_nsd, abs=1e-6)
    assert hd95 == pytest.approx(want_hd95, abs=1e-6)
    assert 0 < hd95 < 20


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.7, 0.8), (0.8, 0.3125, 0.3125)])
def test_3d_volumes_with_anisotropic_voxels_equal_monai(spacing) -> None:
    shape = (12, 36, 36)
    pred = _ball(shape, (6, 18, 18), 7, (1.0, 0.6, 0.6))
    true = _ball(shape, (5, 19, 16), 7.5, (1.0, 0.6, 0.6))
    shell = true & ~_ball(shape, (5, 19, 16), 5, (1.0, 0.6, 0.6))  # a thin structure, as cartilage
    for a, b in ((pred, true), (shell, true), (pred, shell)):
        for tolerance in (0.5, 1.0, 2.0):
            nsd, hd95 = nsd_hd95(a, b, spacing, tolerance)
            want_nsd, want_hd95 = _monai(a, b, spacing, tolerance)
            assert nsd == pytest.approx(want_nsd, abs=1e-6)
            assert hd95 == pytest.approx(want_hd95, abs=1e-6)


def test_the_spacing_is_used_axis_by_axis() -> None:
    """Two 2-voxel-apart planes: the distance is 2 voxels times the spacing of the axis they differ on."""
    pred, true = np.zeros((6, 8, 8), bool), np.zeros((6, 8, 8), bool)
    pred[1], true[3] = True, True
    d_pred, d_true = surface_distances(pred, true, (3.0, 0.5, 0.5))
    assert np.allclose(d_pred, 6.0) and np.allclose(d_true, 6.0)
    moved = np.zeros((6, 8, 8), bool)
    moved[1, :, :] = True
    moved_true = np.zeros((6, 8, 8), bool)
    moved_true[1, :, 2:] = True  # the same plane, cut 2 columns short: only the column axis' spacing enters
    nsd, hd95 = nsd_hd95(moved, moved_true, (3.0, 0.5, 0.25), 0.5)
    assert hd95 == pytest.approx(_monai(moved, moved_true, (3.0, 0.5, 0.25), 0.5)[1], abs=1e-6)
    assert hd95 <= 0.5 and nsd == pytest.approx(1.0)


def test_empty_classes_follow_the_named_policy() -> None:
    empty, disc = np.zeros((20, 30), bool), _disc((20, 30), (10, 12), 5)
    assert all(math.isnan(v) for v in nsd_hd95(empty, empty, (1.0, 1.0), 1.0))  # absent from both: NaN, as Dice
    for pred, true in ((disc, empty), (empty, disc)):
        nsd, hd95 = nsd_hd95(pred, true, (0.5, 2.0), 1.0)
        assert nsd == 0.0 == _monai(pred, true, (0.5, 2.0), 1.0)[0]  # MONAI agrees on NSD
        assert hd95 == pytest.approx(math.hypot(20 * 0.5, 30 * 2.0))  # the field of view's diagonal (MONAI: inf)
    nsd, hd95 = boundary_per_class(
        np.stack([disc, empty, disc]), np.stack([disc, empty, empty]), (1.0, 1.0), [1.0, 1.0, 1.0]
    )
    assert nsd[0] == 1.0 and hd95[0] == 0.0 and math.isnan(nsd[1]) and math.isnan(hd95[1]) and nsd[2] == 0.0


def test_ct_slices_are_2d_and_mri_volumes_3d() -> None:
    """A CT case (one slice) is measured in-plane with (row, col) spacing; its slice thickness never
    enters. An MRI case (a volume) is 3-D with (slice, row, col)."""
    assert case_geometry((4, 1, 64, 64), (5.0, 0.7, 0.8)) == (True, (0.7, 0.8))
    assert case_geometry((4, 16, 64, 64), (0.8, 0.3, 0.3)) == (False, (0.8, 0.3, 0.3))
    disc, shifted = _disc((40, 40), (20, 20), 9), _disc((40, 40), (22, 17), 9)
    ct = boundary_rows(np.stack([disc])[:, None], np.stack([shifted])[:, None], ["muscle"], (5.0, 0.7, 0.8))
    want = _monai(disc, shifted, (0.7, 0.8), DEFAULT_NSD_TOLERANCE_MM["muscle"])
    assert ct[0]["nsd"] == pytest.approx(want[0], abs=1e-6) and ct[0]["hd95"] == pytest.approx(want[1], abs=1e-6)
    assert ct[0]["nsd_tol_mm"] == 2.0
    volume = np.stack([disc, disc, shifted])  # (S, H, W)
    truth = np.stack([shifted, shifted, shifted])
    mri = boundary_rows(volume[None], truth[None], ["femoral_cartilage"], (3.0, 0.3, 0.3))
    want = _monai(volume, truth, (3.0, 0.3, 0.3), 1.0)
    assert mri[0]["nsd"] == pytest.approx(want[0], abs=1e-6) and mri[0]["hd95"] == pytest.approx(want[1], abs=1e-6)


def test_tolerances_default_per_class_and_are_refused_when_not_distances() -> None:
    assert class_tolerances(["meniscus", "visceral_fat", "my_tissue"]) == [1.0, 2.0, 1.0]
    assert class_tolerances(["meniscus", "my_tissue"], {"meniscus": 0.5, "default": 3}) == [0.5, 3.0]
    for bad in (-1.0, float("nan"), "1 mm", True):
        with pytest.raises(SpecError, match="nsd_tolerance_mm.meniscus"):
            class_tolerances(["meniscus"], {"meniscus": bad})


def test_the_evaluation_writes_the_columns_with_the_spec_tolerances(tiny_mri) -> None:
    """evaluate_segmentation (a trial's test evaluation) adds nsd, hd95 and nsd_tol_mm after dice,
    with the spec's tolerances over the defaults; its validation use (boundary=False) adds nothing."""
    from study.data import open_dataset
    from study.design.spec import StudySpec
    from study.model import UNet, UNetConfig
    from study.train import TrainSettings, evaluate_segmentation

    dataset = open_dataset(tiny_mri)  # volumes of several slices
    model = UNet(UNetConfig(in_channels=1, out_channels=4, widths=(4, 8), groups=4), seed=0)
    spec = StudySpec(name="x", analysis={"nsd_tolerance_mm": {"meniscus": 0.4}})
    settings = TrainSettings(batch_size=4)
    table = evaluate_segmentation(
        model, dataset, dataset.split.test, settings, nsd_tolerance_mm=spec.analysis.nsd_tolerance_mm
    )
    assert list(table.columns[:8]) == ["dataset", "case_id", "subject_id", "class", "dice", "nsd", "hd95", "nsd_tol_mm"]
    assert table.groupby("class")["nsd_tol_mm"].first().to_dict() == {
        "femoral_cartilage": 1.0,
        "meniscus": 0.4,
        "patellar_cartilage": 1.0,
        "tibial_cartilage": 1.0,
    }
    case = dataset.split.test[0]
    assert dataset.scans[case].n_slices > 1
    from study.train import predict_scan

    pred, true = predict_scan(model, dataset, case, settings), np.moveaxis(dataset.read_masks(case), 1, 0)
    for k, row in enumerate(table[table["case_id"] == case].itertuples()):
        want = _monai(pred[k], true[k], dataset.scans[case].spacing_mm, row.nsd_tol_mm)  # 3-D, the volume's spacing
        # MONAI computes in float32: at ~100 mm its own rounding is a few 1e-6 mm, so relative here
        assert row.nsd == pytest.approx(want[0], abs=1e-6) and row.hd95 == pytest.approx(want[1], rel=1e-7, abs=1e-6)
    plain = evaluate_segmentation(model, dataset, dataset.split.test, settings, boundary=False)
    assert "nsd" not in plain and plain["dice"].equals(table["dice"])
