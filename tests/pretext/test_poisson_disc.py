from __future__ import annotations

import numpy as np
import pytest

from study.errors import SpecError
from study.pretext import PoissonDiscSampler


def min_squared_distance(points: np.ndarray) -> int:
    diff = points[:, None, :] - points[None, :, :]
    d2 = (diff**2).sum(axis=-1)
    np.fill_diagonal(d2, np.iinfo(d2.dtype).max)
    return int(d2.min())


def radius_of_gyration(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))


@pytest.mark.parametrize(
    ("k", "n"),
    [(8, 1024), (16, 256), (32, 64), (64, 16)],  # N = 512 * 512 / (4 K^2)
)
@pytest.mark.parametrize("spread", [False, True])
def test_poisson_disc_places_exactly_n_disjoint_patches_inside(k: int, n: int, spread: bool) -> None:
    corners = PoissonDiscSampler(k, spread=spread).sample(512, 512, np.random.default_rng(k), paired=True)
    assert corners.shape == (n, 2) and corners.dtype == np.int64
    assert (corners >= 0).all() and (corners <= 512 - k).all()
    assert min_squared_distance(corners) >= 2 * k * k  # centres at least K * sqrt(2) apart
    covered = np.zeros((512, 512), dtype=np.int64)
    for r, c in corners:
        covered[r : r + k, c : c + k] += 1
    assert covered.max() == 1  # no overlap
    assert covered.sum() == 512 * 512 // 4


@pytest.mark.parametrize("k", [8, 16, 32])
def test_reference_sampler_clusters_around_its_seed(k: int) -> None:
    # At 5 % coverage the reference blob is small; the spread variant fills the image.
    rng = np.random.default_rng(0)
    reference = PoissonDiscSampler(k, coverage=0.05).sample_many(3, 512, 512, rng)
    spread = PoissonDiscSampler(k, coverage=0.05, spread=True).sample_many(3, 512, 512, rng)
    assert len(reference[0]) == len(spread[0]) == int(0.05 * 512 * 512 / k**2)
    gyration_reference = np.mean([radius_of_gyration(c) for c in reference])
    gyration_spread = np.mean([radius_of_gyration(c) for c in spread])
    assert gyration_reference < 0.7 * gyration_spread
    extent = lambda cs: np.mean([np.prod(c.max(0) - c.min(0)) for c in cs])  # noqa: E731
    assert extent(reference) < 0.5 * extent(spread)


@pytest.mark.parametrize("k", [8, 16])
def test_reference_sampler_is_tighter_than_the_spread_one_at_quarter_coverage(k: int) -> None:
    # N is near what the image holds, so the blob fills most of it, yet less evenly.
    rng = np.random.default_rng(1)
    reference = PoissonDiscSampler(k).sample_many(4, 512, 512, rng)
    spread = PoissonDiscSampler(k, spread=True).sample_many(4, 512, 512, rng)
    assert max(radius_of_gyration(c) for c in reference) < min(radius_of_gyration(c) for c in spread)


@pytest.mark.parametrize("k", [8, 16, 32, 64])
def test_spread_sampler_covers_the_whole_image(k: int) -> None:
    corners = PoissonDiscSampler(k, spread=True).sample(512, 512, np.random.default_rng(2))
    span = 512 - k
    assert (corners.max(axis=0) - corners.min(axis=0) >= 0.75 * span).all()
    quadrant = (corners[:, 0] > span / 2) * 2 + (corners[:, 1] > span / 2)
    assert set(quadrant.tolist()) == {0, 1, 2, 3}


def test_paired_order_is_shuffled_not_growth_order() -> None:
    rng = np.random.default_rng(3)
    grown = PoissonDiscSampler(16).sample(512, 512, rng)
    paired = PoissonDiscSampler(16).sample(512, 512, np.random.default_rng(3), paired=True)
    assert sorted(map(tuple, grown.tolist())) == sorted(map(tuple, paired.tolist()))
    # consecutive points in growth order are neighbours; swap partners should not all be
    partner_distance = np.sqrt(((paired[0::2] - paired[1::2]) ** 2).sum(axis=1))
    assert np.median(partner_distance) > 4 * 16 * np.sqrt(2)


def test_poisson_disc_on_an_odd_sized_image() -> None:
    k = 7
    corners = PoissonDiscSampler(k).sample(97, 130, np.random.default_rng(0), paired=True)
    assert len(corners) == 64  # floor(97 * 130 / (4 * 49)) = 64, already even
    assert (corners[:, 0] <= 97 - k).all() and (corners[:, 1] <= 130 - k).all() and (corners >= 0).all()
    assert min_squared_distance(corners) >= 2 * k * k


def test_poisson_disc_is_deterministic_given_the_generator() -> None:
    a = PoissonDiscSampler(8).sample_many(3, 128, 128, np.random.default_rng(5))
    b = PoissonDiscSampler(8).sample_many(3, 128, 128, np.random.default_rng(5))
    c = PoissonDiscSampler(8).sample_many(3, 128, 128, np.random.default_rng(6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_saturated_image_raises_after_the_bounded_attempts() -> None:
    # Half the image in disjoint patches 64 px wide with centres 90 px apart cannot fit.
    sampler = PoissonDiscSampler(64, coverage=0.5, max_attempts=3)
    with pytest.raises(SpecError, match=r"could place only \d+ of the 32 patches of 64 x 64.*in 3 attempts"):
        sampler.sample(512, 512, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": 0}, r"PoissonDiscSampler\.patch_size must be an integer in \[1, inf\), got 0"),
        ({"patch_size": 8, "candidates": 0}, r"candidates must be an integer in \[1, 1000\], got 0"),
        ({"patch_size": 8, "spread": "yes"}, r"spread must be true or false, got 'yes'"),
        ({"patch_size": 8, "coverage": 0.0}, r"coverage must be a number in \(0, 0\.5\], got 0\.0"),
    ],
)
def test_poisson_disc_refuses_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        PoissonDiscSampler(**kwargs)


def test_poisson_disc_refuses_a_patch_larger_than_the_image() -> None:
    message = r"patch_size 100 does not fit a 97 x 130 image: must be in \[1, 97\]"
    with pytest.raises(SpecError, match=message):
        PoissonDiscSampler(100).sample(97, 130, np.random.default_rng(0))
