"""Fully random patch positions until a quarter of the image is corrupted (the paper's "random").

Dominic et al. 2023, section 2.4: patches of K x K lie wholly inside the image at uniform positions
and are added one at a time until the corrupted area (the union of the patches, which may overlap)
equals or exceeds 1/4 of the image area. For context restoration they come in pairs of two
non-overlapping patches, and pairs are added until the same condition holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from study.pretext._base import (
    DEFAULT_COVERAGE,
    PatchSampler,
    check_coverage,
    check_fits,
    check_int,
)


@dataclass(frozen=True)
class RandomSampler(PatchSampler):
    """Uniform patch positions until their union covers ``coverage`` of the image.

    Args:
        patch_size: K, the side of a square patch in pixels (>= 1).
        coverage: share of the image area the union of patches must reach; the paper's 1/4.

    ``sample`` returns corners ``(N, 2)`` (row, col), N the smallest count (even when ``paired``)
    whose union reaches ``ceil(coverage * H * W)`` pixels. Patches may overlap each other, except
    the two patches of a pair, which are always disjoint.
    """

    patch_size: int
    coverage: float = DEFAULT_COVERAGE

    def __post_init__(self) -> None:
        patch_size = check_int("RandomSampler", "patch_size", self.patch_size, 1)
        object.__setattr__(self, "patch_size", patch_size)
        object.__setattr__(self, "coverage", check_coverage("RandomSampler", self.coverage))

    def sample(self, height: int, width: int, rng: np.random.Generator, *, paired: bool = False) -> np.ndarray:
        k = self.patch_size
        check_fits(k, height, width, paired=paired)
        target = math.ceil(self.coverage * height * width)
        # The union of n uniform patches covers about 1 - exp(-n K^2 / HW) of the image; drawing a
        # little more than that in one go makes a second draw rare (the border is covered less).
        expected = -math.log1p(-self.coverage) * height * width / k**2
        batch = int(1.3 * expected) + 8
        corners = np.empty((0, 2), dtype=np.int64)
        while True:
            corners = np.concatenate([corners, _draw(batch, height, width, k, rng, paired)])
            n = _count_reaching(corners, target, height, width, k, paired)
            if n is not None:
                return corners[:n]
            batch = len(corners)


def _draw(n: int, height: int, width: int, k: int, rng: np.random.Generator, paired: bool) -> np.ndarray:
    """``n`` uniform corners; if paired, ``n`` rounded up to even, as interleaved disjoint pairs."""
    high = np.array([height - k + 1, width - k + 1])
    if not paired:
        return rng.integers(0, high, size=(n, 2))
    half = (n + 1) // 2
    first = rng.integers(0, high, size=(half, 2))
    second = rng.integers(0, high, size=(half, 2))
    # Rejection keeps the partner uniform over the positions disjoint from its first patch;
    # check_fits guarantees such positions exist.
    clash = np.all(np.abs(first - second) < k, axis=1)
    while clash.any():
        second[clash] = rng.integers(0, high, size=(int(clash.sum()), 2))
        clash = np.all(np.abs(first - second) < k, axis=1)
    out = np.empty((2 * half, 2), dtype=np.int64)
    out[0::2], out[1::2] = first, second
    return out


def _count_reaching(corners: np.ndarray, target: int, height: int, width: int, k: int, paired: bool) -> int | None:
    """Smallest prefix of ``corners`` whose union has ``target`` pixels (None if none does).

    Each pixel records the first patch that covers it; the union of the first n patches is then
    the number of pixels whose first patch is below n, one cumulative sum for all n at once.
    """
    n = len(corners)
    offsets = np.arange(k)
    rows = corners[:, 0, None] + offsets
    cols = corners[:, 1, None] + offsets
    pixels = (rows[:, :, None] * width + cols[:, None, :]).ravel()
    first = np.full(height * width, n, dtype=np.int64)
    np.minimum.at(first, pixels, np.repeat(np.arange(n), k * k))
    union = np.cumsum(np.bincount(first, minlength=n + 1)[:n])
    i = int(np.searchsorted(union, target))
    if i == n:
        return None
    count = i + 1
    if paired:
        count += count % 2
    return count if count <= n else None
