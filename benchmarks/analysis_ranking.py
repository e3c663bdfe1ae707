"""The full ranking of ``python -m study.analyze`` at scale: 500 strategies x 1,000 test cases.

A synthetic per-case table (one row per strategy, case and class, as the runner writes it) with a
supervised baseline and strategies whose true shift ranges from -0.02 to +0.04 Dice, at one
label-limited fraction. Timed: class averaging and pairing (``case_dice``, ``units``) and the
ranking itself (``rank_strategies``: one-sided Wilcoxon per strategy, Holm and BH, median
difference, Hodges-Lehmann shift with its interval, rank-biserial correlation, bootstrap intervals
with 2,000 resamples). Checks: a sample of p-values equals ``scipy.stats.wilcoxon`` on the same
pairs, and the ranking follows the true shifts. Rounds report best and median.

Run: ``python benchmarks/analysis_ranking.py [--strategies 500] [--cases 1000] [--rounds 3]``; the
last line printed is one JSON object. Goal: under 5 s on this machine, bootstrap included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import pandas as pd
from scipy import stats

from study.analysis import AnalysisSettings, case_dice, normalise, pooled_fractions, rank_strategies, units

CLASSES = ("patellar_cartilage", "femoral_cartilage", "tibial_cartilage", "meniscus")


def synthetic_table(n_strategies: int, n_cases: int, fraction: float, seed: int) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    names = ["supervised"] + [
        f"restoration/K{k}/s{i}|encoder/at_once"
        for i, k in zip(range(n_strategies), np.tile([8, 16, 32, 64], n_strategies))
    ]
    shift = np.concatenate([[0.0], np.linspace(-0.02, 0.04, n_strategies)])
    base = rng.uniform(0.5, 0.85, n_cases)
    dice = base[None, :] + shift[:, None] + rng.normal(0, 0.03, (len(names), n_cases)) * (shift[:, None] != 0)
    per_class = dice[:, :, None] + rng.normal(0, 0.05, (1, 1, len(CLASSES)))  # (strategy, case, class)
    s, c, k = np.meshgrid(np.arange(len(names)), np.arange(n_cases), np.arange(len(CLASSES)), indexing="ij")
    table = pd.DataFrame(
        {
            "dataset": "mri",
            "strategy": np.array(names, dtype=object)[s.ravel()],
            "label_fraction": fraction,
            "case_id": np.array([f"case{i:04d}" for i in range(n_cases)], dtype=object)[c.ravel()],
            "class": np.array(CLASSES, dtype=object)[k.ravel()],
            "dice": per_class.ravel(),
        }
    )
    return table, dict(zip(names, shift))


def one_round(table: pd.DataFrame, settings: AnalysisSettings) -> tuple[float, float, pd.DataFrame, pd.DataFrame]:
    start = time.perf_counter()
    per_unit, kind = units(case_dice(normalise(table)), settings.aggregate)
    fractions = {"mri": pooled_fractions(per_unit["label_fraction"], settings.fractions)}
    prepared = time.perf_counter()
    ranking, _ = rank_strategies(per_unit, fractions, settings, kind)
    done = time.perf_counter()
    return prepared - start, done - prepared, ranking, per_unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", type=int, default=500)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    table, shift = synthetic_table(args.strategies, args.cases, 0.05, seed=0)
    settings = AnalysisSettings(n_boot=args.n_boot)
    print(
        f"per-case table: {len(table):,} rows ({args.strategies} strategies + baseline x {args.cases} cases x "
        f"{len(CLASSES)} classes), {args.n_boot} bootstrap resamples"
    )
    prep, rank = [], []
    for r in range(args.rounds):
        t_prep, t_rank, ranking, per_unit = one_round(table, settings)
        prep.append(t_prep)
        rank.append(t_rank)
        print(f"round {r + 1}: prepare {t_prep:.2f} s, rank {t_rank:.2f} s, total {t_prep + t_rank:.2f} s")
    total = [a + b for a, b in zip(prep, rank)]
    wide = per_unit.pivot(index="unit", columns="strategy", values="dice")
    sample = ranking.iloc[np.linspace(0, len(ranking) - 1, 8).astype(int)]
    p_match = all(
        stats.wilcoxon(wide[s], wide["supervised"], alternative="greater").pvalue == p
        for s, p in zip(sample["strategy"], sample["p"])
    )
    rho = stats.spearmanr(ranking["rank"], [-shift[s] for s in ranking["strategy"]]).statistic
    print(
        f"best total {min(total):.2f} s (median {statistics.median(total):.2f} s): prepare {min(prep):.2f} s, "
        f"rank {min(rank):.2f} s; goal < 5 s"
    )
    print(
        f"p-values equal scipy on 8 sampled strategies: {p_match}; Spearman(rank, true shift order) = {rho:.3f}; "
        f"significant after Holm: {(ranking['p_holm'] < 0.05).sum()}, after BH: {(ranking['p_bh'] < 0.05).sum()}"
    )
    print(
        json.dumps(
            {
                "benchmark": "analysis_ranking",
                "strategies": args.strategies,
                "cases": args.cases,
                "classes": len(CLASSES),
                "n_boot": args.n_boot,
                "rounds": args.rounds,
                "best_total_s": round(min(total), 3),
                "median_total_s": round(statistics.median(total), 3),
                "best_prepare_s": round(min(prep), 3),
                "best_rank_s": round(min(rank), 3),
                "goal_s": 5.0,
                "meets_goal": min(total) < 5.0,
                "p_equal_scipy": p_match,
                "spearman": round(float(rho), 4),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
