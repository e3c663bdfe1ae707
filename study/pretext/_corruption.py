"""What a corruption is: its settings, its patch size at small scale, and the pixels it moves.

Dominic et al. 2023, section 2.4. Both pretext tasks corrupt K x K patches covering a quarter of
the image, at the same locations on every channel, and the model learns to restore the original:

* context prediction: patch pixels are set to ``fill_value`` (0, the mean of a z-scored image);
* context restoration: pairs of non-overlapping patches are swapped, which keeps the pixel values
  of each image and channel (only their places change).

A corruption of an ``H x W`` image is stored as flat pixel indices (``row * W + col``): ``dst``, the
pixels that change, and for restoration ``src``, where each of them takes its value from, so that
``corrupted[dst] = image[src]``. This is what :class:`~study.pretext.MaskBank` keeps per mask.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from study.constants import PAPER_IMAGE_SIZE, SAMPLERS, TASKS
from study.errors import SpecError
from study.pretext._base import (
    DEFAULT_COVERAGE,
    PatchSampler,
    check_coverage,
    check_int,
    look_up,
)
from study.pretext._poisson_disc import PoissonDiscSampler
from study.pretext._random import RandomSampler


def scaled_patch_size(k_at_512: int, image_size: int) -> int:
    """The paper's patch size K (given for 512 x 512 images) at another image size.

    ``round(K * image_size / 512)``, halves rounded up, at least 1 pixel: a search space written in
    the paper's pixels (K in {64, 32, 16, 8}) then corrupts the same share of the anatomy on a
    64-128 px phantom (at 128 px: 16, 8, 4, 2). For a non-square image pass the side that plays
    the role of 512; ``round(sqrt(H * W))`` keeps the patch count ``H*W / (4 K^2)`` up to rounding.
    """
    k = check_int("scaled_patch_size", "k_at_512", k_at_512, 1)
    size = check_int("scaled_patch_size", "image_size", image_size, 1)
    return max(1, math.floor(k * size / PAPER_IMAGE_SIZE + 0.5))


@dataclass(frozen=True)
class CorruptionConfig:
    """How images are corrupted for inpainting pretraining (Dominic et al. 2023, section 2.4).

    Args:
        task: "prediction" (patches set to ``fill_value``) or "restoration" (pairs swapped).
        sampler: "random" (uniform, overlapping), "poisson_disc" (the authors' Bridson sampler,
            clustered) or "poisson_disc_spread" (same rule, spread over the image).
        patch_size: K in pixels of the images actually used (see :func:`scaled_patch_size`).
        fill_value: value of predicted patches; 0 is the mean of a z-scored image.
        coverage: share of the image area corrupted; the paper's 1/4.
        n_masks: masks precomputed per run; the paper's 100.
        rotate: draw a random rotation per image (x4 effective masks on square images).
    """

    task: str
    sampler: str
    patch_size: int
    fill_value: float = 0.0
    coverage: float = DEFAULT_COVERAGE
    n_masks: int = 100
    rotate: bool = True

    def __post_init__(self) -> None:
        owner = "CorruptionConfig"
        look_up(owner, "task", self.task, TASKS)
        look_up(owner, "sampler", self.sampler, SAMPLERS)
        object.__setattr__(self, "patch_size", check_int(owner, "patch_size", self.patch_size, 1))
        value = self.fill_value
        finite = isinstance(value, numbers.Real) and math.isfinite(value)
        if isinstance(value, bool) or not finite:
            raise SpecError(f"{owner}.fill_value must be a finite number, got {value!r}")
        object.__setattr__(self, "fill_value", float(value))
        object.__setattr__(self, "coverage", check_coverage(owner, self.coverage))
        object.__setattr__(self, "n_masks", check_int(owner, "n_masks", self.n_masks, 1, 100_000))
        if not isinstance(self.rotate, bool):
            raise SpecError(f"{owner}.rotate must be true or false, got {self.rotate!r}")

    @property
    def paired(self) -> bool:
        """Whether patches come in swap pairs (context restoration)."""
        return self.task == "restoration"

    def make_sampler(self) -> PatchSampler:
        """The sampler this configuration names; the one place names become classes."""
        if self.sampler == "random":
            return RandomSampler(self.patch_size, coverage=self.coverage)
        spread = self.sampler == "poisson_disc_spread"
        return PoissonDiscSampler(self.patch_size, spread=spread, coverage=self.coverage)


def patch_pixels(corners: np.ndarray, patch_size: int, width: int) -> np.ndarray:
    """Flat indices ``(..., N, K*K)`` of the pixels of patches with corners ``(..., N, 2)``."""
    offsets = np.arange(patch_size)
    rows = corners[..., 0, None] + offsets
    cols = corners[..., 1, None] + offsets
    return (rows[..., :, None] * width + cols[..., None, :]).reshape(*corners.shape[:-1], -1)


def moved_pixels(
    corners: np.ndarray,
    patch_size: int,
    shape: tuple[int, int],
    task: str,
    *,
    disjoint: bool = False,
) -> tuple[np.ndarray | None, np.ndarray]:
    """``(src, dst)`` flat indices of one corruption: ``corrupted[dst] = image[src]``.

    Args:
        corners: ``(N, 2)`` top-left corners; for restoration consecutive rows are swap pairs.
        patch_size: K.
        shape: ``(H, W)``.
        task: "prediction" (``src`` is None, ``dst`` the union of patches, sorted) or
            "restoration".
        disjoint: the caller guarantees no two patches overlap (Poisson-disc), which allows the
            direct construction; otherwise swaps are applied in order, as the paper does, so a
            pixel in several pairs ends where the last swap puts it.
    """
    height, width = shape
    pixels = patch_pixels(corners, patch_size, width)
    if task == "prediction":
        if disjoint:
            return None, pixels.ravel()
        covered = np.zeros(height * width, dtype=bool)
        covered[pixels.ravel()] = True
        return None, np.flatnonzero(covered)
    if disjoint:
        first, second = pixels[0::2].ravel(), pixels[1::2].ravel()
        return np.concatenate([second, first]), np.concatenate([first, second])
    source = np.arange(height * width).reshape(height, width)
    k = patch_size
    for (r0, c0), (r1, c1) in zip(corners[0::2].tolist(), corners[1::2].tolist()):
        a = source[r0 : r0 + k, c0 : c0 + k].copy()
        source[r0 : r0 + k, c0 : c0 + k] = source[r1 : r1 + k, c1 : c1 + k]
        source[r1 : r1 + k, c1 : c1 + k] = a
    dst = np.flatnonzero(source.ravel() != np.arange(height * width))
    return source.ravel()[dst], dst


def apply_patches(
    image: np.ndarray, corners: np.ndarray, patch_size: int, task: str, fill_value: float = 0.0
) -> np.ndarray:
    """Corrupt one image directly, patch by patch: the plain reference the fast paths are tested
    against.

    Args:
        image: ``(C, H, W)`` or ``(H, W)``; every channel gets the same patches.
        corners: ``(N, 2)`` top-left corners (row, col); for restoration consecutive rows are pairs.
        patch_size: K.
        task: "prediction" sets patches to ``fill_value``; "restoration" swaps each pair in order.

    Returns:
        a corrupted copy, same shape and dtype.
    """
    look_up("apply_patches", "task", task, TASKS)
    out = np.array(image, copy=True)
    k = patch_size
    if task == "prediction":
        for r, c in corners.tolist():
            out[..., r : r + k, c : c + k] = fill_value
        return out
    for (r0, c0), (r1, c1) in zip(corners[0::2].tolist(), corners[1::2].tolist()):
        a = out[..., r0 : r0 + k, c0 : c0 + k].copy()
        out[..., r0 : r0 + k, c0 : c0 + k] = out[..., r1 : r1 + k, c1 : c1 + k]
        out[..., r1 : r1 + k, c1 : c1 + k] = a
    return out
