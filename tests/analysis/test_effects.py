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


def _grid(n_cases: int = 24, fractions: tuple[float, ...] = (0.25, 0.5), seed: int = 0) -> pd.DataFrame:
    """A grid over task x patch size x fine-tuning lr, whose effects add up exactly, and a baseline
    at two learning rates (the lower validation loss, lr 0.001, is the one every level pairs with)."""
    rng = np.random.default_rng(seed)
    cases = [f"c{i}" for i in range(n_cases)]
    records = []
    for f in fractions:
        base = rng.uniform(0.5, 0.8, n_cases)
        for lr, loss in ((0.001, 0.1), (0.01, 0.2)):
            records += rows("mri", "supervised", f, dict(zip(cases, base + (0 if lr == 0.001 else -0.3))),
                            trial_id=f"base-{f}-{lr}", task="none", lr=lr, val_loss=loss)
        for task, k, lr in itertools.product(TASK, PATCH, LR):
            shift = TASK[task] + PATCH[k] + LR[lr] + rng.normal(0, 0.002, n_cases)
            records += rows("mri", f"{task}/K{k}/random|encoder/at_once", f, dict(zip(cases, base + shift)),
                            trial_id=f"{task}-{k}-{lr}-{f}", task=task, patch_size=k, sampler="random", extent=1.0,
                            scope="encoder", schedule="at_once", lr=lr, val_loss=0.1)
    return pd.DataFrame(records)


def test_each_level_is_its_marginal_paired_difference_with_an_interval() -> None:
    result = analyze(_grid(), AnalysisSettings(n_boot=400))
    effects = result.effects.set_index(["axis", "level"])
    # only the axes the study varies; each level averaged over the other axes' levels
    assert set(result.effects["axis"]) == {"task", "patch_size", "lr"}
    mean = lambda d: float(np.mean(list(d.values())))
    for axis, levels, others in (("task", TASK, mean(PATCH) + mean(LR)), ("patch_size", PATCH, mean(TASK) + mean(LR)),
                                 ("lr", LR, mean(TASK) + mean(PATCH))):
        for level, shift in levels.items():
            row = effects.loc[(axis, f"{level:g}" if not isinstance(level, str) else level)]
            assert row["mean_diff"] == pytest.approx(shift + others, abs=0.002)
            assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
            assert row["n"] == 24 and row["fractions"] == "0.5,0.25"
    assert effects.loc[("task", "restoration"), "n_trials"] == 8  # 2 K x 2 lr x 2 fractions
    importance = result.importance.set_index("axis")["importance"]
    assert importance.idxmax() == "task" and importance.sum() == pytest.approx(1.0)
    assert importance["task"] > importance["lr"] > importance["patch_size"]
    text = format_ranking(result)
    assert "design-axis effects, mri" in text and "pretext task (importance" in text
    assert {"effects", "importance"} <= set(result.tables())


def test_pooled_pairs_one_difference_per_case_and_fraction() -> None:
    result = analyze(_grid(), AnalysisSettings(n_boot=200, pairing="pooled"))
    assert set(result.effects["n"]) == {48}


def test_a_study_that_varies_one_strategy_has_no_axis_to_show() -> None:
    table = _grid()
    one = table[(table["task"] == "none") | ((table["task"] == "restoration") & (table["patch_size"] == 16)
                                             & (table["lr"] == 0.001))]
    result = analyze(one, AnalysisSettings(n_boot=200))
    assert result.effects.empty and result.importance.empty and "effects" not in result.tables()
