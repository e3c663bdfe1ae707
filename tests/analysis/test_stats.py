from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from scipy import stats

from study.analysis import (
    benjamini_hochberg,
    bootstrap_counts,
    bootstrap_median,
    bootstrap_rank_biserial,
    hodges_lehmann,
    holm,
    percentile_ci,
    rank_biserial,
    scipy_method,
    smallest_p,
    underpowered,
    walsh_order_stats,
    wilcoxon_greater,
)
from study.analysis._stats import _signed_rank_cdf, tie_and_zero_counts, walsh_ci_rank

NAN = float("nan")


@pytest.mark.parametrize(
    ("p", "want_holm", "want_bh"),
    [
        # 4 tests; sorted p 0.005, 0.01, 0.03, 0.04 -> Holm 4p, 3p, 2p, 1p with running max;
        # BH 4p/1, 4p/2, 4p/3, 4p/4 with running min from the top
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02], [0.02, 0.04, 0.04, 0.02]),
        # capped at 1; BH keeps 2 * 0.6 / 2 for both
        ([0.5, 0.6], [1.0, 1.0], [0.6, 0.6]),
        # NaN is no test: m = 2
        ([0.01, NAN, 0.02], [0.02, NAN, 0.02], [0.02, NAN, 0.02]),
        # one test: unchanged
        ([0.3], [0.3], [0.3]),
        # equal p: Holm 3p, 3p -> running max; BH 3p/3 = p for all
        ([0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [0.01, 0.01, 0.01]),
    ],
)
def test_holm_and_bh_match_hand_computed_values(p: list[float], want_holm: list[float], want_bh: list[float]) -> None:
    np.testing.assert_allclose(holm(np.array(p)), want_holm, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(benjamini_hochberg(np.array(p)), want_bh, rtol=1e-12, equal_nan=True)


def _rows(rng: np.random.Generator, n: int, *, zeros: int = 0, ties: bool = False, rows: int = 3):
    y = rng.uniform(0.4, 0.8, (rows, n))
    d = rng.normal(0.02, 0.05, (rows, n))
    if ties:
        d = np.round(d, 2)
    d[:, :zeros] = 0.0
    return y + d, y


@pytest.mark.parametrize(
    ("n", "zeros", "ties", "method"),
    [
        (8, 0, False, "exact"),  # (3, 8) no ties or zeros
        (9, 1, False, "permutation"),  # a zero, n <= 13
        (20, 0, True, "asymptotic"),  # ties, n > 13
        (40, 0, False, "exact"),  # largest exact range
        (61, 2, False, "asymptotic"),  # above 50: batched call
    ],
)
def test_p_values_equal_scipy_on_the_same_pairs(n: int, zeros: int, ties: bool, method: str) -> None:
    x, y = _rows(np.random.default_rng(n), n, zeros=zeros, ties=ties)
    statistic, p = wilcoxon_greater(x, y)
    n_zero, has_ties = tie_and_zero_counts(x - y)
    for row in range(len(x)):
        ref = stats.wilcoxon(x[row], y[row], alternative="greater")
        assert p[row] == ref.pvalue and statistic[row] == ref.statistic
        used = scipy_method(n, int(n_zero[row]), bool(has_ties[row]))
        forced = stats.PermutationMethod() if used == "permutation" else used
        assert stats.wilcoxon(x[row], y[row], alternative="greater", method=forced).pvalue == p[row]
    assert {scipy_method(n, int(z), bool(t)) for z, t in zip(n_zero, has_ties)} <= {method, "asymptotic"}


@pytest.mark.parametrize(
    "d",
    [
        [0.1, 0.1, -0.05, 0.2, 0.0, 0.3],  # a tie and a zero
        [0.0, 0.0, 0.1, -0.1, 0.2, 0.2, 0.2, -0.3, 0.4, 0.5, 0.5, 0.6, 0.7],  # 13 pairs, the largest permutation case
        [0.0, 0.0, 0.0],  # nothing but zeros
        [-0.2, -0.2, -0.1, 0.0],  # everything against
    ],
)
def test_the_enumerated_permutation_test_equals_scipys(d: list[float]) -> None:
    y = np.full(len(d), 0.5)
    x = y + np.array(d)
    statistic, p = wilcoxon_greater(x[None, :], y[None, :])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.wilcoxon(x, y, alternative="greater")
    assert p[0] == ref.pvalue and statistic[0] == ref.statistic


def test_effect_sizes_on_a_hand_case() -> None:
    # d sorted: -0.1, 0, 0.2, 0.3, 0.4; 15 Walsh averages, the 8th is 0.15;
    # |d| without the zero ranks 0.1->1, 0.2->2, 0.3->3, 0.4->4: R+ = 9, R- = 1, r = 8/10
    d = np.array([[0.3, -0.1, 0.2, 0.0, 0.4]])
    hl, lo, hi = hodges_lehmann(d)
    assert hl[0] == pytest.approx(0.15)
    assert np.isnan(lo[0]) and np.isnan(hi[0])  # n = 5: no 95 % interval exists
    assert rank_biserial(d)[0] == pytest.approx(0.8)
    assert np.median(d) == pytest.approx(0.2)


def test_rank_biserial_gives_ties_midranks_and_is_nan_without_nonzero_differences() -> None:
    # |d| 0.1, 0.1 -> 1.5 each; 0.2, 0.2 -> 3.5 each: R+ = 8.5, R- = 1.5, r = 0.7
    assert rank_biserial(np.array([[0.1, -0.1, 0.2, 0.2]]))[0] == pytest.approx(0.7)
    assert np.isnan(rank_biserial(np.zeros((1, 4)))[0])


def test_signed_rank_cdf_matches_enumeration_and_the_tabled_critical_value() -> None:
    n = 10
    sums = [sum(r for r, s in zip(range(1, n + 1), signs) if s) for signs in itertools.product([0, 1], repeat=n)]
    brute = np.cumsum(np.bincount(sums, minlength=56)) / 2**n
    np.testing.assert_allclose(_signed_rank_cdf(n), brute)
    assert walsh_ci_rank(10, 0.95) == 9  # two-sided 5 % critical T = 8 for n = 10
    assert walsh_ci_rank(5, 0.95) == 0


@pytest.mark.parametrize("n", [7, 12, 60, 400])  # odd, even, exact CI range, normal CI range
def test_hodges_lehmann_and_interval_equal_the_walsh_order_statistics(n: int) -> None:
    rng = np.random.default_rng(n)
    D = np.round(rng.normal(0.01, 0.05, (4, n)), 3)  # ties and zeros on purpose
    D[:, : n // 8] = 0.0
    hl, lo, hi = hodges_lehmann(D)
    k = walsh_ci_rank(n, 0.95)
    iu, ju = np.triu_indices(n)
    for r, row in enumerate(D):
        d = np.sort(row)
        w = np.sort((d[iu] + d[ju]) / 2)
        assert hl[r] == np.median(w)
        assert (lo[r], hi[r]) == (w[k - 1], w[-k])


def test_walsh_selection_is_exact_beyond_the_sampled_bracket() -> None:
    # 300 pairs: 45,150 averages, above the size that is materialised directly
    rng = np.random.default_rng(3)
    Ds = np.sort(rng.standard_t(2, (3, 300)), axis=1)
    ranks = [1, 1000, 22_575, 45_150]
    got = walsh_order_stats(Ds, ranks, sample=500)
    iu, ju = np.triu_indices(300)
    for r, d in enumerate(Ds):
        w = np.sort((d[iu] + d[ju]) / 2)
        np.testing.assert_array_equal(got[r], w[np.array(ranks) - 1])


def test_bootstrap_statistics_equal_brute_force_resamples() -> None:
    rng = np.random.default_rng(0)
    D = rng.normal(0.02, 0.05, (3, 9))  # distinct |d|: the rank shortcut is exact
    D[1, :2] = 0.0
    counts = bootstrap_counts(9, 40, rng)
    assert (counts.sum(axis=1) == 9).all()
    medians = bootstrap_median(D, counts)
    correlations = bootstrap_rank_biserial(D, counts)
    for s in range(3):
        by_value = np.sort(D[s])
        by_size = D[s][np.argsort(np.abs(D[s]), kind="stable")]
        for b in range(40):
            assert medians[s, b] == pytest.approx(np.median(np.repeat(by_value, counts[b])))
            want = rank_biserial(np.repeat(by_size, counts[b])[None, :])[0]
            assert correlations[s, b] == pytest.approx(want, nan_ok=True)


def test_percentile_interval_and_underpowered_flag() -> None:
    boot = np.tile(np.arange(1001.0), (2, 1))
    boot[1, :10] = np.nan
    lo, hi = percentile_ci(boot, 0.95)
    assert (lo[0], hi[0]) == (pytest.approx(25.0), pytest.approx(975.0))
    assert lo[1] > 25.0
    # 1 / 2^4 = 0.0625 >= 0.05: four all-positive pairs cannot reach p < 0.05, five can (one test each)
    for n, want in ((0, True), (4, True), (5, False), (20, False)):
        assert underpowered(np.array([0.5]), np.array([n]), 0.05)[0] == want
    # 16 strategies alike: Holm's first step is 16 p: 16 / 2^8 = 0.0625, 16 / 2^9 < 0.05
    np.testing.assert_array_equal(underpowered(np.full(16, 0.5), np.full(16, 8), 0.05), [True] * 16)
    np.testing.assert_array_equal(underpowered(np.full(16, 0.5), np.full(16, 9), 0.05), [False] * 16)
    # the others' p-values count: beside 15 clear winners, Holm's last step is 1 p, and 5 pairs suffice
    p = np.r_[np.full(15, 1e-9), 0.5]
    assert not underpowered(p, np.full(16, 5), 0.05)[-1] and underpowered(p, np.full(16, 4), 0.05)[-1]
    assert not underpowered(p, np.full(16, 4), 0.05, "bh")[:15].any()
    assert smallest_p(np.array([60]))[0] == pytest.approx(
        stats.wilcoxon(np.arange(1.0, 61), alternative="greater").pvalue
    )


def test_rank_biserial_and_its_interval_share_midranks_of_tied_differences() -> None:
    # Dice differences rounded to 0.01, as a study writes them: ties of both signs and a zero
    d = np.array([[0.01, -0.01, 0.02, 0.02, -0.03, 0.01, 0.00, 0.04]])
    # by hand: |0.01| x3 share ranks 1-3 (midrank 2), |0.02| x2 ranks 4-5 (4.5), 0.03 rank 6, 0.04 rank 7;
    # R+ = 2 + 2 + 4.5 + 4.5 + 7 = 20, R- = 2 + 6 = 8, r = (20 - 8) / 28
    assert rank_biserial(d)[0] == pytest.approx(12 / 28)
    counts = bootstrap_counts(8, 500, np.random.default_rng(7))
    boot = bootstrap_rank_biserial(d, counts)[0]
    by_size = d[0][np.argsort(np.abs(d[0]), kind="stable")]
    exact = np.array([rank_biserial(np.repeat(by_size, c)[None])[0] for c in counts])
    np.testing.assert_allclose(boot, exact, rtol=0, atol=1e-12)
    lo, hi = percentile_ci(boot[None], 0.95)
    want = np.nanquantile(exact, [0.025, 0.975])
    assert (lo[0], hi[0]) == (pytest.approx(want[0]), pytest.approx(want[1]))
