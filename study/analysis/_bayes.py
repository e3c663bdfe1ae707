"""The Bayesian signed-rank test (Benavoli et al., ICML 2014): how probable it is that a strategy
is worse than, practically equivalent to, or better than the baseline, with a region of practical
equivalence of +-rope Dice; the same posterior as baycomp's ``SignedRankTest``."""

from __future__ import annotations

import numpy as np


def _boundaries(z: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Per i, how many of the sorted ``z`` give z_i + z_j < t, and <= t. Counted on the sums
    themselves, not as z_j against t - z_i: the two roundings differ on a boundary, and a Walsh pair
    that lands exactly on +-rope counts half to each side."""
    lo, hi = np.empty(z.size, dtype=int), np.empty(z.size, dtype=int)
    step = max(1, 4_000_000 // z.size)
    for start in range(0, z.size, step):
        sums = z[start : start + step, None] + z[None, :]
        lo[start : start + step] = (sums < t).sum(axis=1)
        hi[start : start + step] = (sums <= t).sum(axis=1)
    return lo, hi


def bayesian_signed_rank(
    D: np.ndarray, rope: float, rng: np.random.Generator, n_samples: int = 20_000, prior: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(worse), P(equivalent), P(better) per row of ``D`` (strategy - baseline) by the Bayesian
    signed-rank test (Benavoli et al., ICML 2014), as baycomp's ``SignedRankTest`` computes them.

    The differences' distribution has a Dirichlet-process posterior with a pseudo-observation at
    0 of weight ``prior``; each posterior sample weighs the Walsh pairs (d_i + d_j) / 2 and splits
    their mass into below -rope, within +-rope and above +rope (a pair on a boundary counts half to
    each side). A probability is the share of samples in which its region holds the most mass.
    The sum over i, j of w_i w_j [d_i + d_j > 2 rope] is taken per i from a cumulative sum over the
    sorted values, O(n) per sample rather than O(n^2), so long difference vectors cost little.
    """
    D = np.atleast_2d(np.asarray(D, dtype=float))
    S, n = D.shape
    wins = np.zeros((S, 3))
    chunk = max(1, 2_000_000 // (n + 1))
    for s in range(S):
        z = np.sort(np.r_[0.0, D[s]])
        order = np.argsort(np.r_[0.0, D[s]], kind="stable")
        alpha = np.r_[prior, np.ones(n)][order]
        above_lo, above_hi = _boundaries(z, 2 * rope)
        below_lo, below_hi = _boundaries(z, -2 * rope)
        for start in range(0, n_samples, chunk):
            w = rng.dirichlet(alpha, min(chunk, n_samples - start))
            cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(w, axis=1)], axis=1)
            above = (1.0 - cum[:, above_hi]) + 0.5 * (cum[:, above_hi] - cum[:, above_lo])
            below = cum[:, below_lo] + 0.5 * (cum[:, below_hi] - cum[:, below_lo])
            theta_above, theta_below = (w * above).sum(axis=1), (w * below).sum(axis=1)
            theta = np.stack([theta_below, 1.0 - theta_above - theta_below, theta_above], axis=1)
            wins[s] += np.bincount(theta.argmax(axis=1), minlength=3)
    share = wins / n_samples
    return share[:, 0], share[:, 1], share[:, 2]
