"""Design-axis effects: the marginal effect of each level on paired dDice, and the axes' importance."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from study.analysis import AnalysisSettings, analyze, format_ranking
from tests.analysis.test_ranking import rows

TASK = {"restoration": 0.04, "prediction": 0.0}  # additive effects on every case's Dice
PATCH = {16: 0.004, 32: 0.0}
LR = {0.001: 0.0, 0.01: -0.02}


def _grid(
    n_cases: int = 24,
    fractions: tuple[float, ...] = (0.25, 0.5),
    seed: int = 0,
    seeds: tuple[int, ...] = (0,),
    seed_shift: float = 0.0,
) -> pd.DataFrame:
    """A grid over task x patch size x fine-tuning lr, whose effects add up exactly, and a baseline
    at the same two learning rates. Validation loss prefers lr 0.001, so the ranking keeps it for
    every strategy and the baseline; the baseline learns far less at lr 0.01 (-0.3). A seed adds
    ``seed_shift`` x seed to every pretrained trial."""
    rng = np.random.default_rng(seed)
    cases = [f"c{i}" for i in range(n_cases)]
    records = []
    for f, s in itertools.product(fractions, seeds):
        base = rng.uniform(0.5, 0.8, n_cases)
        for lr, loss in ((0.001, 0.1), (0.01, 0.2)):
            records += rows(
                "mri",
                "supervised",
                f,
                dict(zip(cases, base + (0 if lr == 0.001 else -0.3))),
                seed=s,
                trial_id=f"base-{f}-{lr}-{s}",
                task="none",
                lr=lr,
                val_loss=loss,
            )
        for task, k, lr in itertools.product(TASK, PATCH, LR):
            shift = TASK[task] + PATCH[k] + LR[lr] + seed_shift * s + rng.normal(0, 0.002, n_cases)
            records += rows(
                "mri",
                f"{task}/K{k}/random|encoder/at_once",
                f,
                dict(zip(cases, base + shift)),
                seed=s,
                trial_id=f"{task}-{k}-{lr}-{f}-{s}",
                task=task,
                patch_size=k,
                sampler="random",
                extent=1.0,
                scope="encoder",
                schedule="at_once",
                lr=lr,
                val_loss=0.1 if lr == 0.001 else 0.2,
            )
    return pd.DataFrame(records)


def _mean(d: dict) -> float:
    return float(np.mean(list(d.values())))


def test_each_level_is_its_strategies_at_their_selected_lr_against_the_baseline_at_its() -> None:
    result = analyze(_grid(), AnalysisSettings(n_boot=400))
    effects = result.effects.set_index(["axis", "level"])
    assert set(result.effects["axis"]) == {"task", "patch_size", "lr"}  # only the axes the study varies
    # a pretraining axis: its strategies at the selected lr 0.001, averaged over the other axis
    for axis, levels, others in (("task", TASK, _mean(PATCH)), ("patch_size", PATCH, _mean(TASK))):
        for level, shift in levels.items():
            row = effects.loc[(axis, f"{level:g}" if not isinstance(level, str) else level)]
            assert row["mean_diff"] == pytest.approx(shift + others + LR[0.001], abs=0.002)
            assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
            assert row["n"] == 24 and row["fractions"] == "0.5,0.25" and row["baseline_at"] == "selected_lr"
            # 2 strategies x 2 fractions, none missing
            assert row["n_trials"] == 4 and row["n_strategies"] == 2 and row["missing"] == 0
    # the learning rate: every pretrained trial at a rate against the baseline at that rate
    assert effects.loc[("lr", "0.001"), "mean_diff"] == pytest.approx(_mean(TASK) + _mean(PATCH), abs=0.002)
    assert effects.loc[("lr", "0.01"), "mean_diff"] == pytest.approx(_mean(TASK) + _mean(PATCH) - 0.02 + 0.3, abs=0.002)
    assert (effects.loc["lr", "baseline_at"] == "same_lr").all() and (effects.loc["lr", "n_trials"] == 8).all()
    assert (result.effects["resampled"] == "units").all()  # one seed
    text = format_ranking(result)
    assert "design-axis effects, mri" in text and "pretext task (importance" in text
    assert {"effects", "importance"} <= set(result.tables())


def test_importance_is_eta_squared_beside_its_permutation_null() -> None:
    result = analyze(_grid(), AnalysisSettings(n_boot=400))
    importance = result.importance.set_index("axis")
    assert set(importance.index) == {"task", "patch_size"}  # the lr is selected per strategy, not an axis here
    # four strategies: task's level means explain nearly all of their spread, patch size the rest
    assert importance.loc["task", "importance"] > 0.95 and importance["importance"].sum() == pytest.approx(1, abs=1e-3)
    assert (importance["null_mean"] <= importance["null_high"]).all() and (importance["n_strategies"] == 4).all()
    # 4 values have 3 ways to split into two pairs: no permutation p can fall below 1/3, so nothing is called
    assert (importance["p"] > 0.25).all() and not importance["important"].any()
    assert (importance["p_holm"] >= importance["p"]).all() and (importance["n_perm"] == 400).all()


def test_several_seeds_are_resampled_with_the_units() -> None:
    result = analyze(_grid(seeds=(0, 1, 2), seed_shift=0.02), AnalysisSettings(n_boot=400))
    row = result.effects.set_index(["axis", "level"]).loc[("task", "restoration")]
    assert row["resampled"] == "units, seeds" and row["seeds"] == "0,1,2"
    # the seeds differ by 0.02 each; the units alone (noise SD 0.002) would give an interval ~0.001 wide
    assert row["ci_high"] - row["ci_low"] > 0.015
    assert row["mean_diff"] == pytest.approx(TASK["restoration"] + _mean(PATCH) + 0.02, abs=0.002)


def test_a_level_without_a_configuration_others_have_says_so() -> None:
    table = _grid()
    # as if pruning had stopped restoration/K32 at every learning rate
    stopped = table[~table["strategy"].str.startswith("restoration/K32")]
    result = analyze(stopped, AnalysisSettings(n_boot=200))
    missing = result.effects.set_index(["axis", "level"])["missing"]
    assert missing[("task", "restoration")] == 1 and missing[("patch_size", "32")] == 1
    assert missing[("task", "prediction")] == 0 and (missing["lr"] == 0).all()
    assert any("averages the rest only" in n and "pretext task restoration lacks 1 (32)" in n for n in result.notes)
    assert "restoration (lacks 1)" in format_ranking(result)


def test_a_rate_the_baseline_did_not_run_is_left_out() -> None:
    table = _grid()
    table = table[~((table["strategy"] == "supervised") & (table["lr"] == 0.01))]
    result = analyze(table, AnalysisSettings(n_boot=200))
    assert list(result.effects.loc[result.effects["axis"] == "lr", "level"]) == ["0.001"]
    assert any("lr 0.01: the baseline has no trial at this rate" in n for n in result.notes)


def test_pooled_pairs_one_difference_per_case_and_fraction() -> None:
    result = analyze(_grid(), AnalysisSettings(n_boot=200, pairing="pooled"))
    assert set(result.effects["n"]) == {48}


def test_a_study_that_varies_one_strategy_has_no_axis_to_show() -> None:
    table = _grid()
    one = table[
        (table["task"] == "none")
        | ((table["task"] == "restoration") & (table["patch_size"] == 16) & (table["lr"] == 0.001))
    ]
    result = analyze(one, AnalysisSettings(n_boot=200))
    assert result.effects.empty and result.importance.empty and "effects" not in result.tables()
