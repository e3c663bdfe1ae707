from __future__ import annotations

import numpy as np
import pytest

from study.errors import SpecError
from study.pretext import (
    CorruptionConfig,
    PatchSampler,
    PoissonDiscSampler,
    RandomSampler,
    apply_patches,
    moved_pixels,
    scaled_patch_size,
)


@pytest.mark.parametrize(
    ("k_at_512", "image_size", "expected"),
    [
        (64, 512, 64),  # the paper's own scale
        (64, 128, 16),
        (32, 128, 8),
        (16, 128, 4),
        (8, 128, 2),
        (8, 64, 1),
        (8, 96, 2),  # 1.5 rounds half up
        (8, 160, 3),  # 2.5 rounds half up, not to even
        (1, 64, 1),  # 0.125 floored at one pixel
        (32, 97, 6),  # 6.06
    ],
)
def test_scaled_patch_size_keeps_the_paper_proportion(k_at_512: int, image_size: int, expected: int) -> None:
    assert scaled_patch_size(k_at_512, image_size) == expected


def test_scaled_patch_size_refuses_nonpositive_values() -> None:
    message = r"scaled_patch_size\.k_at_512 must be an integer in \[1, inf\), got 0"
    with pytest.raises(SpecError, match=message):
        scaled_patch_size(0, 128)
    with pytest.raises(SpecError, match=r"image_size must be an integer in \[1, inf\), got -5"):
        scaled_patch_size(8, -5)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_config_refuses_a_bad_patch_size_naming_field_value_and_range(bad: object) -> None:
    message = r"CorruptionConfig\.patch_size must be an integer in \[1, inf\), got"
    with pytest.raises(SpecError, match=message):
        CorruptionConfig("restoration", "poisson_disc", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task", "sampler", "message"),
    [
        (
            "restortion",
            "random",
            r"task: unknown value 'restortion'; did you mean 'restoration'\? "
            r"Choices: 'prediction', 'restoration'",
        ),
        ("prediction", "poison_disc", r"sampler: unknown value 'poison_disc'; did you mean 'poisson_disc'\?"),
        ("prediction", "poisson_spread", r"did you mean 'poisson_disc_spread'\?"),
        (
            "prediction",
            "grid",
            r"sampler: unknown value 'grid'\. Choices: 'random', 'poisson_disc', 'poisson_disc_spread'",
        ),
    ],
)
def test_config_suggests_the_closest_task_or_sampler(task: str, sampler: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        CorruptionConfig(task, sampler, 8)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fill_value", float("nan"), r"fill_value must be a finite number, got nan"),
        ("coverage", 0.75, r"coverage must be a number in \(0, 0\.5\], got 0\.75"),
        ("n_masks", 0, r"n_masks must be an integer in \[1, 100000\], got 0"),
        ("rotate", "no", r"rotate must be true or false, got 'no'"),
    ],
)
def test_config_refuses_other_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        CorruptionConfig("prediction", "random", 8, **{field: value})


def test_config_names_the_sampler_class_it_builds() -> None:
    assert CorruptionConfig("prediction", "random", 4).make_sampler() == RandomSampler(4)
    assert CorruptionConfig("restoration", "poisson_disc", 4).make_sampler() == PoissonDiscSampler(4)
    spread = CorruptionConfig("restoration", "poisson_disc_spread", 4, coverage=0.1).make_sampler()
    assert spread == PoissonDiscSampler(4, spread=True, coverage=0.1)
    assert CorruptionConfig("restoration", "random", 4).paired
    assert not CorruptionConfig("prediction", "random", 4).paired


def test_apply_patches_prediction_fills_exactly_the_patches_on_every_channel() -> None:
    image = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12) + 1
    corners = np.array([[0, 0], [6, 9], [5, 8]])  # last two overlap
    out = apply_patches(image, corners, 3, "prediction", fill_value=-2.0)
    covered = np.zeros((10, 12), dtype=bool)
    covered[0:3, 0:3] = covered[6:9, 9:12] = covered[5:8, 8:11] = True
    assert (out[:, covered] == -2.0).all()
    np.testing.assert_array_equal(out[:, ~covered], image[:, ~covered])


def test_apply_patches_restoration_swaps_pairs_and_keeps_the_values() -> None:
    image = np.random.default_rng(0).normal(size=(3, 16, 16))
    corners = np.array([[0, 0], [8, 8], [2, 1], [9, 12]])  # pair 2 overlaps pair 1
    out = apply_patches(image, corners, 4, "restoration")
    for c in range(3):
        np.testing.assert_array_equal(np.sort(out[c].ravel()), np.sort(image[c].ravel()))
    # the first swap happened before the second one read its patches
    step = image.copy()
    step[:, 0:4, 0:4], step[:, 8:12, 8:12] = image[:, 8:12, 8:12], image[:, 0:4, 0:4]
    np.testing.assert_array_equal(out[:, 2:6, 1:5], step[:, 9:13, 12:16])


@pytest.mark.parametrize("task", ["prediction", "restoration"])
@pytest.mark.parametrize("sampler", [RandomSampler(5), PoissonDiscSampler(5)])
def test_moved_pixels_reproduce_the_patch_by_patch_reference(task: str, sampler: PatchSampler) -> None:
    shape = (37, 50)
    image = np.random.default_rng(1).normal(size=shape)
    corners = sampler.sample(*shape, np.random.default_rng(2), paired=task == "restoration")
    src, dst = moved_pixels(corners, 5, shape, task, disjoint=sampler.disjoint)
    out = image.ravel().copy()
    out[dst] = 0.0 if src is None else image.ravel()[src]
    np.testing.assert_array_equal(out.reshape(shape), apply_patches(image, corners, 5, task))
    assert len(np.unique(dst)) == len(dst)
