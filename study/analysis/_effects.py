"""Which design axis matters: the marginal effect of each level of each axis, and their importance.

A strategy is a combination of levels (task, patch size, sampler, extent, scope, schedule, learning
rate); the ranking compares combinations. Here each axis is looked at on its own. For a level, every
pretrained trial with that level stands in for it: within a cell (label fraction, seed) its Dice per
unit is the mean over those trials, and it is paired with the baseline exactly as a strategy is
(``_pairing``: one pair per unit by default, its differences averaged over the pooled fractions and
seeds). The level's effect is the mean paired difference in Dice, with a percentile bootstrap
interval over the units. It is marginal: averaged over the study's other axes as the study sampled
them, so in a grid it is the main effect of a balanced design.

The importance of the axes is Optuna's fANOVA (``FanovaImportanceEvaluator``) over the trials, each
trial's value its mean paired difference from the baseline at its own cell: the share of the
variance of that value each axis explains.

Pure: pandas, numpy and Optuna's evaluator (an in-memory study), no Ray and no MLflow.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pandas as pd

from study.analysis._pairing import pair_with_baseline
from study.analysis._settings import AnalysisSettings
from study.analysis._stats import bootstrap_counts, percentile_ci
from study.analysis._tables import case_dice, select_trials, units
from study.errors import DataError

# The design axes a trial's record carries, as columns of the per-case table, in the order shown.
AXES = ("task", "patch_size", "sampler", "extent", "scope", "schedule", "lr")
AXIS_NAMES = {"task": "pretext task", "patch_size": "patch size K", "sampler": "sampler", "extent": "extent",
              "scope": "transfer scope", "schedule": "schedule", "lr": "fine-tuning lr"}
EFFECT_COLUMNS = ["dataset", "axis", "level", "n_trials", "n", "mean_diff", "ci_low", "ci_high", "positive",
                  "mean_dice", "mean_dice_baseline", "fractions", "seeds", "incomplete"]
IMPORTANCE_COLUMNS = ["dataset", "axis", "importance", "n_trials", "levels", "method"]
MAX_LEVELS = 6  # a sampled continuous axis has a level per trial: binned into quartiles beyond this


def _label(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _levels(values: pd.Series) -> pd.Series:
    """Each trial's level as text; a numeric axis with more than MAX_LEVELS values, by quartile."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and numeric.nunique() > MAX_LEVELS:
        bins = pd.qcut(numeric, 4, duplicates="drop")
        return bins.map(lambda b: f"[{b.left:.3g}, {b.right:.3g}]").astype(str)
    return values.map(_label)


def _order(levels: list[str]) -> list[str]:
    def key(level: str) -> tuple:
        try:
            return (0, float(level.strip("[").split(",")[0]), level)
        except ValueError:
            return (1, 0.0, level)
    return sorted(levels, key=key)


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(name.encode()) for name in names)])


def _boot_means(d: np.ndarray, settings: AnalysisSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each row's mean, resampling the columns (units) jointly."""
    counts = bootstrap_counts(d.shape[1], settings.n_boot, rng).astype(float)  # (B, n)
    boot = (d @ counts.T) / d.shape[1]  # (S, B)
    return percentile_ci(boot, settings.confidence)


def _axis_effects(levelled: pd.DataFrame, base: pd.DataFrame, axis: str, dataset: str, fractions: tuple[float, ...],
                  settings: AnalysisSettings) -> pd.DataFrame:
    frame = pd.concat([levelled.assign(strategy=levelled["_level"]), base])
    per_seed, _ = units(case_dice(frame), settings.aggregate, by_seed=True)
    pairing = pair_with_baseline(per_seed, dataset, settings.baseline, fractions, settings.pairing)
    rng = _rng(settings.seed, dataset, "effects", axis)
    trials = levelled.groupby("_level")["trial_id"].nunique()
    rows = []
    for group in pairing.groups:
        lo, hi = _boot_means(group.d, settings, rng)
        for i, level in enumerate(group.strategies):
            d = group.d[i]
            rows.append({"dataset": dataset, "axis": axis, "level": level, "n_trials": int(trials.get(level, 0)),
                         "n": d.size, "mean_diff": float(d.mean()), "ci_low": float(lo[i]), "ci_high": float(hi[i]),
                         "positive": float((d > 0).mean()), "mean_dice": float(group.x[i].mean()),
                         "mean_dice_baseline": float(group.y[i].mean()), "fractions": group.fractions,
                         "seeds": group.seeds, "incomplete": pairing.incomplete.get(level, "")})
    out = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    order = {level: i for i, level in enumerate(_order(list(out["level"])))}
    return out.sort_values("level", key=lambda s: s.map(order)).reset_index(drop=True)


def _trial_values(pretrained: pd.DataFrame, base: pd.DataFrame, settings: AnalysisSettings) -> pd.Series:
    """Each pretrained trial's mean paired difference from the baseline on its own cell."""
    keys = ["dataset", "label_fraction", "seed", "unit"]
    mine, _ = units(case_dice(pretrained.assign(strategy=pretrained["trial_id"])), settings.aggregate, by_seed=True)
    theirs, _ = units(case_dice(base), settings.aggregate, by_seed=True)
    paired = mine.merge(theirs[keys + ["dice"]], on=keys, suffixes=("", "_base"))
    paired["d"] = paired["dice"] - paired["dice_base"]
    return paired.groupby("strategy")["d"].mean()


def _importance(pretrained: pd.DataFrame, base: pd.DataFrame, axes: list[str], dataset: str,
                settings: AnalysisSettings) -> tuple[pd.DataFrame, str | None]:
    """fANOVA importance of ``axes`` for one data set, or the reason it cannot be computed."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    values = _trial_values(pretrained, base, settings)
    design = pretrained.drop_duplicates("trial_id").set_index("trial_id")
    design = design.loc[design.index.intersection(values.index)]
    if len(design) < 3:
        return pd.DataFrame(columns=IMPORTANCE_COLUMNS), f"{dataset}: {len(design)} pretrained trial(s) are too few for the axes' importance"
    if np.ptp(values.loc[design.index].to_numpy()) == 0:
        return pd.DataFrame(columns=IMPORTANCE_COLUMNS), f"{dataset}: every trial differs from the baseline alike; no axis explains anything"
    space = {a: CategoricalDistribution(_order(list(design[f"_{a}"].unique()))) for a in axes}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for trial_id, row in design.iterrows():
        study.add_trial(optuna.trial.create_trial(params={a: row[f"_{a}"] for a in axes}, distributions=space,
                                                  value=float(values[trial_id])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna flags its evaluators as experimental
        shares = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=settings.seed), normalize=True)
    rows = [{"dataset": dataset, "axis": a, "importance": float(shares.get(a, 0.0)), "n_trials": len(design),
             "levels": len(space[a].choices), "method": "fanova"} for a in axes]
    table = pd.DataFrame(rows, columns=IMPORTANCE_COLUMNS).sort_values("importance", ascending=False)
    return table.reset_index(drop=True), None


def design_effects(full: pd.DataFrame, selected: pd.DataFrame, fractions: dict[str, tuple[float, ...]],
                   settings: AnalysisSettings) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Per data set and axis the effect of each level (columns :data:`EFFECT_COLUMNS`), the axes'
    importance (:data:`IMPORTANCE_COLUMNS`) and notes.

    ``full``: the normalised per-case table of every trial (a learning rate searched beside a
    strategy counts at its own level); ``selected``: the trials the ranking uses, whose baseline
    (one per cell, chosen on validation loss) every level is paired with. An axis the study holds at
    one level has no effect to show and is left out.
    """
    if "trial_id" not in full:
        return pd.DataFrame(columns=EFFECT_COLUMNS), pd.DataFrame(columns=IMPORTANCE_COLUMNS), []
    effects, importance, notes = [], [], []
    for dataset, frame in full.groupby("dataset", sort=True):
        dataset = str(dataset)
        pooled = frame[frame["label_fraction"].isin(fractions.get(dataset, ()))]
        is_base = pooled["strategy"] == settings.baseline
        chosen = set(selected.loc[selected["dataset"] == dataset, "trial_id"])
        base, _ = select_trials(pooled[is_base & pooled["trial_id"].isin(chosen)])
        pretrained = pooled[~is_base]
        if base.empty or pretrained.empty:
            continue
        varied = [a for a in AXES if a in pretrained and pretrained[a].notna().all() and pretrained[a].nunique() > 1]
        for axis in varied:
            pretrained = pretrained.assign(**{f"_{axis}": _levels(pretrained[axis])})
            try:
                effects.append(_axis_effects(pretrained.assign(_level=pretrained[f"_{axis}"]), base, axis, dataset,
                                             fractions[dataset], settings))
            except DataError as exc:
                notes.append(f"design-axis effects, {dataset} {axis}: {exc}")
        if varied:
            table, why = _importance(pretrained, base, varied, dataset, settings)
            importance.append(table)
            if why:
                notes.append(why)
    effects_table = pd.concat(effects, ignore_index=True) if effects else pd.DataFrame(columns=EFFECT_COLUMNS)
    importance_table = (pd.concat([t for t in importance if not t.empty], ignore_index=True)
                        if any(not t.empty for t in importance) else pd.DataFrame(columns=IMPORTANCE_COLUMNS))
    return effects_table, importance_table, notes


CASE_COLUMNS = ["dataset", "strategy", "unit", "dice", "dice_baseline", "diff", "cells"]


def chosen_cases(selected: pd.DataFrame, chosen: dict[str, str], fractions: dict[str, tuple[float, ...]],
                 settings: AnalysisSettings) -> pd.DataFrame:
    """Per data set, each unit's Dice under the chosen strategy and the baseline and their
    difference (averaged over the pooled fractions and seeds, the cells both have), largest gain
    first: where the strategy helps most and where it hurts."""
    per_seed, _ = units(case_dice(selected), settings.aggregate, by_seed=True)
    keys = ["label_fraction", "seed", "unit"]
    parts = []
    for dataset, strategy in sorted(chosen.items()):
        frame = per_seed[(per_seed["dataset"] == dataset) & per_seed["label_fraction"].isin(fractions.get(dataset, ()))]
        mine = frame[frame["strategy"] == strategy]
        base = frame[frame["strategy"] == settings.baseline]
        paired = mine.merge(base[keys + ["dice"]], on=keys, suffixes=("", "_baseline")).dropna(subset=["dice", "dice_baseline"])
        if paired.empty:
            continue
        paired["diff"] = paired["dice"] - paired["dice_baseline"]
        # Fractions within a seed first, then seeds, as the per-case pairing averages them.
        per_unit = (paired.groupby(["seed", "unit"])[["dice", "dice_baseline", "diff"]].mean()
                    .groupby(level="unit").mean())
        per_unit["cells"] = paired.groupby("unit").size()
        per_unit = per_unit.reset_index().assign(dataset=dataset, strategy=strategy)
        parts.append(per_unit.sort_values(["diff", "unit"], ascending=[False, True])[CASE_COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CASE_COLUMNS)
