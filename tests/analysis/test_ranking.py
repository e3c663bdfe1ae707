from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from study.analysis import (
    AnalysisSettings,
    analyze,
    case_dice,
    format_ranking,
    normalise,
    optimum,
    pooled_fractions,
    rank_strategies,
    units,
)
from study.errors import DataError, SpecError

FRACTIONS = (0.05, 0.25, 1.0)


def rows(
    dataset: str,
    strategy: str,
    fraction: float,
    dice: dict[str, float],
    *,
    seed: int = 0,
    subjects: dict[str, str] | None = None,
    trial_id: str | None = None,
    **extra: object,
) -> list[dict]:
    """Two classes per case: "a" carries the Dice, "b" is absent from truth and prediction (NaN),
    so the class average is exactly the given value."""
    out = []
    for case, value in dice.items():
        for cls, v in (("a", value), ("b", np.nan)):
            out.append(
                {
                    "dataset": dataset,
                    "strategy": strategy,
                    "label_fraction": fraction,
                    "case_id": case,
                    "subject_id": (subjects or {}).get(case, case),
                    "class": cls,
                    "dice": v,
                    "seed": seed,
                    "trial_id": trial_id or f"{dataset}-{strategy}-{fraction}-{seed}",
                    **extra,
                }
            )
    return out


def known_order(dataset: str = "mri", n_cases: int = 10, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Baseline plus "strong" (every case better), "weak" (noisy, slightly better), "worse"."""
    rng = np.random.default_rng(seed)
    shifts = {
        "strong": lambda m: 0.05 + rng.uniform(0, 0.01, m),
        "weak": lambda m: rng.normal(0.01, 0.02, m),
        "worse": lambda m: -0.03 + rng.uniform(0, 0.01, m),
    }
    cases = [f"c{i}" for i in range(n_cases)]
    records, values = [], {}
    for f in FRACTIONS:
        base = rng.uniform(0.5, 0.8, n_cases)
        values[("supervised", f)] = base
        records += rows(dataset, "supervised", f, dict(zip(cases, base)))
        for name, shift in shifts.items():
            v = base + shift(n_cases)
            values[(name, f)] = v
            records += rows(dataset, name, f, dict(zip(cases, v)))
    return pd.DataFrame(records), values


def test_per_case_pairs_average_each_case_over_the_fractions_and_equal_scipy() -> None:
    table, values = known_order()
    result = analyze(table, AnalysisSettings(n_boot=200))
    ranking = result.ranking
    assert list(ranking["strategy"]) == ["strong", "weak", "worse"]
    assert result.fractions["mri"] == (0.25, 0.05)  # 1.0 is not label-limited
    for r in ranking.itertuples():
        d = np.mean([values[(r.strategy, f)] - values[("supervised", f)] for f in (0.25, 0.05)], axis=0)
        ref = stats.wilcoxon(d, alternative="greater")
        assert r.n == 10 and r.p == pytest.approx(ref.pvalue, rel=1e-12) and r.statistic == ref.statistic
        assert r.median_diff == pytest.approx(np.median(d))
        assert r.median_diff_ci_low <= r.median_diff <= r.median_diff_ci_high
        assert r.hl_ci_low <= r.hl_shift <= r.hl_ci_high
        assert r.pairing == "per_case" and r.fractions == "0.25,0.05" and r.seeds == "0"
    strong = ranking.iloc[0]
    assert strong.p == 0.5**10 and strong.rank_biserial == 1.0 and strong.method == "exact"
    assert list(ranking["top_k"]) == [True, True, True] and not ranking["underpowered"].any()
    assert list(ranking["beats_baseline"]) == [True, True, False]


def test_pooled_pairs_are_the_papers_and_say_so() -> None:
    table, values = known_order()
    result = analyze(table, AnalysisSettings(n_boot=200, pairing="pooled"))
    for r in result.ranking.itertuples():
        x = np.concatenate([values[(r.strategy, f)] for f in (0.25, 0.05)])
        y = np.concatenate([values[("supervised", f)] for f in (0.25, 0.05)])
        ref = stats.wilcoxon(x, y, alternative="greater")
        assert r.n == 20 and r.p == ref.pvalue and r.statistic == ref.statistic
    assert any("the paper's protocol" in n for n in result.notes)


def test_explicit_fractions_pool_only_those() -> None:
    table, values = known_order()
    ranking = analyze(table, AnalysisSettings(fractions=(0.05,), n_boot=200)).ranking
    x, y = values[("weak", 0.05)], values[("supervised", 0.05)]
    row = ranking.set_index("strategy").loc["weak"]
    assert row["n"] == 10 and row["p"] == stats.wilcoxon(x, y, alternative="greater").pvalue
    assert row["fractions"] == "0.05"


@pytest.mark.parametrize(
    ("present", "requested", "want"),
    [
        ((1.0, 0.5, 0.25, 0.1, 0.05), None, (0.5, 0.25, 0.1, 0.05)),  # the paper's five subsets
        ((0.05, 0.25, 1.0), None, (0.25, 0.05)),  # the laptop grid
        ((0.3, 0.6, 1.0), None, (0.6, 0.3)),  # none of the paper's: every fraction below 1
        ((0.05, 0.25, 1.0), (0.05, 1.0), (1.0, 0.05)),  # asked for: used as given
    ],
)
def test_pooled_fractions(present: tuple, requested: tuple | None, want: tuple) -> None:
    assert pooled_fractions(present, requested) == want


def test_pooled_fractions_refuse_what_is_not_there() -> None:
    with pytest.raises(DataError, match="0.5 not in the study"):
        pooled_fractions((0.05, 1.0), (0.5,))
    with pytest.raises(DataError, match="no label-limited fraction"):
        pooled_fractions((1.0,), None)
    with pytest.raises(SpecError, match="top_k 0"):
        AnalysisSettings(top_k=0)


def ct_slices() -> pd.DataFrame:
    """4 patients x 3 slices; strategy "ssl" better on every patient on average."""
    rng = np.random.default_rng(5)
    subjects = {f"p{p}s{s}": f"p{p}" for p in range(4) for s in range(3)}
    records = []
    for f in (0.05, 0.25):
        base = dict(zip(subjects, rng.uniform(0.5, 0.8, 12)))
        records += rows("ct", "supervised", f, base, subjects=subjects)
        records += rows("ct", "ssl", f, {c: v + rng.uniform(0.0, 0.05) for c, v in base.items()}, subjects=subjects)
    return pd.DataFrame(records)


def test_slices_of_fewer_patients_are_averaged_per_patient() -> None:
    table = ct_slices()
    result = analyze(table, AnalysisSettings(n_boot=200))
    row = result.ranking.iloc[0]
    assert result.unit == {"ct": "patient"} and row["unit"] == "patient" and row["n"] == 4
    per = table[table["class"] == "a"].groupby(["strategy", "label_fraction", "subject_id"])["dice"].mean()
    d = np.mean([per["ssl"][f].to_numpy() - per["supervised"][f].to_numpy() for f in (0.25, 0.05)], axis=0)
    assert row["p"] == pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue, rel=1e-12)
    by_case = analyze(table, AnalysisSettings(aggregate="case", n_boot=200)).ranking.iloc[0]
    assert by_case["unit"] == "case" and by_case["n"] == 12
    pooled = analyze(table, AnalysisSettings(aggregate="case", n_boot=200, pairing="pooled")).ranking.iloc[0]
    assert pooled["n"] == 24


def test_no_baseline_missing_cases_and_too_few_pairs_are_refused() -> None:
    table, _ = known_order()
    with pytest.raises(DataError, match="no baseline 'supervised'"):
        analyze(table[table["strategy"] != "supervised"])
    holes = table[~((table["strategy"] == "weak") & (table["case_id"] == "c3") & (table["label_fraction"] == 0.05))]
    with pytest.raises(DataError, match=r"strategy 'weak' lacks 1 .* at fraction 0.05 seed 0: c3"):
        analyze(holes)
    one = table[table["case_id"] == "c0"]
    with pytest.raises(DataError, match="at least 2"):
        analyze(one, AnalysisSettings(fractions=(0.05,)))


def test_a_strategy_without_a_pooled_fraction_is_noted_not_ranked() -> None:
    table, _ = known_order()
    extra = pd.DataFrame(rows("mri", "full-only", 1.0, {f"c{i}": 0.9 for i in range(10)}))
    result = analyze(pd.concat([table, extra]), AnalysisSettings(n_boot=200))
    assert "full-only" not in set(result.ranking["strategy"])
    assert any("full-only" in n for n in result.notes)


def test_the_lowest_validation_loss_is_kept_when_trials_share_a_strategy() -> None:
    table, values = known_order()
    table["val_loss"] = 0.5
    rival = table[table["strategy"] == "worse"].assign(
        trial_id=lambda t: t["trial_id"] + "-lr2", val_loss=0.1, dice=lambda t: t["dice"] + 0.2
    )
    result = analyze(pd.concat([table, rival]), AnalysisSettings(n_boot=200))
    row = result.ranking.set_index("strategy").loc["worse"]
    assert row["mean_dice"] == pytest.approx(np.mean([values[("worse", f)] + 0.2 for f in (0.25, 0.05)]))
    assert any("lowest validation loss" in n for n in result.notes)


def test_the_optimum_is_the_only_member_of_the_best_set_of_every_data_set_and_beats_the_baseline() -> None:
    def ranking(mri_best: str, ct_best: str, beats: bool = True) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "dataset": ["mri"] * 3 + ["ct"] * 3,
                "strategy": list("ABC") * 2,
                "best_set": [s in mri_best for s in "ABC"] + [s in ct_best for s in "ABC"],
                "beats_baseline": beats,
            }
        )

    assert optimum(ranking("B", "B")) == ["B"]
    assert optimum(ranking("B", "A")) == []  # a different best per data set
    assert optimum(ranking("AB", "B")) == []  # MRI does not separate A and B
    assert optimum(ranking("B", "B", beats=False)) == []


def test_repeated_seeds_give_per_seed_rankings_and_their_stability() -> None:
    # seed 0 ranks strong, weak, worse; seed 1 swaps weak and worse (worse becomes slightly better)
    a, _ = known_order(seed=0)
    b, _ = known_order(seed=1)
    b = b.assign(seed=1)
    b.loc[b["strategy"] == "worse", "dice"] += 0.06
    b.loc[b["strategy"] == "weak", "dice"] -= 0.04
    result = analyze(pd.concat([a, b]), AnalysisSettings(top_k=1, n_boot=200))
    per_seed = result.seed_ranking.pivot(index="strategy", columns="seed", values="rank")
    assert per_seed[0].to_dict() == {"strong": 1, "weak": 2, "worse": 3}
    assert per_seed[1].to_dict() == {"strong": 1, "weak": 3, "worse": 2}
    share = result.seed_stability.set_index("strategy")["top_k_share"]
    assert share["strong"] == 1.0 and share["weak"] == 0.0
    tau = result.seed_agreement.iloc[0]["kendall_tau"]
    assert tau == pytest.approx(stats.kendalltau([1, 2, 3], [1, 3, 2]).statistic)  # 1/3
    # the main ranking averages each case over fractions and seeds: one pair per case
    assert set(result.ranking["n"]) == {10} and set(result.ranking["seeds"]) == {"0,1"}


def test_units_average_classes_then_patients_then_seeds() -> None:
    table = pd.DataFrame(
        [
            {
                "dataset": "ct",
                "strategy": "s",
                "label_fraction": 0.1,
                "case_id": c,
                "subject_id": "p",
                "class": k,
                "dice": v,
                "seed": seed,
            }
            for seed, c, k, v in [
                (0, "x", "a", 0.2),
                (0, "x", "b", 0.4),
                (0, "y", "a", 0.6),
                (0, "y", "b", np.nan),
                (1, "x", "a", 1.0),
                (1, "y", "a", 0.0),
            ]
        ]
    )
    per_unit, kind = units(case_dice(normalise(table)), "auto")
    # seed 0: x 0.3, y 0.6 -> patient 0.45; seed 1: x 1.0, y 0.0 -> 0.5; over seeds 0.475
    assert kind == {"ct": "patient"} and per_unit["dice"].tolist() == [pytest.approx(0.475)]


def test_full_analysis_serialises_and_prints() -> None:
    table, _ = known_order()
    result = analyze(table, AnalysisSettings(n_boot=200))
    text = format_ranking(result)
    assert "mri: 3 strategies vs 'supervised'" in text and "optimum: strong (beats the baseline" in text
    assert text.splitlines()[: len(result.headline)] == result.headline
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["chosen"] == {"mri": "strong"} and data["tables"]["ranking"][0]["strategy"] == "strong"
    by_set, _ = rank_strategies(
        units(case_dice(normalise(table)), "case", by_seed=True)[0], result.fractions, AnalysisSettings(n_boot=200)
    )
    pd.testing.assert_frame_equal(by_set, result.ranking)  # same seed, same intervals
