"""What segmentation errors mean for clinical measurements (P §2.7, Figures 6 and 7).

The per-case table carries a signed percent error ``{metric}_pct_err`` = 100 (pred - true) / true
per case and class (MRI: ``t2_ms``, ``volume_ml``; CT: ``area_cm2``, ``mean_hu``). Two views:

- :func:`clinical_summary`: per data set, class and label fraction, the median signed error of the
  chosen strategy and of the baseline (a bias that averages out in a mean would show here);
- :func:`clinical_cases`: per test case, the baseline's and the strategy's absolute error averaged
  over classes and the label-limited fractions, the pairs the paper scatters.
"""

from __future__ import annotations

import pandas as pd

SUFFIX = "_pct_err"


def clinical_metrics(table: pd.DataFrame) -> list[str]:
    return [c[: -len(SUFFIX)] for c in table.columns if c.endswith(SUFFIX)]


def _arms(table: pd.DataFrame, chosen: dict[str, str], baseline: str) -> pd.DataFrame:
    """Rows of each data set's chosen strategy (arm "strategy") and baseline (arm "baseline")."""
    pick = table["dataset"].map(chosen)
    arm = pd.Series(pd.NA, index=table.index, dtype="object")
    arm[table["strategy"] == pick] = "strategy"
    arm[table["strategy"] == baseline] = "baseline"
    return table.assign(arm=arm, chosen=pick).dropna(subset=["arm"])


def clinical_summary(table: pd.DataFrame, chosen: dict[str, str], baseline: str) -> pd.DataFrame:
    """Median signed percent error per data set, class, label fraction and metric, for the chosen
    strategy and the baseline (NaN errors, e.g. a class absent from the truth, are left out)."""
    metrics = clinical_metrics(table)
    if not metrics or not chosen:
        return pd.DataFrame()
    frame = _arms(table, chosen, baseline)
    long = frame.melt(
        id_vars=["dataset", "class", "label_fraction", "arm", "chosen"],
        value_vars=[m + SUFFIX for m in metrics],
        var_name="metric",
        value_name="pct_err",
    )
    long["metric"] = long["metric"].str.removesuffix(SUFFIX)
    long = long.dropna(subset=["pct_err"])
    if long.empty:
        return pd.DataFrame()
    stats = (
        long.groupby(["dataset", "class", "label_fraction", "metric", "chosen", "arm"], sort=True)["pct_err"]
        .agg(["median", "size"])
        .unstack("arm")
    )
    stats.columns = [f"{'median_pct_err' if s == 'median' else 'n'}_{arm}" for s, arm in stats.columns]
    out = stats.reset_index().rename(columns={"chosen": "strategy"})
    for arm in ("strategy", "baseline"):
        for col in (f"median_pct_err_{arm}", f"n_{arm}"):
            if col not in out:
                out[col] = float("nan")
    return out[
        [
            "dataset",
            "class",
            "label_fraction",
            "metric",
            "strategy",
            "median_pct_err_strategy",
            "median_pct_err_baseline",
            "n_strategy",
            "n_baseline",
        ]
    ]


def clinical_cases(
    table: pd.DataFrame, chosen: dict[str, str], baseline: str, fractions: dict[str, tuple[float, ...]]
) -> pd.DataFrame:
    """Per data set, test case and metric: the baseline's and the chosen strategy's absolute percent
    error, each averaged over classes, the pooled label-limited fractions and seeds."""
    metrics = clinical_metrics(table)
    if not metrics or not chosen:
        return pd.DataFrame()
    frame = _arms(table, chosen, baseline)
    frame = frame[[f in fractions.get(ds, ()) for ds, f in zip(frame["dataset"], frame["label_fraction"])]]
    long = frame.melt(
        id_vars=["dataset", "case_id", "subject_id", "arm", "chosen"],
        value_vars=[m + SUFFIX for m in metrics],
        var_name="metric",
        value_name="pct_err",
    )
    long["metric"] = long["metric"].str.removesuffix(SUFFIX)
    long["abs_pct_err"] = long["pct_err"].abs()
    wide = (
        long.groupby(["dataset", "case_id", "subject_id", "metric", "chosen", "arm"], sort=True)["abs_pct_err"]
        .mean()
        .unstack("arm")
    )
    for arm in ("strategy", "baseline"):
        if arm not in wide:
            wide[arm] = float("nan")
    out = wide.reset_index().rename(
        columns={"chosen": "strategy", "baseline": "baseline_abs_pct_err", "strategy": "strategy_abs_pct_err"}
    )
    return out[
        ["dataset", "case_id", "subject_id", "metric", "strategy", "baseline_abs_pct_err", "strategy_abs_pct_err"]
    ].dropna(subset=["baseline_abs_pct_err", "strategy_abs_pct_err"], how="all")
