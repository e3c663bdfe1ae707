"""Dice beside the boundary metrics (NSD, HD95) per class, for the chosen strategy and the baseline:
what the report shows of the per-case table's boundary columns (docs/per-case-table.md)."""

from __future__ import annotations

import pandas as pd

COLUMNS = [
    "dataset",
    "strategy",
    "label_fraction",
    "class",
    "n_cases",
    "dice",
    "nsd",
    "nsd_tol_mm",
    "hd95",
    "hd95_median",
]


def boundary_summary(table: pd.DataFrame, chosen: dict[str, str], baseline: str) -> pd.DataFrame:
    """Per data set, strategy (the chosen one and the baseline), label fraction and class: the mean
    Dice, NSD (at its tolerance, mm) and HD95 (mm, mean and median) over the test cases where the class
    is present in truth or prediction (NaN rows skipped, as in every class mean). Empty when the
    tables carry no boundary columns (trials run before they were recorded)."""
    if not {"nsd", "hd95"} <= set(table.columns) or table["nsd"].isna().all():
        return pd.DataFrame(columns=COLUMNS)
    keep = table[[s in (chosen.get(str(d)), baseline) for d, s in zip(table["dataset"], table["strategy"])]]
    if keep.empty:
        return pd.DataFrame(columns=COLUMNS)
    tol = keep["nsd_tol_mm"] if "nsd_tol_mm" in keep else pd.Series(float("nan"), index=keep.index)
    frame = keep.assign(nsd_tol_mm=tol)
    out = (
        frame.groupby(["dataset", "strategy", "label_fraction", "class"], sort=True)
        .agg(
            n_cases=("case_id", "nunique"),
            dice=("dice", "mean"),
            nsd=("nsd", "mean"),
            nsd_tol_mm=("nsd_tol_mm", "max"),
            hd95=("hd95", "mean"),
            hd95_median=("hd95", "median"),
        )
        .reset_index()
    )
    return out[COLUMNS]
