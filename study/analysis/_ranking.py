"""The paper's ranking (P §2.8): strategies sorted by one-sided Wilcoxon p against the baseline.

Per data set each strategy is paired with the supervised baseline (``_pairing``: one pair per
case by default, or the paper's pooled pairs); the test is the one-sided signed-rank test of the
differences. Beside the p: n, zeros, ties, the method scipy ran, Holm and BH adjusted p across the
data set's strategies, three effect sizes with 95 % intervals, whether the strategy beats the
baseline at the corrected level, whether it is in the best set (not shown worse than any other
strategy, ``_best``), the Bayesian signed-rank probabilities that it is worse than, practically
equivalent to, or better than the baseline (``rope``), P(top-k) (the share of bootstrap resamples
of cases, and of seeds when there are several, in which it ranks in the top k: a description of
the ranking's spread, never a verdict) and a flag where even all-positive differences could not
reach alpha after the correction.
"""

from __future__ import annotations

import itertools
import warnings
import zlib

import numpy as np
import pandas as pd
from scipy import stats

from study.analysis._bayes import bayesian_signed_rank
from study.analysis._best import best_set
from study.analysis._pairing import PairGroup, Pairing, pair_with_baseline
from study.analysis._settings import AnalysisSettings
from study.analysis._stats import (
    benjamini_hochberg,
    bootstrap_counts,
    bootstrap_median,
    bootstrap_rank_biserial,
    cases_needed,
    hodges_lehmann,
    holm,
    percentile_ci,
    rank_biserial,
    scipy_method,
    signed_rank_z,
    tie_and_zero_counts,
    underpowered,
    wilcoxon_greater,
)
from study.errors import DataError

RANKING_COLUMNS = [
    "dataset",
    "rank",
    "strategy",
    "pairing",
    "unit",
    "fractions",
    "seeds",
    "n",
    "n_zero",
    "ties",
    "method",
    "statistic",
    "p",
    "p_holm",
    "p_bh",
    "beats_baseline",
    "median_diff",
    "median_diff_ci_low",
    "median_diff_ci_high",
    "hl_shift",
    "hl_ci_low",
    "hl_ci_high",
    "rank_biserial",
    "rank_biserial_ci_low",
    "rank_biserial_ci_high",
    "mean_dice",
    "mean_dice_baseline",
    "p_worse",
    "p_equivalent",
    "p_better",
    "best_set",
    "shown_worse_than",
    "p_shown_worse",
    "top_k",
    "p_top_k",
    "underpowered",
    "incomplete",
    "cases_needed",
]
BOOT_CHUNK = 2_000_000  # resamples x pairs per chunk: bounds memory for long pooled vectors


def _rng(seed: int, *names: str) -> np.random.Generator:
    """One stream per data set (and seed), so adding a data set leaves the others' intervals as they were."""
    return np.random.default_rng([seed, *(zlib.crc32(name.encode()) for name in names)])


def _bootstrap(D: np.ndarray, settings: AnalysisSettings, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Percentile intervals of the median difference and the rank-biserial correlation."""
    n = D.shape[1]
    step = max(1, BOOT_CHUNK // n)
    medians, correlations = [], []
    for start in range(0, settings.n_boot, step):
        b = min(step, settings.n_boot - start)
        medians.append(bootstrap_median(D, bootstrap_counts(n, b, rng)))
        correlations.append(bootstrap_rank_biserial(D, bootstrap_counts(n, b, rng)))
    med_lo, med_hi = percentile_ci(np.concatenate(medians, axis=1), settings.confidence)
    rb_lo, rb_hi = percentile_ci(np.concatenate(correlations, axis=1), settings.confidence)
    return med_lo, med_hi, rb_lo, rb_hi


def _test_group(
    group: PairGroup, dataset: str, settings: AnalysisSettings, rng: np.random.Generator, n_tests: int
) -> pd.DataFrame:
    D = group.d
    n = D.shape[1]
    if n < 2:
        raise DataError(
            f"data set {dataset}: strategy {group.strategies[0]!r} has {n} pair with the baseline; "
            f"the signed-rank test needs at least 2"
        )
    statistic, p = wilcoxon_greater(D, np.zeros_like(D))
    n_zero, ties = tie_and_zero_counts(D)
    hl, hl_lo, hl_hi = hodges_lehmann(D, settings.confidence)
    med_lo, med_hi, rb_lo, rb_hi = _bootstrap(D, settings, rng)
    worse, equivalent, better = bayesian_signed_rank(D, settings.rope, rng, settings.bayes_samples)
    return pd.DataFrame(
        {
            "strategy": group.strategies,
            "fractions": group.fractions,
            "seeds": group.seeds,
            "n": n,
            "n_zero": n_zero,
            "ties": ties,
            "method": [scipy_method(n, int(z), bool(t)) for z, t in zip(n_zero, ties)],
            "statistic": statistic,
            "p": p,
            "median_diff": np.median(D, axis=1),
            "median_diff_ci_low": med_lo,
            "median_diff_ci_high": med_hi,
            "hl_shift": hl,
            "hl_ci_low": hl_lo,
            "hl_ci_high": hl_hi,
            "rank_biserial": rank_biserial(D),
            "rank_biserial_ci_low": rb_lo,
            "rank_biserial_ci_high": rb_hi,
            "mean_dice": group.x.mean(axis=1),
            "mean_dice_baseline": group.y.mean(axis=1),
            "p_worse": worse,
            "p_equivalent": equivalent,
            "p_better": better,
            "n_nonzero": n - n_zero,
            "cases_needed": cases_needed(D, settings.alpha / n_tests),
        }
    )


def top_k_share(pairing: Pairing, top_k: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """P(top-k) per strategy of ``pairing``: the share of bootstrap resamples in which it ranks in
    the top k. A resample draws units with replacement (the same units for every strategy, so
    their ranks compete on the same cases) and, with several seeds, seeds with replacement; in
    each, strategies are ranked by the signed-rank z of their differences, ties by the mean
    difference."""
    S, n = pairing.d.shape
    if pairing.per_seed is not None and pairing.per_seed.shape[1] > 1:
        per_seed = pairing.per_seed
        R = per_seed.shape[1]
        w = bootstrap_counts(R, n_boot, rng).astype(float)  # (B, R)
        filled, seen = np.nan_to_num(per_seed), (~np.isnan(per_seed)).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            D = np.einsum("br,srn->sbn", w, filled) / np.einsum("br,srn->sbn", w, seen)
    else:
        D = np.broadcast_to(pairing.d[:, None, :], (S, n_boot, n))
    idx = rng.integers(0, n, (n_boot, n))
    Db = np.take_along_axis(D, np.broadcast_to(idx[None], (S, n_boot, n)), axis=2)
    z = np.nan_to_num(signed_rank_z(Db), nan=-np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tiebreak = np.nan_to_num(np.nanmean(Db, axis=2), nan=-np.inf)
    order = np.lexsort((-tiebreak, -z), axis=0)  # (S, B): strategy indices best first per resample
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(S)[:, None].repeat(n_boot, axis=1), axis=0)
    return (ranks < top_k).mean(axis=1)


def rank_dataset(
    frame: pd.DataFrame,
    dataset: str,
    fractions: tuple[float, ...],
    settings: AnalysisSettings,
    unit: str = "case",
    stream: str = "",
) -> tuple[pd.DataFrame, list[str]]:
    """One data set's ranking (columns :data:`RANKING_COLUMNS`) and notes on what was left out.

    ``frame``: the data set's units per seed (strategy, label_fraction, seed, unit, dice). Ranked
    by p, then by the larger Hodges-Lehmann shift, then by name; Holm and BH adjust across the
    ranked strategies, and a strategy beats the baseline where ``settings.correction``'s adjusted p
    is at most alpha.
    """
    pairing = pair_with_baseline(frame, dataset, settings.baseline, fractions, settings.pairing)
    rng = _rng(settings.seed, dataset, stream)
    n_tests = len(pairing.strategies)
    parts = [_test_group(g, dataset, settings, rng, n_tests) for g in pairing.groups]
    notes = []
    if pairing.unpaired:
        notes.append(
            f"{dataset}: {len(pairing.unpaired)} strategy(ies) have no trial at the pooled fractions "
            f"and are not ranked: {', '.join(pairing.unpaired[:5])}"
        )
    if not pairing.shared:
        notes.append(
            f"{dataset}: no label fraction and seed is shared by every strategy; each is paired with the "
            f"baseline on the cells it has (see incomplete), so their ranks are not on the same footing"
        )
    elif pairing.incomplete:
        notes.append(
            f"{dataset}: {len(pairing.incomplete)} strategy(ies) lack a label fraction or seed that others "
            f"have (failed or missing trials); every strategy is ranked on the cells all share"
        )
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "dataset", dataset)
    table["pairing"], table["unit"] = settings.pairing, unit
    table["p_holm"] = holm(table["p"].to_numpy())
    table["p_bh"] = benjamini_hochberg(table["p"].to_numpy())
    adjusted = table["p_holm"] if settings.correction == "holm" else table["p_bh"]
    table["beats_baseline"] = adjusted <= settings.alpha
    table["underpowered"] = underpowered(
        table["p"].to_numpy(), table["n_nonzero"].to_numpy(), settings.alpha, settings.correction
    )
    member, winner, p_worse = best_set(pairing.d, settings.alpha)
    index = {name: i for i, name in enumerate(pairing.strategies)}
    rows = table["strategy"].map(index).to_numpy()
    table["best_set"] = member[rows]
    table["shown_worse_than"] = [pairing.strategies[w] if w >= 0 else "" for w in winner[rows]]
    table["p_shown_worse"] = p_worse[rows]
    share = dict(zip(pairing.strategies, top_k_share(pairing, settings.top_k, settings.n_boot, rng)))
    table["p_top_k"] = table["strategy"].map(share)
    if len(pairing.strategies) <= settings.top_k:  # every strategy is in the top k by construction
        table["p_top_k"] = np.nan
    table["incomplete"] = table["strategy"].map(lambda name: pairing.incomplete.get(name, ""))
    table = table.assign(_hl=-table["hl_shift"]).sort_values(["p", "_hl", "strategy"], na_position="last")
    table["rank"] = np.arange(1, len(table) + 1)
    table["top_k"] = table["rank"] <= settings.top_k
    return table[RANKING_COLUMNS].reset_index(drop=True), notes


def rank_strategies(
    units: pd.DataFrame,
    fractions: dict[str, tuple[float, ...]],
    settings: AnalysisSettings,
    unit_kind: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Every data set's ranking, stacked; ``fractions`` per data set (see ``pooled_fractions``)."""
    parts, notes = [], []
    for dataset, frame in units.groupby("dataset", sort=True):
        table, more = rank_dataset(
            frame, str(dataset), fractions[dataset], settings, (unit_kind or {}).get(dataset, "case")
        )
        parts.append(table)
        notes += more
    return pd.concat(parts, ignore_index=True), notes


def optimum(ranking: pd.DataFrame) -> list[str]:
    """The strategy that, in every data set, beats the baseline at the corrected level and is the
    only member of the best set (every other strategy shown worse than some strategy); else none."""
    names = None
    for _, frame in ranking.groupby("dataset", sort=True):
        best = frame[frame["best_set"].astype(bool)]
        alone = set(best["strategy"]) if len(best) == 1 and bool(best["beats_baseline"].iloc[0]) else set()
        names = alone if names is None else names & alone
    return sorted(names or ())


def seed_stability(seed_ranking: pd.DataFrame, top_k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How stable the ranking is across seeds.

    Returns (per data set and strategy: seeds ranked, share of seeds in the top k, mean / min / max
    rank) and (per data set and pair of seeds: Kendall's tau between their rankings over the
    strategies both ranked).
    """
    if seed_ranking.empty:
        return pd.DataFrame(), pd.DataFrame()
    stability = (
        seed_ranking.assign(in_top=seed_ranking["rank"] <= top_k)
        .groupby(["dataset", "strategy"], sort=True)
        .agg(
            n_seeds=("seed", "nunique"),
            top_k_share=("in_top", "mean"),
            mean_rank=("rank", "mean"),
            min_rank=("rank", "min"),
            max_rank=("rank", "max"),
        )
        .reset_index()
        .sort_values(["dataset", "mean_rank", "strategy"])
    )
    rows = []
    for dataset, frame in seed_ranking.groupby("dataset", sort=True):
        ranks = frame.pivot(index="strategy", columns="seed", values="rank")
        for a, b in itertools.combinations(ranks.columns, 2):
            both = ranks[[a, b]].dropna()
            tau = stats.kendalltau(both[a], both[b]).statistic if len(both) >= 2 else np.nan
            rows.append({"dataset": dataset, "seed_a": a, "seed_b": b, "n_strategies": len(both), "kendall_tau": tau})
    return stability.reset_index(drop=True), pd.DataFrame(rows)
