"""Paired one-sided tests, multiplicity corrections and effect sizes, vectorised over strategies.

Every function takes a matrix ``D`` of paired differences (strategy - baseline), one row per
strategy and one column per pair (``(S, n)``), so 500 strategies cost a few array operations rather
than 500 Python loops. The test is always ``scipy.stats.wilcoxon(x, y, alternative="greater")`` with
the default ``zero_method="wilcox"`` (zero differences dropped) and ``method="auto"``: forcing
``method="exact"`` with ties or zeros gives a silently wrong p-value.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from scipy import stats

ZERO_METHOD = "wilcox"
# scipy's method="auto" switches to the normal approximation above this many pairs (scipy >= 1.13).
EXACT_MAX_N = 50
PERMUTATION_MAX_N = 13


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN stays NaN and does not count as a test."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    scaled = (m - np.arange(m)) * p[ok][order]
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    idx = np.flatnonzero(ok)[order]
    out[idx] = adjusted
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate); NaN stays NaN."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    scaled = m * p[ok][order] / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    idx = np.flatnonzero(ok)[order]
    out[idx] = adjusted
    return out


def tie_and_zero_counts(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the number of zero differences, and whether two non-zero |differences| are equal."""
    zeros = (D == 0).sum(axis=1)
    a = np.sort(np.where(D == 0, np.nan, np.abs(D)), axis=1)  # NaN sorts last
    ties = ((a[:, 1:] == a[:, :-1]) & ~np.isnan(a[:, 1:])).any(axis=1)
    return zeros, ties


def scipy_method(n: int, n_zero: int, ties: bool) -> str:
    """The method ``scipy.stats.wilcoxon(method="auto")`` runs for these pairs (scipy >= 1.13).

    "exact" only without ties and zeros; with them, an exhaustive permutation test up to 13 pairs,
    else the normal approximation ("asymptotic"; scipy's default ``correction=False``: no continuity
    correction).
    """
    if n > EXACT_MAX_N:
        return "asymptotic"
    if not ties and n_zero == 0:
        return "exact"
    return "permutation" if n <= PERMUTATION_MAX_N else "asymptotic"


def _permutation_greater(d: np.ndarray) -> tuple[float, float]:
    """(R+, p) of scipy's exhaustive permutation test (its "auto" choice for <= 13 pairs with ties
    or zeros), enumerated directly: scipy's generic ``permutation_test`` takes about a second per
    call. Zeros keep their sign under every flip, so only the non-zero differences are enumerated;
    the tolerance is scipy's (100 eps relative)."""
    nz = d[d != 0]
    r = stats.rankdata(np.abs(nz))
    observed = float(r[nz > 0].sum())
    bits = (np.arange(2**nz.size)[:, None] >> np.arange(nz.size)) & 1
    null = bits @ r
    gamma = abs(np.finfo(float).eps * 100 * observed)
    return observed, np.count_nonzero(null >= observed - gamma) / 2**nz.size


def wilcoxon_greater(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided signed-rank test of ``x > y`` per row of ``(S, n)`` arrays: (statistic R+, p).

    Rows above 50 pairs go to scipy in one call (its "auto" is the normal approximation for all of
    them); smaller rows one at a time, because scipy picks exact or permutation per call from the
    ties and zeros of the whole array it is given.
    """
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-n and zero warnings: the method is reported instead
        if x.shape[1] > EXACT_MAX_N:
            res = stats.wilcoxon(x, y, zero_method=ZERO_METHOD, alternative="greater", axis=1)
            return np.asarray(res.statistic, dtype=float), np.asarray(res.pvalue, dtype=float)
        n_zero, ties = tie_and_zero_counts(x - y)
        statistic, p = np.full(len(x), np.nan), np.full(len(x), np.nan)
        exact = (n_zero == 0) & ~ties & (x.shape[1] > 0)
        if exact.any():
            statistic[exact], p[exact] = _exact_greater(x[exact] - y[exact])
        for i in np.flatnonzero(~exact):
            if scipy_method(x.shape[1], int(n_zero[i]), bool(ties[i])) == "permutation":
                statistic[i], p[i] = _permutation_greater(x[i] - y[i])
            else:
                res = stats.wilcoxon(x[i], y[i], zero_method=ZERO_METHOD, alternative="greater")
                statistic[i], p[i] = res.statistic, res.pvalue
    return statistic, p


def _exact_greater(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R+, p) of scipy's exact one-sided test for rows without ties or zeros, all rows at once from
    the null distribution of R+: the pairwise comparisons of many strategies and the simulations
    that check the verdict's error rates would otherwise call scipy once per row."""
    n = D.shape[1]
    ranks = np.argsort(np.argsort(np.abs(D), axis=1), axis=1) + 1  # no ties: ordinal ranks are the ranks
    r_plus = np.where(D > 0, ranks, 0).sum(axis=1)
    cdf = _signed_rank_cdf(n)
    below = np.where(r_plus >= 1, cdf[np.maximum(r_plus - 1, 0)], 0.0)
    return r_plus.astype(float), np.clip(1.0 - below, 0.0, 1.0)


def rank_biserial(D: np.ndarray) -> np.ndarray:
    """Matched-pairs rank-biserial correlation (R+ - R-) / (R+ + R-) per row, zeros dropped as in
    the test (Kerby 2014); NaN when every difference is zero."""
    a = np.where(D == 0, np.nan, np.abs(D))
    r = stats.rankdata(a, axis=1, nan_policy="omit")
    m = (~np.isnan(a)).sum(axis=1)
    r_plus = np.nansum(np.where(D > 0, r, 0.0), axis=1)
    total = m * (m + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m > 0, 2.0 * r_plus / total - 1.0, np.nan)


@functools.lru_cache(maxsize=64)
def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(R+ <= t), t = 0..n(n+1)/2, under the null without ties (exact counts, n <= 50)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for i in range(1, n + 1):
        counts[i:] = counts[i:] + counts[:-i].copy()
    return np.cumsum(counts) / 2.0**n


def walsh_ci_rank(n: int, confidence: float) -> int:
    """k such that the k-th smallest and k-th largest Walsh averages bound the distribution-free
    confidence interval of the Hodges-Lehmann shift (Hollander & Wolfe, 3.6); 0 when n is too
    small for any interval at this level."""
    half = (1 - confidence) / 2
    if n <= EXACT_MAX_N:
        return int(np.searchsorted(_signed_rank_cdf(n), half, side="right"))
    big_n = n * (n + 1) / 2
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return max(0, int(math.floor(big_n / 2 - stats.norm.ppf(1 - half) * sd)))


def _walsh_window(d: np.ndarray, ts: list[int], lo: float, hi: float) -> list[float] | None:
    """The ``ts``-th smallest Walsh averages of sorted ``d`` if they lie in [lo, hi], else None.

    Index bounds come from searchsorted with a margin far above rounding error; the candidates in
    between are compared exactly, so the answer never depends on how the bracket was guessed.
    """
    n = d.size
    i = np.arange(n)
    tol = 1e-9 * (1.0 + float(np.abs(d).max()))
    left = np.maximum(np.searchsorted(d, 2 * lo - d - tol, side="left"), i)
    right = np.maximum(np.searchsorted(d, 2 * hi - d + tol, side="right"), left)
    below = int((left - i).sum())  # certainly < lo
    lengths = right - left
    total = int(lengths.sum())
    starts = np.repeat(left - np.cumsum(lengths) + lengths, lengths)
    rows = np.repeat(i, lengths)
    w = (d[rows] + d[starts + np.arange(total)]) / 2
    r = [t - below for t in ts]
    if not (np.count_nonzero(w < lo) < min(r) and max(r) <= np.count_nonzero(w <= hi)):
        return None
    w.partition([x - 1 for x in r])
    return [float(w[x - 1]) for x in r]


def walsh_order_stats(Ds: np.ndarray, ranks: list[int], sample: int = 6000) -> np.ndarray:
    """The ``ranks``-th (1-based) smallest Walsh averages (d_i + d_j) / 2, i <= j, of each row of
    the row-sorted matrix ``Ds`` (``(S, n)``) -> ``(S, len(ranks))``.

    Exact, in O(n log n) per row instead of materialising n(n+1)/2 averages: a shared random sample
    of averages brackets each rank, and only the averages inside the bracket are selected from.
    """
    S, n = Ds.shape
    big_n = n * (n + 1) // 2
    out = np.empty((S, len(ranks)))
    if big_n <= 8 * sample:
        iu, ju = np.triu_indices(n)
        w = (Ds[:, iu] + Ds[:, ju]) / 2
        w.partition(sorted({r - 1 for r in ranks}), axis=1)
        return w[:, [r - 1 for r in ranks]]
    rng = np.random.default_rng(n)  # only guides the bracket; the result is exact whatever it draws
    a, b = rng.integers(0, n, sample), rng.integers(0, n, sample)
    ws = (Ds[:, np.minimum(a, b)] + Ds[:, np.maximum(a, b)]) / 2
    windows: dict[tuple[int, int], list[int]] = {}  # ranks sharing a bracket share one selection
    for t in ranks:
        q = (t - 0.5) / big_n
        margin = 4 * math.sqrt(q * (1 - q) / sample) + 2 / sample
        windows.setdefault((math.floor((q - margin) * sample), math.ceil((q + margin) * sample)), []).append(t)
    kth = sorted({p for pair in windows for p in pair if 0 <= p < sample})
    ws.partition(kth, axis=1)
    col = {t: j for j, t in enumerate(ranks)}
    for s in range(S):
        d = Ds[s]
        for (p_lo, p_hi), ts in windows.items():
            lo = ws[s, p_lo] if p_lo >= 0 else d[0]
            hi = ws[s, p_hi] if p_hi < sample else d[-1]
            values = _walsh_window(d, ts, lo, hi)
            if values is None:  # the sample missed: fall back to the whole set of averages
                values = _walsh_window(d, ts, d[0], d[-1])
            for t, v in zip(ts, values):
                out[s, col[t]] = v
    return out


def hodges_lehmann(D: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hodges-Lehmann shift (median of the Walsh averages) per row, with its distribution-free
    confidence interval from the Walsh averages' order statistics; NaN bounds when n is too small."""
    Ds = np.sort(D, axis=1)
    n = Ds.shape[1]
    big_n = n * (n + 1) // 2
    mid = [(big_n + 1) // 2, big_n // 2 + 1]
    k = walsh_ci_rank(n, confidence)
    ranks = mid + ([k, big_n + 1 - k] if k >= 1 else [])
    w = walsh_order_stats(Ds, ranks)
    hl = (w[:, 0] + w[:, 1]) / 2
    if k < 1:
        nan = np.full(len(Ds), np.nan)
        return hl, nan, nan.copy()
    return hl, w[:, 2], w[:, 3]


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resampling counts, each row summing to n (a bootstrap sample)."""
    idx = rng.integers(0, n, (n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n)


def bootstrap_median(D: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bootstrap medians ``(S, B)`` of each row of ``D``.

    A statistic of the multiset alone is unchanged by relabelling the pairs, so one count matrix
    applied to every row's *sorted* values gives each row a valid bootstrap; the resample's
    median positions then depend on the counts alone and are found once for all rows.
    """
    Ds = np.sort(D, axis=1)
    n = Ds.shape[1]
    cum = np.cumsum(counts, axis=1)
    p1 = (cum > (n - 1) // 2).argmax(axis=1)
    p2 = (cum > n // 2).argmax(axis=1)
    return (Ds[:, p1] + Ds[:, p2]) / 2


def bootstrap_rank_biserial(D: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bootstrap matched-pairs rank-biserial correlations ``(S, B)``, as :func:`rank_biserial`.

    Each row is ordered by |difference| (zeros first) and the count matrix applies to that order
    (a statistic of the multiset is unchanged by relabelling the pairs). Values with equal |difference| form one
    tie group; in a resample the group's members share the group's midrank, exactly as
    ``rankdata`` gives it, so R+ - R- is the sum over groups of midrank x (drawn positives - drawn
    negatives).
    """
    S, n = D.shape
    c = counts.astype(float)
    out = np.empty((S, c.shape[0]))
    for s in range(S):
        order = np.argsort(np.abs(D[s]), kind="stable")
        a, sign = np.abs(D[s])[order], np.sign(D[s][order])
        starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])  # first position of each tie group
        cs = c  # count j applies to the j-th smallest |difference|, as in bootstrap_median
        group_count = np.add.reduceat(cs, starts, axis=1)
        group_signed = np.add.reduceat(cs * sign, starts, axis=1)
        zero = a[starts] == 0
        drawn_zero = group_count[:, zero].sum(axis=1)
        group_count[:, zero] = 0.0
        end = np.cumsum(group_count, axis=1)
        midrank = end - (group_count - 1) / 2  # ranks among the non-zero values drawn
        diff = (midrank * group_signed).sum(axis=1)
        m = n - drawn_zero
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s] = np.where(m > 0, diff / (m * (m + 1) / 2), np.nan)
    return out


def percentile_ci(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval per row of ``(S, B)``; NaN resamples are left out."""
    half = (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row of only NaN gives NaN bounds
        lo, hi = np.nanquantile(boot, [half, 1 - half], axis=1)
    return lo, hi


def smallest_p(n_nonzero: np.ndarray) -> np.ndarray:
    """The smallest one-sided p the signed-rank test can give with ``n_nonzero`` pairs: every
    difference positive. Exact (and permutation): 1 / 2^n; above 50 pairs scipy's normal
    approximation at R+ = n(n+1)/2."""
    n = np.asarray(n_nonzero, dtype=float)
    z = np.sqrt(3 * n * (n + 1) / (2 * (2 * n + 1)).clip(min=1))
    return np.where(n > EXACT_MAX_N, stats.norm.sf(z), 0.5**n)


def _adjusted(p: np.ndarray, correction: str) -> np.ndarray:
    return holm(p) if correction == "holm" else benjamini_hochberg(p)


def underpowered(p: np.ndarray, n_nonzero: np.ndarray, alpha: float, correction: str = "holm") -> np.ndarray:
    """True where a strategy could not beat the baseline at the corrected level even if every one of
    its differences were positive, the other strategies' p-values as they are: its p replaced by the
    smallest the test can give with its pairs, then adjusted with the rest. Holm and BH adjusted p
    only fall when one p falls, so an underpowered strategy never beats the baseline. With 16
    strategies and all p alike that is n <= 8 pairs (16 / 2^8 > 0.05); alone, n <= 4."""
    p = np.asarray(p, dtype=float)
    best = smallest_p(n_nonzero)
    out = np.zeros(p.shape, dtype=bool)
    for i in range(p.size):
        if np.isnan(p[i]):
            continue
        q = p.copy()
        q[i] = min(p[i], best[i])
        out[i] = _adjusted(q, correction)[i] > alpha
    return out


def cases_needed(D: np.ndarray, alpha: float, power: float = 0.8) -> np.ndarray:
    """Pairs per row of ``D`` at which the one-sided signed-rank test reaches ``alpha`` with
    ``power`` at the observed standardised mean difference dz, NaN where the effect is not positive.

    Noether's (1987) sample size for the signed-rank test, n = (z_a + z_b)^2 / (3 (p' - 1/2)^2) with
    p' = P(d_i + d_j > 0) = Phi(sqrt(2) dz) for normal differences, and never fewer than the pairs
    the test needs to reach ``alpha`` at all (1 / 2^n <= alpha). It is at least the paired t test's
    exact n over the signed-rank test's efficiency 3/pi (dz 1.0: 11.6 against 8.4 / 0.955); the
    normal approximation of the t test's n alone (7 pairs) promises power the test does not give.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        dz = np.nanmean(D, axis=1) / np.nanstd(D, axis=1, ddof=1)
        z = stats.norm.isf(alpha) + stats.norm.ppf(power)
        n = z**2 / (3 * (stats.norm.cdf(math.sqrt(2) * dz) - 0.5) ** 2)
    floor = math.ceil(math.log2(1 / alpha))
    return np.where(dz > 0, np.ceil(np.maximum(n, floor)), np.nan)


def signed_rank_z(D: np.ndarray) -> np.ndarray:
    """Standardised signed-rank statistic (R+ - n(n+1)/4) / sd over the last axis, zeros and NaN
    dropped, midranks for ties, no tie correction of the variance: a p-value's order without a
    p-value, for ranking strategies in many bootstrap resamples at once."""
    a = np.where((D == 0) | np.isnan(D), np.nan, np.abs(D))
    r = stats.rankdata(a, axis=-1, nan_policy="omit")
    n = (~np.isnan(a)).sum(axis=-1)
    r_plus = np.nansum(np.where(D > 0, r, 0.0), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (r_plus - n * (n + 1) / 4) / np.sqrt(n * (n + 1) * (2 * n + 1) / 24)
