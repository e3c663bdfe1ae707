"""Pairing against the baseline: per-case pairs keep the test's level on correlated fractions,
missing cells are flagged, and the verdict names an optimum only when it is earned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study.analysis import AnalysisSettings, analyze, pair_with_baseline, wilcoxon_greater
from tests.analysis.test_ranking import known_order, rows


def null_studies(
    n_studies: int, n_cases: int = 36, fractions=(0.5, 0.25, 0.1, 0.05), effect_sd: float = 1.0, seed: int = 2026
) -> pd.DataFrame:
    """One baseline and ``n_studies`` strategies no better than it. Each strategy's difference on a
    case is a per-case random effect shared across the fractions (a case that suits the strategy
    suits it at every fraction) plus independent noise: d = 0.02 (u_case + e_case,fraction)."""
    rng = np.random.default_rng(seed)
    cases = [f"c{i}" for i in range(n_cases)]
    base = rng.uniform(0.5, 0.8, (len(fractions), n_cases))
    u = rng.normal(0, effect_sd, (n_studies, 1, n_cases))
    d = 0.02 * (u + rng.normal(0, 1, (n_studies, len(fractions), n_cases)))
    frames = [
        pd.DataFrame(
            {
                "strategy": "supervised",
                "label_fraction": np.repeat(fractions, n_cases),
                "seed": 0,
                "unit": cases * len(fractions),
                "dice": base.ravel(),
            }
        )
    ]
    for s in range(n_studies):
        frames.append(
            pd.DataFrame(
                {
                    "strategy": f"s{s:04d}",
                    "label_fraction": np.repeat(fractions, n_cases),
                    "seed": 0,
                    "unit": cases * len(fractions),
                    "dice": (base + d[s]).ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def rejection_rate(frame: pd.DataFrame, pairing: str, alpha: float = 0.05) -> float:
    fractions = tuple(sorted(frame["label_fraction"].unique(), reverse=True))
    pairs = pair_with_baseline(frame, "null", "supervised", fractions, pairing)
    D = np.concatenate([g.d for g in pairs.groups])
    _, p = wilcoxon_greater(D, np.zeros_like(D))
    return float((p <= alpha).mean())


def test_per_case_pairing_keeps_the_type_one_error_of_correlated_null_studies() -> None:
    frame = null_studies(2000)
    per_case, pooled = rejection_rate(frame, "per_case"), rejection_rate(frame, "pooled")
    print(
        f"type-I error at alpha 0.05 over 2000 null studies (36 cases x 4 fractions, effect SD 1.0): "
        f"per_case {per_case:.3f}, pooled {pooled:.3f}"
    )
    assert 0.035 <= per_case <= 0.06  # it rejects about 5 % of the time, as a level-0.05 test must


def test_a_strategy_missing_a_fraction_is_flagged_and_all_are_ranked_on_the_shared_cells() -> None:
    table, values = known_order()
    holes = table[~((table["strategy"] == "weak") & (table["label_fraction"] == 0.05))]
    result = analyze(holes, AnalysisSettings(n_boot=200))
    ranking = result.ranking.set_index("strategy")
    assert ranking.loc["weak", "incomplete"] == "fraction 0.05 seed 0"
    assert ranking.loc["strong", "incomplete"] == "" and set(ranking["fractions"]) == {"0.25"}
    d = values[("strong", 0.25)] - values[("supervised", 0.25)]
    assert ranking.loc["strong", "median_diff"] == pytest.approx(np.median(d))
    assert any("lack a label fraction or seed" in n for n in result.notes)


def test_no_optimum_is_named_when_every_strategy_is_worse_than_the_baseline() -> None:
    table, _ = known_order()
    worse = table.copy()
    worse.loc[worse["strategy"] != "supervised", "dice"] -= 0.2
    result = analyze(worse, AnalysisSettings(n_boot=200, top_k=2))
    assert result.optimum == [] and result.verdicts["mri"]["verdict"] == "none_beats_baseline"
    assert result.verdicts["mri"]["beats_baseline"] == []
    assert result.headline[0] == "mri (10 cases, pairing per_case, Holm p <= 0.05 over 3 strategies):"
    assert result.headline[1].startswith("  pooled 25 %, 5 % labels: no strategy beats the baseline (closest: ")
    assert result.headline[-1].startswith("optimum: none")


def test_p_top_k_describes_a_clear_leader_and_a_coin_toss_and_the_best_set_separates_them() -> None:
    rng = np.random.default_rng(4)
    cases = {f"c{i}": v for i, v in enumerate(rng.uniform(0.5, 0.8, 30))}
    records = rows("mri", "supervised", 0.1, cases)
    noise = {name: rng.normal(0, 0.01, 30) for name in ("twin-a", "twin-b")}
    lead = rng.normal(0, 0.01, 30)
    records += rows("mri", "leader", 0.1, {c: v + 0.1 + x for (c, v), x in zip(cases.items(), lead)})
    for name, e in noise.items():
        records += rows("mri", name, 0.1, {c: v + 0.02 + x for (c, v), x in zip(cases.items(), e)})
    result = analyze(pd.DataFrame(records), AnalysisSettings(n_boot=400, top_k=1))
    share = result.ranking.set_index("strategy")["p_top_k"]
    assert result.ranking["strategy"].iloc[0] == "leader"
    assert share["leader"] == 1.0 and share["twin-a"] == 0.0 and share["twin-b"] == 0.0
    result = analyze(pd.DataFrame(records), AnalysisSettings(n_boot=400, top_k=2))
    share = result.ranking.set_index("strategy")["p_top_k"]
    assert share["leader"] == 1.0 and 0.2 < share["twin-a"] < 0.8 and share["twin-a"] + share["twin-b"] == 1.0
    assert result.verdicts["mri"]["best_set"] == ["leader"] and result.optimum == ["leader"]
    assert result.verdicts["mri"]["verdict"] == "one_best"


def test_sixteen_strategies_on_eight_cases_are_underpowered_after_holm() -> None:
    rng = np.random.default_rng(1)
    cases = {f"c{i}": v for i, v in enumerate(rng.uniform(0.5, 0.8, 8))}
    records = rows("mri", "supervised", 0.05, cases)
    for s in range(16):
        records += rows("mri", f"s{s:02d}", 0.05, {c: v + 0.05 + rng.uniform(0, 0.01) for c, v in cases.items()})
    result = analyze(pd.DataFrame(records), AnalysisSettings(n_boot=200))
    ranking = result.ranking
    assert ranking["p"].min() == 0.5**8 and (ranking["p_holm"] >= 16 * 0.5**8).all()
    assert ranking["underpowered"].all() and not ranking["beats_baseline"].any()
    assert "underpowered at 5 % labels: 16 of 16" in "\n".join(result.headline)


def test_strategies_that_share_no_cell_are_each_paired_on_their_own_and_flagged() -> None:
    a, _ = known_order(seed=0)
    b, _ = known_order(seed=1)
    b = b.assign(seed=1)
    table = pd.concat([a[a["strategy"].isin(["supervised", "strong"])], b[b["strategy"].isin(["supervised", "weak"])]])
    result = analyze(table, AnalysisSettings(n_boot=200))
    ranking = result.ranking.set_index("strategy")
    assert ranking.loc["strong", "incomplete"] == "fraction 0.25 seed 1, fraction 0.05 seed 1"
    assert ranking.loc["weak", "incomplete"] == "fraction 0.25 seed 0, fraction 0.05 seed 0"
    assert ranking.loc["strong", "p"] == 0.5**10
    assert any("no label fraction and seed is shared" in n for n in result.notes)
