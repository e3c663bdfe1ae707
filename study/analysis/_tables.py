"""From the per-case table (one row per trial, test case and class) to paired units of analysis.

The unit is a test case, or a patient when a data set's cases are slices of fewer patients: slices
of one patient are correlated and would inflate n. Repeated seeds are averaged per unit for the
main ranking (a case counted twice is not two independent pairs); the per-seed rankings keep them
apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.errors import DataError

REQUIRED = ("dataset", "strategy", "label_fraction", "case_id", "class", "dice")
GROUP = ["dataset", "strategy", "label_fraction", "seed"]


def check_columns(table: pd.DataFrame, required: tuple[str, ...] = REQUIRED) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"per-case table lacks column(s) {', '.join(missing)}")


def normalise(table: pd.DataFrame) -> pd.DataFrame:
    """Defaults for optional columns: seed 0, subject = case, one trial per strategy and fraction."""
    check_columns(table)
    out = table.copy()
    if "seed" not in out:
        out["seed"] = 0
    if "subject_id" not in out:
        out["subject_id"] = out["case_id"]
    out["subject_id"] = out["subject_id"].fillna(out["case_id"])
    out["label_fraction"] = out["label_fraction"].astype(float).round(9)
    out["dice"] = out["dice"].astype(float)
    return out


def select_trials(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One trial per data set, strategy, label fraction and seed: the lowest validation loss.

    Several trials share these when a fine-tuning axis outside the strategy name (the learning
    rate) was searched; choosing on validation loss never looks at the test cases.
    """
    if "trial_id" not in table:
        return table, []
    trials = table.drop_duplicates("trial_id")
    per_key = trials.groupby(GROUP, sort=False)["trial_id"].transform("size")
    if (per_key <= 1).all():
        return table, []
    loss = trials["val_loss"] if "val_loss" in trials else pd.Series(np.nan, index=trials.index)
    ranked = trials.assign(_loss=loss.astype(float)).sort_values(["_loss", "trial_id"], na_position="last")
    keep = ranked.drop_duplicates(GROUP)["trial_id"]
    n_dropped = len(trials) - len(keep)
    note = (
        f"{n_dropped} trial(s) set aside: where several trials share data set, strategy, label "
        f"fraction and seed (e.g. a searched learning rate) the lowest validation loss is kept"
    )
    return table[table["trial_id"].isin(set(keep))], [note]


def case_dice(table: pd.DataFrame) -> pd.DataFrame:
    """Class-averaged Dice per trial and test case (NaN classes, absent from truth and prediction,
    are skipped; a case whose classes are all NaN stays NaN)."""
    keys = [*GROUP, "case_id", "subject_id"]
    return table.groupby(keys, sort=False, observed=True)["dice"].mean().reset_index()


def patient_level(cases: pd.DataFrame) -> pd.Series:
    """Per data set: whether its test cases are slices of fewer patients."""
    per = cases.groupby("dataset", sort=False).agg(cases=("case_id", "nunique"), subjects=("subject_id", "nunique"))
    return per["subjects"] < per["cases"]


def units(cases: pd.DataFrame, aggregate: str, by_seed: bool = False) -> tuple[pd.DataFrame, dict[str, str]]:
    """Dice per unit of analysis: columns dataset, strategy, label_fraction, [seed,] unit, dice.

    ``aggregate`` "case", "patient" or "auto" (patient where :func:`patient_level`). Returns the
    table and, per data set, which unit it used.
    """
    if aggregate == "auto":
        kind = {ds: "patient" if flag else "case" for ds, flag in patient_level(cases).items()}
    else:
        kind = {ds: aggregate for ds in cases["dataset"].unique()}
    use_patient = cases["dataset"].map(kind) == "patient"
    frame = cases.assign(unit=np.where(use_patient, cases["subject_id"], cases["case_id"]).astype(str))
    keys = [*GROUP, "unit"] if by_seed else ["dataset", "strategy", "label_fraction", "unit"]
    # Patients first, then seeds: the mean of a patient's slices per seed, averaged over seeds.
    per_seed = frame.groupby([*GROUP, "unit"], sort=False, observed=True)["dice"].mean()
    out = per_seed.groupby(level=keys, sort=False).mean().reset_index() if not by_seed else per_seed.reset_index()
    return out, kind
