"""Tests of the procedural knee-MRI and L3-CT phantoms (study/data/phantoms)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from study.data.phantoms import (
    CT_CLASSES,
    MRI_CLASSES,
    CtPhantom,
    MriPhantom,
    make_ct_phantom,
    make_mri_phantom,
)
from study.data.qdess import estimate_t2
from study.errors import SpecError


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def mri_clean() -> list[MriPhantom]:
    return [make_mri_phantom(_rng(seed), noise=0.0) for seed in range(3)]


@pytest.fixture(scope="module")
def ct_clean() -> list[CtPhantom]:
    return [make_ct_phantom(_rng(seed), noise=0.0) for seed in range(5)]


# ---------------------------------------------------------------- MRI


def test_class_names_match_the_label_values() -> None:
    assert MRI_CLASSES == ("patellar_cartilage", "femoral_cartilage", "tibial_cartilage", "meniscus")
    assert CT_CLASSES == ("muscle", "intramuscular_fat", "visceral_fat", "subcutaneous_fat")


def test_mri_same_seed_gives_identical_arrays() -> None:
    a, b = make_mri_phantom(_rng(7), n_slices=8), make_mri_phantom(_rng(7), n_slices=8)
    for name in ("echo1", "echo2", "t2_ms", "t1_ms", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.params == b.params and a.spacing_mm == b.spacing_mm


def test_mri_different_seeds_give_different_subjects() -> None:
    a, b = make_mri_phantom(_rng(7), n_slices=8), make_mri_phantom(_rng(8), n_slices=8)
    assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.echo1, b.echo1)
    assert a.params != b.params


@pytest.mark.parametrize(
    "size, n_slices",
    [
        (64, 16),  # the default
        (128, 4),  # finer grid, few slices
        (32, 1),  # smallest matrix, a single slice
    ],
)
def test_mri_shapes_dtypes_and_spacing(size: int, n_slices: int) -> None:
    p = make_mri_phantom(_rng(1), size=size, n_slices=n_slices)
    for name in ("echo1", "echo2", "t2_ms", "t1_ms"):
        arr = getattr(p, name)
        assert arr.shape == (n_slices, size, size) and arr.dtype == np.float32, name
        assert np.isfinite(arr).all(), name
    assert p.labels.shape == (n_slices, size, size) and p.labels.dtype == np.uint8
    assert set(np.unique(p.labels)) <= {0, 1, 2, 3, 4}
    assert p.spacing_mm == pytest.approx((96.0 / n_slices, 120.0 / size, 120.0 / size))
    assert (p.t1_ms > 0).all() and (p.t2_ms >= 0).all() and (p.echo1 >= 0).all()


def test_mri_every_class_present_and_thin(mri_clean: list[MriPhantom]) -> None:
    for p in mri_clean:
        frac = np.array([(p.labels == c).mean() for c in range(1, 5)])
        assert (frac > 0).all(), frac
        # Cartilage and meniscus are thin: a few per cent of the volume together, and the
        # femoral plate is the largest.
        assert frac.sum() < 0.06 and frac[1] == frac[:3].max(), frac
        cart = np.isin(p.labels, (1, 2, 3))
        cross = ndimage.generate_binary_structure(3, 1)
        cross[0] = cross[2] = False  # in-plane erosion only
        assert ndimage.binary_erosion(cart, cross).sum() < 0.25 * cart.sum()


def test_mri_meniscus_only_in_some_slices(mri_clean: list[MriPhantom]) -> None:
    for p in mri_clean:
        per_slice = (p.labels == 4).any(axis=(1, 2))
        assert 2 <= per_slice.sum() < len(per_slice)


def test_mri_t2_recovered_from_noise_free_echoes(mri_clean: list[MriPhantom]) -> None:
    for p in mri_clean:
        est = estimate_t2(p.echo1, p.echo2, p.params, t1_ms=p.t1_ms)
        tissue = p.labels > 0
        assert np.isfinite(est[tissue]).all()
        np.testing.assert_allclose(est[tissue], p.t2_ms[tissue], rtol=0.01)


def test_mri_relaxation_times_are_realistic(mri_clean: list[MriPhantom]) -> None:
    for p in mri_clean:
        cart = p.t2_ms[np.isin(p.labels, (1, 2, 3))]
        assert 28.0 < cart.mean() < 50.0 and cart.std() > 1.0  # spatially varying
        assert 8.0 < p.t2_ms[p.labels == 4].mean() < 30.0
        assert p.t2_ms.max() > 150.0  # joint fluid: long T2, beyond estimate_t2's 100 ms


def test_mri_scan_parameters_are_realistic() -> None:
    for seed in range(5):
        q = make_mri_phantom(_rng(seed), size=32, n_slices=1).params
        assert 17.5 < q.repetition_time < 19.0 and 5.5 < q.echo_time < 6.1 and q.flip_angle == 20.0
        assert 2950 < q.spoiler_area < 3300 and 1450 < q.spoiler_time < 1650


def test_mri_noise_changes_only_the_echoes(mri_clean: list[MriPhantom]) -> None:
    clean, noisy = mri_clean[0], make_mri_phantom(_rng(0))
    np.testing.assert_array_equal(noisy.labels, clean.labels)  # anatomy is drawn before noise
    np.testing.assert_array_equal(noisy.t2_ms, clean.t2_ms)
    assert clean.params == noisy.params
    air = clean.echo1 == 0
    assert air.any() and (noisy.echo1[air] > 0).all()  # Rician noise floor in the background
    tissue = clean.labels > 0
    rel = np.abs(noisy.echo1[tissue] - clean.echo1[tissue]) / clean.echo1[tissue]
    assert 0.02 < np.median(rel) < 0.5


def test_mri_cartilage_contrast_is_modest(mri_clean: list[MriPhantom]) -> None:
    p = mri_clean[0]
    rss = np.hypot(p.echo1, p.echo2)
    cart = np.isin(p.labels, (1, 2, 3))
    ring = ndimage.binary_dilation(cart, iterations=2) & ~cart & (p.labels == 0)
    ratio = np.median(rss[cart]) / np.median(rss[ring])
    assert 1.0 < ratio < 4.0


# ---------------------------------------------------------------- CT


def test_ct_same_seed_gives_identical_arrays() -> None:
    a, b = make_ct_phantom(_rng(3)), make_ct_phantom(_rng(3))
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.spacing_mm == b.spacing_mm


def test_ct_different_seeds_give_different_subjects() -> None:
    a, b = make_ct_phantom(_rng(3)), make_ct_phantom(_rng(4))
    assert not np.array_equal(a.labels, b.labels) and a.spacing_mm != b.spacing_mm


@pytest.mark.parametrize("size", [64, 128, 256])  # 256: the finest checked here (about a second)
def test_ct_shapes_dtypes_and_spacing(size: int) -> None:
    p = make_ct_phantom(_rng(2), size=size)
    assert p.hu.shape == (size, size) and p.hu.dtype == np.float32 and np.isfinite(p.hu).all()
    assert p.labels.shape == (size, size) and p.labels.dtype == np.uint8
    assert set(np.unique(p.labels)) == {0, 1, 2, 3, 4}
    row, col = p.spacing_mm
    assert row == col and 0.7 <= row * size / 512 <= 0.9


def test_ct_every_class_present_with_plausible_areas(ct_clean: list[CtPhantom]) -> None:
    for p in ct_clean:
        frac = np.array([(p.labels == c).mean() for c in range(1, 5)])
        assert (frac > 0).all(), frac
        assert frac[1] < frac[0] and frac[1] < 0.05  # intramuscular fat: specks within muscle
        assert 0.15 < frac.sum() < 0.6  # the body fills part of the field of view


def test_ct_subcutaneous_fat_is_the_outer_ring(ct_clean: list[CtPhantom]) -> None:
    for p in ct_clean:
        lab = p.labels
        rows = np.flatnonzero((lab > 0).any(axis=1))
        first = lab[rows, np.argmax(lab[rows] > 0, axis=1)]  # first labelled pixel from the left
        assert (first == 4).mean() > 0.9
        yy, xx = np.nonzero(lab > 0)
        sy, sx = np.nonzero(lab == 4)
        sector = np.floor((np.arctan2(sy - yy.mean(), sx - xx.mean()) + np.pi) / (np.pi / 4))
        assert len(np.unique(sector)) == 8  # all around the body


def test_ct_hounsfield_ranges_per_class(ct_clean: list[CtPhantom]) -> None:
    for p in ct_clean:
        med = {c: float(np.median(p.hu[p.labels == c])) for c in range(1, 5)}
        assert 0.0 < med[1] < 70.0, med  # muscle
        assert med[2] < 0.0 and med[3] < -50.0 and med[4] < -50.0, med  # fats
        assert p.hu.min() >= -1000.0 and p.hu[0, 0] == -1000.0  # air around the patient
        assert p.hu.max() > 300.0  # vertebral cortex or contrast


def test_ct_noise_changes_only_the_hu(ct_clean: list[CtPhantom]) -> None:
    clean, noisy = ct_clean[0], make_ct_phantom(_rng(0))
    np.testing.assert_array_equal(noisy.labels, clean.labels)
    sd = float(np.std(noisy.hu - clean.hu))
    assert 8.0 < sd < 25.0
    double = make_ct_phantom(_rng(0), noise=2.0)
    assert float(np.std(double.hu - clean.hu)) == pytest.approx(2 * sd, rel=1e-6)


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 31}, r"size=31 must be an integer between 32 and 512"),
        ({"size": 513}, r"size=513 must be an integer between 32 and 512"),
        ({"size": 64.0}, r"size=64.0 must be an integer"),
        ({"noise": -0.5}, r"noise=-0.5 must be a number between 0 and 10"),
        ({"noise": float("nan")}, r"noise=nan must be a number between 0 and 10"),
    ],
)
@pytest.mark.parametrize("make", [make_mri_phantom, make_ct_phantom])
def test_bad_arguments_raise_spec_error(make, kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make(_rng(0), **kwargs)


@pytest.mark.parametrize("n_slices", [0, -3, 513])
def test_mri_bad_slice_count_raises(n_slices: int) -> None:
    with pytest.raises(SpecError, match=rf"n_slices={n_slices} must be an integer between 1 and 512"):
        make_mri_phantom(_rng(0), n_slices=n_slices)


@pytest.mark.parametrize("make", [make_mri_phantom, make_ct_phantom])
def test_a_seed_instead_of_a_generator_is_refused(make) -> None:
    with pytest.raises(SpecError, match=r"rng=int must be a numpy.random.Generator"):
        make(0)


# ---------------------------------------------------------------- cache


def test_cache_key_follows_settings_and_generator_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from study.data import _builtin

    settings = _builtin.PhantomSettings.default("ct")
    key = settings.key()
    assert key == _builtin.PhantomSettings.default("ct").key()
    assert key != _builtin.PhantomSettings.default("ct", n_train=99).key()
    # A changed generator must not reuse data sets the old one cached.
    monkeypatch.setattr(_builtin, "GENERATOR_VERSION", _builtin.GENERATOR_VERSION + 1)
    assert settings.key() != key


@pytest.mark.parametrize("kind, n_slices", [("mri", 3), ("ct", 1)])
def test_split_and_rounding_are_known_before_the_phantom_is_written(tmp_path, kind: str, n_slices: int) -> None:
    from study.data import (
        PhantomSettings,
        default_rounding,
        make_phantom_dataset,
        open_dataset,
        phantom_rounding,
        phantom_split,
    )

    settings = PhantomSettings(kind=kind, size=32, n_train=3, n_val=1, n_test=2, n_unlabeled=2, n_slices=n_slices)
    dataset = open_dataset(make_phantom_dataset(settings, tmp_path / kind))
    assert phantom_split(settings) == dataset.split
    assert phantom_rounding(settings) == default_rounding(dataset)
