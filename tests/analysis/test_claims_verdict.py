"""The verdict's claims, simulated at the rates they state.

Simulated studies: a shared per-case difficulty (Dice 0.5-0.8), every trial's Dice on a case that
difficulty plus its strategy's shift plus independent noise (SD 0.02 per trial and case), one
label fraction, 30 or 40 test cases, 1 or 3 seeds. Each rate is printed (``pytest -s``) and
asserted; the generators are fixed, so the figures are the same on every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from study.analysis import AnalysisSettings, analyze, optimum, rank_dataset
from study.analysis._bayes import bayesian_signed_rank
from study.analysis._stats import cases_needed, underpowered, wilcoxon_greater
from study.analysis._verdict import dataset_verdict
from tests.analysis.test_ranking import known_order

NOISE = 0.02
FAST = AnalysisSettings(n_boot=100, bayes_samples=400)  # the verdict reads neither interval


def simulated(
    rng: np.random.Generator, shifts: list[float], n_cases: int, n_seeds: int, noise: float = NOISE
) -> pd.DataFrame:
    """Units per seed (strategy, label_fraction, seed, unit, dice): the baseline and one strategy
    per entry of ``shifts`` (its true mean difference from the baseline)."""
    difficulty = rng.uniform(0.5, 0.8, n_cases)
    units = [f"c{i:02d}" for i in range(n_cases)]
    frames = []
    for seed in range(n_seeds):
        for name, shift in [("supervised", 0.0), *((f"s{i:02d}", s) for i, s in enumerate(shifts))]:
            dice = difficulty + shift + rng.normal(0, noise, n_cases)
            frames.append(
                pd.DataFrame({"strategy": name, "label_fraction": 0.05, "seed": seed, "unit": units, "dice": dice})
            )
    return pd.concat(frames, ignore_index=True)


def verdicts(
    shifts: list[float], n_cases: int, n_seeds: int, n_studies: int, seed: int, noise: float = NOISE
) -> list[tuple[dict, list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_studies):
        ranking, _ = rank_dataset(simulated(rng, shifts, n_cases, n_seeds, noise), "sim", (0.05,), FAST)
        out.append((dataset_verdict(ranking, FAST), optimum(ranking)))
    return out


@pytest.mark.parametrize("n_strategies", [5, 10, 20])
@pytest.mark.parametrize("n_seeds", [1, 3])
def test_identical_strategies_are_almost_never_given_an_optimum(n_strategies: int, n_seeds: int) -> None:
    results = verdicts(
        [0.03] * n_strategies, n_cases=30, n_seeds=n_seeds, n_studies=200, seed=1000 * n_strategies + n_seeds
    )
    claimed = np.mean([bool(best) or v["verdict"] == "one_best" for v, best in results])
    beat = np.mean([len(v["beats_baseline"]) == n_strategies for v, _ in results])
    print(
        f"{n_strategies} identical strategies, +0.03 Dice over the baseline, 30 cases, {n_seeds} seed(s), "
        f"200 studies: an optimum claimed in {claimed:.3f}; all beat the baseline in {beat:.3f}"
    )
    assert claimed <= 0.05
    assert beat >= 0.95  # the simulation is the issue's: strategies that all beat the baseline


@pytest.mark.parametrize("n_strategies", [5, 10, 20])
def test_one_truly_better_strategy_is_named_at_forty_cases(n_strategies: int) -> None:
    """s00 is 0.025 Dice better than the rest (the rest +0.03 over the baseline): between two
    strategies the per-case difference has SD 0.028, a standardised effect of about 0.9."""
    shifts = [0.055] + [0.03] * (n_strategies - 1)
    results = verdicts(shifts, n_cases=40, n_seeds=1, n_studies=100, seed=7 + n_strategies)
    named = np.mean([best == ["s00"] for _, best in results])
    wrong = np.mean([bool(best) and best != ["s00"] for _, best in results])
    print(
        f"one strategy 0.025 Dice better among {n_strategies}, 40 cases, 1 seed, 100 studies: "
        f"named the optimum in {named:.2f}, another named in {wrong:.2f}"
    )
    assert named >= 0.8 and wrong == 0.0


def test_no_practical_difference_is_rarely_said_of_a_real_effect() -> None:
    """Strategies truly +0.015 Dice (outside the +-0.01 region of practical equivalence) on 12
    noisy cases, where the signed-rank test often cannot show they beat the baseline; and truly
    equal on 30 cases with little noise, where it should be said."""
    real = verdicts([0.015] * 4, n_cases=12, n_seeds=1, n_studies=200, seed=11, noise=0.03)
    said = np.mean([v["verdict"] == "no_practical_difference" for v, _ in real])
    equal = verdicts([0.0] * 4, n_cases=30, n_seeds=1, n_studies=100, seed=12, noise=0.005)
    found = np.mean([v["verdict"] == "no_practical_difference" for v, _ in equal])
    print(
        f"no practical difference said: {said:.3f} of 200 studies with a real +0.015 effect (12 cases, SD 0.03); "
        f"{found:.2f} of 100 with none (30 cases, SD 0.005)"
    )
    assert said <= 0.05 and found >= 0.8


def test_bayesian_signed_rank_equals_baycomp_on_a_hand_case() -> None:
    baycomp = pytest.importorskip("baycomp")
    d = np.array([0.02, -0.01, 0.0, 0.03, 0.015, 0.012, -0.004, 0.02, 0.008, 0.011])
    theirs = baycomp.SignedRankTest.probs(np.zeros_like(d), d, rope=0.01, nsamples=50_000, random_state=3)
    worse, equivalent, better = bayesian_signed_rank(d[None], 0.01, np.random.default_rng(3), 200_000)
    print(
        f"P(worse, equivalent, better): ours {worse[0]:.4f} {equivalent[0]:.4f} {better[0]:.4f}, "
        f"baycomp {theirs[0]:.4f} {theirs[1]:.4f} {theirs[2]:.4f}"
    )
    np.testing.assert_allclose([worse[0], equivalent[0], better[0]], theirs, atol=0.01)
    # without a rope baycomp gives (P(worse), P(better))
    theirs = baycomp.SignedRankTest.probs(np.zeros_like(d), d, rope=0, nsamples=50_000, random_state=4)
    worse, _, better = bayesian_signed_rank(d[None], 0.0, np.random.default_rng(4), 200_000)
    np.testing.assert_allclose([worse[0], better[0]], theirs, atol=0.01)


@pytest.mark.parametrize("correction", ["holm", "bh"])
def test_underpowered_and_beats_are_never_both_true(correction: str) -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        S = int(rng.integers(2, 17))
        n = rng.integers(3, 14, S)  # unequal numbers of pairs
        p = np.array([wilcoxon_greater(rng.normal(0.5, 1, (1, k)), np.zeros((1, k)))[1][0] for k in n])
        adjusted = (
            stats.false_discovery_control(p)
            if correction == "bh"
            else np.minimum(
                1, np.maximum.accumulate((len(p) - np.arange(len(p))) * np.sort(p))[np.argsort(np.argsort(p))]
            )
        )
        flagged = underpowered(p, n, 0.05, correction)
        assert not (flagged & (adjusted <= 0.05)).any()


def test_sixteen_tests_on_eight_pairs_are_underpowered_but_not_on_nine() -> None:
    assert underpowered(np.full(16, 0.5**8), np.full(16, 8), 0.05).all()
    assert not underpowered(np.full(16, 0.5**9), np.full(16, 9), 0.05).any()


def test_cases_needed_gives_the_power_it_promises() -> None:
    """At the n it names for dz = 1.0 and 0.5, the signed-rank test reaches alpha 0.05 with at least
    80 % power on normal differences; and that n is at least the paired t test's exact n over the
    signed-rank test's efficiency 3/pi."""
    rng = np.random.default_rng(6)
    for dz in (1.0, 0.5):
        population = rng.normal(dz, 1, (1, 200_000))
        n = int(cases_needed(population, 0.05)[0])
        t_n = next(k for k in range(2, 1000) if stats.nct.sf(stats.t.isf(0.05, k - 1), k - 1, dz * np.sqrt(k)) >= 0.8)
        d = rng.normal(dz, 1, (4000, n))
        _, p = wilcoxon_greater(d, np.zeros_like(d))
        power = float((p <= 0.05).mean())
        print(f"dz {dz}: cases_needed {n} (t test {t_n}, / (3/pi) {t_n * np.pi / 3:.1f}), simulated power {power:.3f}")
        assert n >= t_n * np.pi / 3 and power >= 0.8


def test_the_headline_answers_per_label_fraction() -> None:
    table, _ = known_order()  # fractions 1.0, 0.25 and 0.05; 'strong' is ahead at every fraction
    at_full = (table["label_fraction"] == 1.0) & (table["strategy"] != "supervised")
    table.loc[at_full, "dice"] = table.loc[at_full, "dice"] - 0.3  # at 100 % no strategy beats the baseline
    result = analyze(table, AnalysisSettings(n_boot=200))
    text = "\n".join(result.headline)
    assert "pooled 25 %, 5 % labels: 2 of 3 beat the baseline" in text
    assert "100 % labels: no strategy beats the baseline" in text and "25 % labels: 1 of 3" in text
    mri = result.answer()["datasets"]["mri"]
    assert mri["fractions"] == [0.25, 0.05] and set(mri["by_fraction"]) == {"0.05", "0.25", "1"}
    assert (
        mri["by_fraction"]["1"]["verdict"] == "none_beats_baseline" and mri["by_fraction"]["1"]["beats_baseline"] == []
    )
    assert set(result.fraction_ranking["label_fraction"]) == {0.05, 0.25, 1.0}
