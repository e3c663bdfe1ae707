from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study.analysis import (
    AnalysisSettings,
    analyze,
    clinical_cases,
    clinical_metrics,
    clinical_summary,
    transfer_summary,
)

NAN = float("nan")


def hand_table() -> pd.DataFrame:
    """MRI, 2 cases x 2 classes x 2 fractions, chosen strategy "A" and the baseline.

    t2 errors (signed %): baseline +10 / -20 on fc, A +2 / -4; pc has a NaN (class absent from the
    truth) for case c2 at fraction 0.05.
    """
    records = []
    for strategy, scale in (("supervised", 1.0), ("A", 0.2), ("B", 3.0)):
        for f, f_scale in ((0.05, 2.0), (0.25, 1.0)):
            for case, fc, pc in (("c1", 10.0, 6.0), ("c2", -20.0, NAN if f == 0.05 else -8.0)):
                for cls, err in (("fc", fc), ("pc", pc)):
                    records.append(
                        {
                            "dataset": "mri",
                            "strategy": strategy,
                            "label_fraction": f,
                            "case_id": case,
                            "subject_id": case,
                            "class": cls,
                            "dice": 0.5,
                            "t2_ms_pct_err": err * scale * f_scale,
                            "volume_ml_pct_err": -err,
                        }
                    )
    return pd.DataFrame(records)


def test_clinical_metrics_are_the_pct_err_columns() -> None:
    assert clinical_metrics(hand_table()) == ["t2_ms", "volume_ml"]


def test_median_signed_percent_error_per_class_and_fraction() -> None:
    out = clinical_summary(hand_table(), {"mri": "A"}, "supervised")
    t2 = out[out["metric"] == "t2_ms"].set_index(["class", "label_fraction"])
    # fc at 0.05: baseline 2 x (+10, -20) -> median -10; A 0.2 x that -> -2
    assert t2.loc[("fc", 0.05), "median_pct_err_baseline"] == pytest.approx(-10.0)
    assert t2.loc[("fc", 0.05), "median_pct_err_strategy"] == pytest.approx(-2.0)
    # pc at 0.05: the NaN is left out, one value remains
    assert t2.loc[("pc", 0.05), "median_pct_err_baseline"] == pytest.approx(12.0)
    assert t2.loc[("pc", 0.05), "n_baseline"] == 1
    assert set(out["strategy"]) == {"A"}


def test_per_case_absolute_error_is_averaged_over_classes_and_fractions() -> None:
    out = clinical_cases(hand_table(), {"mri": "A"}, "supervised", {"mri": (0.25, 0.05)})
    t2 = out[out["metric"] == "t2_ms"].set_index("case_id")
    # c1 baseline |errors|: 0.05 -> 20, 12; 0.25 -> 10, 6 -> mean 12; A is 0.2 x -> 2.4
    assert t2.loc["c1", "baseline_abs_pct_err"] == pytest.approx(12.0)
    assert t2.loc["c1", "strategy_abs_pct_err"] == pytest.approx(2.4)
    # c2 baseline: 0.05 -> 40, NaN; 0.25 -> 20, 8 -> mean of three = 68 / 3
    assert t2.loc["c2", "baseline_abs_pct_err"] == pytest.approx(68 / 3)
    only_005 = clinical_cases(hand_table(), {"mri": "A"}, "supervised", {"mri": (0.05,)})
    assert only_005.set_index(["case_id", "metric"]).loc[("c1", "t2_ms"), "baseline_abs_pct_err"] == pytest.approx(16.0)


def test_no_clinical_columns_give_empty_tables() -> None:
    table = hand_table().drop(columns=["t2_ms_pct_err", "volume_ml_pct_err"])
    assert clinical_summary(table, {"mri": "A"}, "supervised").empty
    assert clinical_cases(table, {"mri": "A"}, "supervised", {"mri": (0.05,)}).empty


def test_transfer_combinations_keep_learning_rates_apart() -> None:
    # strategy A fine-tuned at two learning rates; unit Dice 0.1..0.4 at lr 0.01, +0.3 at lr 0.001
    records = []
    for f in (0.05, 0.25):
        for i, v in enumerate([0.1, 0.2, 0.3, 0.4]):
            base = {"dataset": "mri", "label_fraction": f, "case_id": f"c{i}", "class": "a"}
            records.append({**base, "strategy": "supervised", "dice": v - 0.05, "lr": 0.01, "trial_id": f"s{f}"})
            records.append(
                {
                    **base,
                    "strategy": "A|encoder/at_once",
                    "scope": "encoder",
                    "schedule": "at_once",
                    "dice": v,
                    "lr": 0.01,
                    "trial_id": f"a1{f}",
                    "val_loss": 0.2,
                }
            )
            records.append(
                {
                    **base,
                    "strategy": "A|encoder/at_once",
                    "scope": "encoder",
                    "schedule": "at_once",
                    "dice": v + 0.3,
                    "lr": 0.001,
                    "trial_id": f"a2{f}",
                    "val_loss": 0.1,
                }
            )
    table = pd.DataFrame(records)
    result = analyze(table, AnalysisSettings(n_boot=200))
    transfer = result.transfer.set_index(["combination", "label_fraction"])
    low = transfer.loc[("A|encoder/at_once lr=0.01", 0.05)]
    assert (low["median"], low["q1"], low["q3"]) == (pytest.approx(0.25), pytest.approx(0.175), pytest.approx(0.325))
    assert transfer.loc[("A|encoder/at_once lr=0.001", 0.05), "rank"] == 1
    assert transfer.loc[("A|encoder/at_once lr=0.01", 0.05), "rank"] == 2
    assert pd.isna(transfer.loc[("supervised", 0.05), "rank"])
    # the main ranking keeps the lower validation loss (lr 0.001)
    assert result.ranking.iloc[0]["mean_dice"] == pytest.approx(0.55)
    again = transfer_summary(
        table.drop(columns=["lr"]).query("trial_id != 'a20.05' and trial_id != 'a20.25'"),
        result.ranking,
        result.fractions,
        AnalysisSettings(n_boot=200),
    )
    assert set(again["combination"]) == {"A|encoder/at_once", "supervised"} and np.isfinite(again["p"]).any()
