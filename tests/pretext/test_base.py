from __future__ import annotations

import numpy as np
import pytest

from study.errors import SpecError
from study.pretext._base import as_generator, check_fits, check_int, look_up, patch_count


@pytest.mark.parametrize(
    ("height", "width", "k", "paired", "expected"),
    [
        (512, 512, 8, False, 1024),  # 512*512 / (4*64)
        (512, 512, 16, True, 256),
        (512, 512, 32, True, 64),
        (512, 512, 64, True, 16),
        (97, 130, 8, False, 49),  # 12610 / 256 = 49.3
        (97, 130, 8, True, 48),  # odd count rounded down to even for pairs
        (128, 128, 2, True, 1024),
        (64, 64, 16, False, 4),
    ],
)
def test_patch_count_is_floor_of_quarter_area(height: int, width: int, k: int, paired: bool, expected: int) -> None:
    assert patch_count(height, width, k, 0.25, paired) == expected


def test_patch_count_refuses_an_image_too_small_for_one_pair() -> None:
    # 40 x 40 at K = 16: floor(1600 / 1024) = 1 patch, no pair
    with pytest.raises(SpecError, match=r"holds 0 patches of 16 x 16.*at most 14"):
        patch_count(40, 40, 16, 0.25, paired=True)


def test_check_fits_names_the_allowed_range() -> None:
    message = r"patch_size 600 does not fit a 512 x 512 image: must be in \[1, 512\]"
    with pytest.raises(SpecError, match=message):
        check_fits(600, 512, 512)
    with pytest.raises(SpecError, match=r"two disjoint patches.*must be in \[1, 65\]"):
        check_fits(80, 97, 130, paired=True)
    check_fits(65, 97, 130, paired=True)  # 130 >= 2 * 65: two patches side by side fit


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "8", None])
def test_check_int_refuses_with_field_value_and_range(value: object) -> None:
    with pytest.raises(SpecError, match=r"Owner\.patch_size must be an integer in \[1, inf\), got"):
        check_int("Owner", "patch_size", value, 1)


def test_check_int_accepts_numpy_integers() -> None:
    assert check_int("Owner", "patch_size", np.int64(8), 1) == 8


def test_look_up_suggests_the_closest_name_and_lists_choices() -> None:
    choices = ("random", "poisson_disc", "poisson_disc_spread")
    with pytest.raises(SpecError, match=r"did you mean 'poisson_disc'\? Choices: 'random', 'poisson_disc'"):
        look_up("CorruptionConfig", "sampler", "poison_disc", choices)
    with pytest.raises(SpecError, match=r"unknown value 'zzz'\. Choices: 'random'"):
        look_up("CorruptionConfig", "sampler", "zzz", choices)
    assert look_up("CorruptionConfig", "sampler", "random", choices) == "random"


def test_as_generator_passes_generators_through_and_refuses_bad_seeds() -> None:
    rng = np.random.default_rng(3)
    assert as_generator(rng) is rng
    assert as_generator(5).integers(1000) == np.random.default_rng(5).integers(1000)
    with pytest.raises(SpecError, match="seed must be a non-negative integer"):
        as_generator(-1)
