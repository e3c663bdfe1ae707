"""What every patch sampler shares: the corner layout, the patch count, the checks on user values.

A sampler places square patches of ``patch_size`` x ``patch_size`` pixels wholly inside an image of
``height`` x ``width`` pixels and returns their top-left corners as an integer array of shape
``(N, 2)``, columns ``(row, col)``, so patch ``i`` covers
``image[..., row_i : row_i + K, col_i : col_i + K]``. With ``paired=True`` the corners come in
consecutive pairs ``(0, 1), (2, 3), ...`` whose two patches are disjoint, ready for the swaps of
context restoration (Dominic et al. 2023, section 2.4).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from study._suggest import unknown_choice
from study.errors import SpecError

SeedLike = int | np.random.Generator

# The paper corrupts one quarter of the image area (section 2.4). A Bridson set with centres
# K*sqrt(2) apart saturates near 0.28 of the area, so the Poisson-disc samplers refuse (after their
# attempts) much more than a quarter; the random sampler reaches any share up to this bound.
DEFAULT_COVERAGE = 0.25
MAX_COVERAGE = 0.5


def as_generator(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, or the generator itself (shared, not copied)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise SpecError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def check_int(owner: str, field: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (``high=None``: unbounded), else ``SpecError``.

    The message names the owner, the field, the value and the allowed range, so a user who wrote the
    value in a YAML file knows what to change. ``bool`` is refused although it is an ``int``.
    """
    allowed = f"[{low}, {high}]" if high is not None else f"[{low}, inf)"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SpecError(f"{owner}.{field} must be an integer in {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise SpecError(f"{owner}.{field} must be an integer in {allowed}, got {value!r}")
    return int(value)


def check_coverage(owner: str, value: object) -> float:
    """The corrupted share of the image area, a number in ``(0, MAX_COVERAGE]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise SpecError(f"{owner}.coverage must be a number in (0, {MAX_COVERAGE}], got {value!r}")
    if not 0.0 < float(value) <= MAX_COVERAGE:
        raise SpecError(f"{owner}.coverage must be a number in (0, {MAX_COVERAGE}], got {value!r}")
    return float(value)


def check_fits(patch_size: int, height: int, width: int, *, paired: bool = False) -> None:
    """Refuse an image that cannot hold the patch (or, for swaps, two disjoint patches)."""
    if height < 1 or width < 1:
        raise SpecError(f"image size must be positive, got {height} x {width}")
    if patch_size > min(height, width):
        raise SpecError(
            f"patch_size {patch_size} does not fit a {height} x {width} image: must be in [1, {min(height, width)}]"
        )
    if paired and max(height, width) < 2 * patch_size:
        raise SpecError(
            f"patch_size {patch_size} leaves no room for two disjoint patches to swap in a "
            f"{height} x {width} image: must be in [1, {max(height, width) // 2}]"
        )


def patch_count(height: int, width: int, patch_size: int, coverage: float, paired: bool) -> int:
    """Number of disjoint patches covering ``coverage`` of the image: ``floor(c*H*W / K^2)``.

    At the paper's quarter this is ``floor(H*W / (4*K^2))``; swaps need pairs, so an odd count is
    rounded down to even (rounding up could ask for more than the image holds).
    """
    n = math.floor(coverage * height * width / patch_size**2)
    if paired:
        n -= n % 2
    if n < (2 if paired else 1):
        raise SpecError(
            f"a {height} x {width} image holds {n} patches of {patch_size} x {patch_size} at "
            f"coverage {coverage}: use a patch_size of at most "
            f"{math.isqrt(int(coverage * height * width) // (2 if paired else 1))}"
        )
    return n


def look_up(owner: str, field: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ``SpecError`` naming the closest one and all."""
    if isinstance(value, str) and value in choices:
        return value
    raise SpecError(unknown_choice(f"{owner}.{field}", value, choices))


class PatchSampler(ABC):
    """Places ``patch_size`` x ``patch_size`` patches inside an image (see the module docstring)."""

    patch_size: int
    # True when no two patches of one draw ever overlap, which allows faster mask construction.
    disjoint: ClassVar[bool] = False

    @abstractmethod
    def sample(self, height: int, width: int, rng: np.random.Generator, *, paired: bool = False) -> np.ndarray:
        """Top-left corners ``(N, 2)`` int64 ``(row, col)``; swap pairs consecutive if paired."""

    def sample_many(
        self, n: int, height: int, width: int, rng: np.random.Generator, *, paired: bool = False
    ) -> list[np.ndarray]:
        """``n`` independent draws of :meth:`sample` (a sampler may draw them side by side)."""
        return [self.sample(height, width, rng, paired=paired) for _ in range(n)]
