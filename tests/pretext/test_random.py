from __future__ import annotations

import numpy as np
import pytest

from study.errors import SpecError
from study.pretext import RandomSampler


def union_area(corners: np.ndarray, k: int, shape: tuple[int, int]) -> int:
    covered = np.zeros(shape, dtype=bool)
    for r, c in corners:
        covered[r : r + k, c : c + k] = True
    return int(covered.sum())


def assert_inside(corners: np.ndarray, k: int, shape: tuple[int, int]) -> None:
    assert corners.dtype == np.int64 and corners.ndim == 2 and corners.shape[1] == 2
    assert (corners >= 0).all()
    assert (corners[:, 0] <= shape[0] - k).all() and (corners[:, 1] <= shape[1] - k).all()


@pytest.mark.parametrize("k", [8, 16, 32, 64])
@pytest.mark.parametrize("paired", [False, True])
def test_random_patches_cover_a_quarter_and_no_more_patches_than_needed(k: int, paired: bool) -> None:
    shape = (512, 512)
    corners = RandomSampler(k).sample(*shape, np.random.default_rng(k), paired=paired)
    assert_inside(corners, k, shape)
    assert union_area(corners, k, shape) >= 512 * 512 / 4
    step = 2 if paired else 1  # pairs are added whole
    assert union_area(corners[:-step], k, shape) < 512 * 512 / 4


@pytest.mark.parametrize("k", [8, 64])
def test_random_swap_partners_never_overlap(k: int) -> None:
    corners = RandomSampler(k).sample(512, 512, np.random.default_rng(1), paired=True)
    assert len(corners) % 2 == 0
    offsets = np.abs(corners[0::2] - corners[1::2])
    assert (offsets.max(axis=1) >= k).all()  # two K x K squares are disjoint iff an offset >= K


def test_random_patches_on_an_odd_sized_image() -> None:
    shape = (97, 130)  # odd height, and a patch size that divides neither side
    corners = RandomSampler(7).sample(*shape, np.random.default_rng(0), paired=True)
    assert_inside(corners, 7, shape)
    assert union_area(corners, 7, shape) >= 97 * 130 / 4


def test_random_positions_reach_every_corner_of_the_image() -> None:
    # uniform over [0, H-K] x [0, W-K]: the extreme positions do occur
    corners = np.concatenate(RandomSampler(4).sample_many(50, 20, 24, np.random.default_rng(0)))
    assert corners[:, 0].min() == 0 and corners[:, 0].max() == 16
    assert corners[:, 1].min() == 0 and corners[:, 1].max() == 20


def test_random_sampler_is_deterministic_given_the_generator() -> None:
    a = RandomSampler(16).sample(512, 512, np.random.default_rng(7))
    b = RandomSampler(16).sample(512, 512, np.random.default_rng(7))
    c = RandomSampler(16).sample(512, 512, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("bad", [0, -8, 1.5])
def test_random_sampler_refuses_a_bad_patch_size(bad: object) -> None:
    with pytest.raises(SpecError, match=r"RandomSampler\.patch_size must be an integer in \[1, inf\)"):
        RandomSampler(bad)  # type: ignore[arg-type]


def test_random_sampler_refuses_a_patch_larger_than_the_image() -> None:
    with pytest.raises(SpecError, match=r"patch_size 600 does not fit a 512 x 512 image"):
        RandomSampler(600).sample(512, 512, np.random.default_rng(0))


def test_random_sampler_refuses_a_coverage_outside_its_range() -> None:
    with pytest.raises(SpecError, match=r"RandomSampler\.coverage must be a number in \(0, 0\.5\], got 0\.8"):
        RandomSampler(8, coverage=0.8)
