"""The transfer study (P §2.6 design choices 1-3, Figure A1): which weights to transfer, how to
fine-tune them, and at which learning rates.

A combination is a strategy (pretraining plus transfer scope and schedule) together with its
fine-tuning learning rates. Per combination and label fraction: median and IQR of the per-unit
class-averaged Dice, and the combination's rank against the supervised baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.analysis._ranking import rank_dataset
from study.analysis._settings import AnalysisSettings
from study.analysis._tables import case_dice, normalise, select_trials, units
from study.design import axes as design_axes

LR_COLUMNS = design_axes.unit_columns()  # the learning rates that tell units apart


def configuration(strategy: str, *values: float | None) -> str:
    """A combination's label, ``<strategy> lr=<lr>[ unfrozen_lr=<lr>]`` (values in the order of
    :func:`study.design.axes.unit_columns`): what the transfer study ranks and what pruning judges and stops."""
    return design_axes.unit_name(strategy, dict(zip(LR_COLUMNS, values)))


def combination_labels(table: pd.DataFrame, baseline: str) -> pd.Series:
    """:func:`configuration` of each pretrained row; the baseline keeps its name."""
    # Labelled once per distinct (strategy, lr, unfrozen_lr), not once per case row.
    keys = pd.DataFrame({"strategy": table["strategy"].astype(str)}, index=table.index)
    for c in LR_COLUMNS:
        keys[c] = pd.to_numeric(table[c], errors="coerce") if c in table else np.nan
    distinct = keys.drop_duplicates()
    distinct = distinct.assign(
        label=[
            configuration(s, *(None if pd.isna(v) else float(v) for v in lrs))
            for s, *lrs in distinct.itertuples(index=False)
        ]
    )
    # merge matches NaN learning rates with NaN (a dict of tuples would not)
    label = pd.Series(
        keys.merge(distinct, how="left", on=list(keys.columns))["label"].to_numpy(), index=table.index, dtype=object
    )
    return label.where(table["strategy"] != baseline, baseline)


def transfer_summary(
    table: pd.DataFrame, ranking: pd.DataFrame, fractions: dict[str, tuple[float, ...]], settings: AnalysisSettings
) -> pd.DataFrame:
    """One row per data set, combination and label fraction (the baseline included, unranked).

    ``table``: the per-case table with every trial (before one trial per strategy is
    chosen). Where no strategy was tuned at several learning rates, rank and p are the main
    ranking's; otherwise the combinations are ranked among themselves the same way.
    """
    table = normalise(table)
    frame = table.assign(strategy=combination_labels(table, settings.baseline), _strategy=table["strategy"])
    design = frame.drop_duplicates("strategy").set_index("strategy")
    is_base = frame["strategy"] == settings.baseline
    base, _ = select_trials(frame[is_base])
    frame = pd.concat([base, frame[~is_base]])
    cases = case_dice(frame)
    per_unit, kind = units(cases, settings.aggregate)
    spread = (
        per_unit.groupby(["dataset", "strategy", "label_fraction"], sort=True)["dice"]
        .agg(n="count", median="median", q1=lambda s: s.quantile(0.25), q3=lambda s: s.quantile(0.75))
        .reset_index()
    )
    spread["iqr"] = spread["q3"] - spread["q1"]
    per_strategy = design.loc[spread["strategy"], "_strategy"].to_numpy()
    spread.insert(2, "base_strategy", per_strategy)
    for col in ("scope", "schedule", *LR_COLUMNS):
        if col in design:
            spread[col] = design.loc[spread["strategy"], col].to_numpy()
    one_each = (
        spread[spread["strategy"] != settings.baseline].groupby(["dataset", "base_strategy"])["strategy"].nunique() <= 1
    ).all()
    if one_each:
        ranks = ranking[["dataset", "strategy", "rank", "p"]].rename(columns={"strategy": "base_strategy"})
    else:
        seeded, _ = units(cases, settings.aggregate, by_seed=True)
        parts = [
            rank_dataset(f, str(ds), fractions[ds], settings, kind.get(ds, "case"), stream="transfer")[0]
            for ds, f in seeded.groupby("dataset", sort=True)
        ]
        ranks = pd.concat(parts)[["dataset", "strategy", "rank", "p"]]
    on = ["dataset", "base_strategy" if one_each else "strategy"]
    out = spread.merge(ranks, on=on, how="left").rename(columns={"strategy": "combination"})
    out.loc[out["combination"] == settings.baseline, ["rank", "p"]] = np.nan
    out["rank"] = out["rank"].astype("Int64")
    return out.sort_values(["dataset", "rank", "combination", "label_fraction"], na_position="last").reset_index(
        drop=True
    )
