"""Poisson-disc patch positions (Bridson 2007), the paper's "Poisson-disc" sampler.

Dominic et al. 2023, section 2.4 and design choice #5: the centres of all K x K patches lie at
least ``r = K * sqrt(2)`` apart, so no two patches overlap (two K x K squares overlap only when both
offsets are below K, that is at a centre distance below ``K * sqrt(2)``). The count is fixed at
``N = floor(H * W / (4 * K^2))`` so that exactly ``N * K^2 <= H * W / 4`` pixels are corrupted.
Positions are the integer top-left corners ``[0, H - K] x [0, W - K]``; the distance between corners
equals the distance between centres.

Reference behaviour (the authors' code): the set grows from ONE random seed point, 10 candidates
per active point in the annulus ``[r, 2r]``, and stops as soon as N points exist, so the patches
form a blob around the seed rather than an even cover of the image. At quarter coverage N is close
to what the image holds (at 512 x 512, K = 8: 1024 of about 1160), so the blob fills most of the
image; at lower coverage the clustering is plain. ``spread=True`` instead grows the set until the
image is saturated and keeps N of its points drawn uniformly at random: the same count and minimum
distance, spread over the whole image.

Saturation: when no active point is left before N points exist, the image held fewer patches on
that draw. The draw is discarded and the set regrown from a new random seed, up to
``max_attempts`` growths in all, after which ``SpecError`` says how many patches fitted and what to
change. At 512 x 512 with K = 64 (N = 16, about 16 fit) roughly a third of the growths saturate
early, so regrowth is routine there and 50 attempts make a failure practically impossible; an
impossible request (coverage too high for the rule) fails after the attempts are spent. Retrying
conditions the draw on success, which is what "exactly N patches" asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from study.errors import SpecError
from study.pretext._base import (
    DEFAULT_COVERAGE,
    PatchSampler,
    check_coverage,
    check_fits,
    check_int,
    patch_count,
)
from study.pretext._bridson import grow_poisson_disc


@dataclass(frozen=True)
class PoissonDiscSampler(PatchSampler):
    """Non-overlapping patches with centres at least ``K * sqrt(2)`` apart (Bridson 2007).

    Args:
        patch_size: K, the side of a square patch in pixels (>= 1).
        spread: False (the reference) grows from one seed and stops at N, so the patches cluster;
            True spreads the N patches uniformly over the image.
        coverage: share of the image the N disjoint patches cover, ``N = floor(c * H * W / K^2)``;
            the paper's 1/4.
        candidates: candidates tried per active point (Bridson's k; the paper's 10).
        max_attempts: growths from a new seed before a saturated image raises ``SpecError``.

    ``sample`` returns exactly N corners ``(N, 2)`` (row, col); with ``paired=True`` N is rounded
    down to even and the order shuffled so that swap partners (consecutive rows) are random patches
    rather than neighbours in growth order. The growth itself is vectorised, see ``_bridson.py``.
    """

    disjoint: ClassVar[bool] = True

    patch_size: int
    spread: bool = False
    coverage: float = DEFAULT_COVERAGE
    candidates: int = 10
    max_attempts: int = 50

    def __post_init__(self) -> None:
        owner = "PoissonDiscSampler"
        object.__setattr__(self, "patch_size", check_int(owner, "patch_size", self.patch_size, 1))
        object.__setattr__(self, "coverage", check_coverage(owner, self.coverage))
        candidates = check_int(owner, "candidates", self.candidates, 1, 1000)
        object.__setattr__(self, "candidates", candidates)
        attempts = check_int(owner, "max_attempts", self.max_attempts, 1)
        object.__setattr__(self, "max_attempts", attempts)
        if not isinstance(self.spread, bool):
            raise SpecError(f"{owner}.spread must be true or false, got {self.spread!r}")

    def sample(self, height: int, width: int, rng: np.random.Generator, *, paired: bool = False) -> np.ndarray:
        return self.sample_many(1, height, width, rng, paired=paired)[0]

    def sample_many(
        self, n: int, height: int, width: int, rng: np.random.Generator, *, paired: bool = False
    ) -> list[np.ndarray]:
        """``n`` independent draws, grown side by side (much faster than one at a time)."""
        k = self.patch_size
        check_fits(k, height, width, paired=paired)
        need = patch_count(height, width, k, self.coverage, paired)
        domain = (height - k + 1, width - k + 1)
        limit = None if self.spread else need
        done: list[np.ndarray | None] = [None] * n
        todo = list(range(n))
        best = 0
        for _ in range(self.max_attempts):
            grown = grow_poisson_disc(len(todo), domain, k, limit, self.candidates, rng)
            for i, points in zip(todo, grown):
                if len(points) >= need:
                    done[i] = points
                best = max(best, min(len(points), need))
            todo = [i for i in todo if done[i] is None]
            if not todo:
                break
        else:
            raise SpecError(
                f"PoissonDiscSampler could place only {best} of the {need} patches of {k} x {k} "
                f"(centres >= {k * math.sqrt(2):.1f} px apart) in a {height} x {width} image in "
                f"{self.max_attempts} attempts: lower patch_size or coverage, or use the random "
                "sampler"
            )
        drawn = [p for p in done if p is not None]  # every slot is filled once the loop breaks
        if self.spread:
            return [p[rng.choice(len(p), size=need, replace=False)] for p in drawn]
        if paired:  # random partners: one random order per draw, drawn for all draws at once
            order = rng.random((n, need)).argsort(axis=1)
            return [p[o] for p, o in zip(drawn, order)]
        return drawn
