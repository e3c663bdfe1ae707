"""Which design axis matters: the effect of each level of each axis, and each axis's importance
beside its distribution under the null.

A strategy is a combination of levels (task, patch size, sampler, extent, scope, schedule); the
fine-tuning learning rate is searched beside it, and the ranking keeps, per strategy and cell (label
fraction, seed), the trial of lowest validation loss (``select_trials``). The effects compare like
with like, never mixing a rate that cannot learn into a pretraining axis:

- a level of any axis but the learning rate stands for the strategies with that level, each at its
  selected learning rate (the trials the ranking uses), paired with the baseline at its selected
  learning rate;
- a learning rate stands for every pretrained trial at that rate, paired with the baseline's trials
  at the same rate.

Within a cell a level's Dice per unit is the mean over its trials, and it is paired with its
baseline as a strategy is (``_pairing``: one pair per unit by default). Its effect is the mean paired
difference in Dice with a percentile bootstrap interval that resamples units and, with several seeds
(``per_case``), seeds. It is marginal, averaged over the study's other axes as the study ran them: a
level that lacks configurations other levels of its axis have (stopped by pruning, failed, or never
drawn by a sampled search) averages the rest only, and ``missing`` counts them.

Importance: over the same strategies, each one's value its mean paired difference from the baseline,
an axis's importance is eta squared, the share of the values' sum of squares between its level means.
Its null is the same share with the values shuffled across strategies (``n_boot`` permutations); the
permutation p is Holm-adjusted over the axes, and an axis is ``important`` at Holm p <= alpha.

Pure: pandas and numpy, no Ray, MLflow or Optuna.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from study.analysis._pairing import PairGroup, Pairing, pair_with_baseline
from study.analysis._settings import AnalysisSettings
from study.analysis._stats import bootstrap_counts, holm, percentile_ci
from study.analysis._tables import case_dice, units
from study.design import axes as design_axes
from study.errors import DataError

# The design axes whose effects are shown (study.design.axes), as columns of the per-case table, in the order
# declared; an axis the baseline is trained at each value of (the lr) is compared at the same value.
AXES = tuple(a.flat for a in design_axes.AXES if a.effect)
AXIS_NAMES = {a.flat: a.title for a in design_axes.AXES}
_TUNED = {a.flat for a in design_axes.AXES if a.baseline == design_axes.TUNED}
EFFECT_COLUMNS = [
    "dataset",
    "axis",
    "level",
    "n_trials",
    "n",
    "mean_diff",
    "ci_low",
    "ci_high",
    "positive",
    "mean_dice",
    "mean_dice_baseline",
    "baseline_at",
    "n_strategies",
    "missing",
    "fractions",
    "seeds",
    "resampled",
    "incomplete",
]
IMPORTANCE_COLUMNS = [
    "dataset",
    "axis",
    "importance",
    "null_mean",
    "null_high",
    "p",
    "p_holm",
    "important",
    "n_strategies",
    "levels",
    "n_perm",
    "method",
]
MAX_LEVELS = 6  # a sampled continuous axis has a level per trial: binned into quartiles beyond this
SELECTED, SAME = "selected_lr", "same_lr"  # which baseline trials a level is paired with


def _label(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _levels(values: pd.Series, reference: pd.Series | None = None) -> pd.Series:
    """Each trial's level as text; a numeric axis with more than MAX_LEVELS values in ``reference``
    (default ``values``) by the quartiles of ``reference``, NaN outside them."""
    reference = values if reference is None else reference
    numeric = pd.to_numeric(reference, errors="coerce")
    if numeric.notna().all() and numeric.nunique() > MAX_LEVELS:
        edges = np.unique(np.quantile(numeric, [0, 0.25, 0.5, 0.75, 1]))
        labels = [f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(edges[:-1], edges[1:])]
        return pd.cut(pd.to_numeric(values, errors="coerce"), edges, labels=labels, include_lowest=True).astype(object)
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


def _varies(trials: pd.DataFrame, axis: str) -> bool:
    return axis in trials and trials[axis].notna().all() and trials[axis].nunique() > 1


def _boot_means(
    pairing: Pairing, group: PairGroup, settings: AnalysisSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, str]:
    """Percentile interval of each level's mean difference. Units are drawn with replacement, the
    same for every level; with several seeds (``per_case``) seeds are drawn too and each unit's
    difference is its mean over the drawn seeds, so the interval carries seed variance as the
    ranking's P(top-k) does."""
    rows = [pairing.strategies.index(s) for s in group.strategies]
    columns = ~np.isnan(pairing.d[rows[0]])
    n, B = int(columns.sum()), settings.n_boot
    if pairing.per_seed is not None and pairing.per_seed.shape[1] > 1:
        per_seed = pairing.per_seed[rows][:, :, columns]  # (S, R, n)
        w = bootstrap_counts(per_seed.shape[1], B, rng).astype(float)  # (B, R)
        with np.errstate(invalid="ignore", divide="ignore"):  # drawn seeds that all lack a unit: NaN
            d = np.einsum("br,srn->sbn", w, np.nan_to_num(per_seed)) / np.einsum(
                "br,srn->sbn", w, (~np.isnan(per_seed)).astype(float)
            )
        resampled = "units, seeds"
    else:
        d, resampled = np.broadcast_to(group.d[:, None, :], (len(rows), B, n)), "units"
    counts = bootstrap_counts(n, B, rng).astype(float)[None]  # (1, B, n)
    seen = ~np.isnan(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (np.where(seen, d, 0.0) * counts).sum(axis=2) / (seen * counts).sum(axis=2)
    lo, hi = percentile_ci(boot, settings.confidence)
    return lo, hi, resampled


def _trial_units(pooled: pd.DataFrame, settings: AnalysisSettings) -> pd.DataFrame:
    """Dice per trial, cell and unit (column ``trial_id`` for the strategy), once per data set:
    every level below is a mean of these."""
    per_seed, _ = units(case_dice(pooled.assign(strategy=pooled["trial_id"])), settings.aggregate, by_seed=True)
    return per_seed.rename(columns={"strategy": "trial_id"})


def _named_units(per_trial: pd.DataFrame, names: pd.Series) -> pd.DataFrame:
    """Per name (``names``: trial id -> a level or strategy), the mean Dice of its trials per cell and unit."""
    rows = per_trial[per_trial["trial_id"].isin(names.index)]
    keys = ["dataset", "strategy", "label_fraction", "seed", "unit"]
    return rows.assign(strategy=rows["trial_id"].map(names)).groupby(keys, sort=False)["dice"].mean().reset_index()


def _with_baseline(named: pd.Series, base: pd.DataFrame, baseline: str) -> pd.Series:
    return pd.concat([named, pd.Series(baseline, index=base["trial_id"].to_numpy())])


def _paired_rows(
    levelled: pd.DataFrame,
    base: pd.DataFrame,
    per_trial: pd.DataFrame,
    dataset: str,
    fractions: tuple[float, ...],
    settings: AnalysisSettings,
    rng: np.random.Generator,
) -> list[dict]:
    """Each level of ``levelled`` (trials with a ``_level``) paired with the ``base`` trials: one row each."""
    names = _with_baseline(levelled.set_index("trial_id")["_level"], base, settings.baseline)
    pairing = pair_with_baseline(
        _named_units(per_trial, names), dataset, settings.baseline, fractions, settings.pairing
    )
    rows = []
    for group in pairing.groups:
        lo, hi, resampled = _boot_means(pairing, group, settings, rng)
        for i, level in enumerate(group.strategies):
            d = group.d[i]
            rows.append(
                {
                    "level": level,
                    "n": d.size,
                    "mean_diff": float(d.mean()),
                    "ci_low": float(lo[i]),
                    "ci_high": float(hi[i]),
                    "positive": float((d > 0).mean()),
                    "mean_dice": float(group.x[i].mean()),
                    "mean_dice_baseline": float(group.y[i].mean()),
                    "fractions": group.fractions,
                    "seeds": group.seeds,
                    "resampled": resampled,
                    "incomplete": pairing.incomplete.get(level, ""),
                }
            )
    return rows


def _missing(trials: pd.DataFrame, unit: list[str]) -> dict[str, list[str]]:
    """Per level (``_level``), the configurations (values of ``unit``: the columns that tell one
    apart within a level) that some other level of the axis has and this one lacks."""
    have: dict[str, set[tuple[str, ...]]] = {}
    for level, *config in zip(trials["_level"], *(trials[c].map(_label) for c in unit)):
        have.setdefault(level, set()).add(tuple(config))
    every = set().union(*have.values())
    return {level: sorted(" ".join(c) for c in every - mine) for level, mine in have.items()}


def _rows_table(
    rows: list[dict], trials: pd.DataFrame, missing: dict[str, list[str]], dataset: str, axis: str, baseline_at: str
) -> pd.DataFrame:
    def count(column: str, level: str) -> int:
        return len(set(trials[column][trials["_level"] == level]))

    order = {level: i for i, level in enumerate(_order([r["level"] for r in rows]))}
    rows = [
        {
            **r,
            "dataset": dataset,
            "axis": axis,
            "baseline_at": baseline_at,
            "n_trials": count("trial_id", r["level"]),
            "n_strategies": count("strategy", r["level"]),
            "missing": len(missing.get(r["level"], [])),
        }
        for r in sorted(rows, key=lambda r: order[r["level"]])
    ]
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _axis_effects(
    ranked: pd.DataFrame,
    base: pd.DataFrame,
    per_trial: pd.DataFrame,
    axis: str,
    others: list[str],
    dataset: str,
    fractions: tuple[float, ...],
    settings: AnalysisSettings,
) -> tuple[pd.DataFrame, dict]:
    """A pretraining or transfer axis: its strategies at their selected lr, against the baseline at its."""
    ranked = ranked.assign(_level=_levels(ranked[axis]))
    rng = _rng(settings.seed, dataset, "effects", axis)
    rows = _paired_rows(ranked, base, per_trial, dataset, fractions, settings, rng)
    missing = _missing(ranked, others) if others else {}
    return _rows_table(rows, ranked, missing, dataset, axis, SELECTED), missing


def _lr_effects(
    every: pd.DataFrame,
    baselines: pd.DataFrame,
    per_trial: pd.DataFrame,
    dataset: str,
    fractions: tuple[float, ...],
    settings: AnalysisSettings,
) -> tuple[pd.DataFrame, dict, list[str]]:
    """The learning rate: every pretrained trial at a rate against the baseline's trials at that rate."""
    every = every.assign(_level=_levels(every["lr"]))
    baselines = baselines.assign(_level=_levels(baselines["lr"], every["lr"]))
    rng = _rng(settings.seed, dataset, "effects", "lr")
    rows, notes = [], []
    for level in _order(list(every["_level"].unique())):
        base = baselines[baselines["_level"] == level]
        if base.empty:
            notes.append(
                f"design-axis effects, {dataset} lr {level}: the baseline has no trial at this rate; "
                f"left out (a rate is compared with the baseline at the same rate only)"
            )
            continue
        try:
            rows += _paired_rows(every[every["_level"] == level], base, per_trial, dataset, fractions, settings, rng)
        except DataError as exc:
            notes.append(f"design-axis effects, {dataset} lr {level}: {exc}")
    if not rows:
        return pd.DataFrame(columns=EFFECT_COLUMNS), {}, notes
    missing = _missing(every, ["strategy"])
    return _rows_table(rows, every, missing, dataset, "lr", SAME), missing, notes


def _missing_notes(dataset: str, missing: dict[str, dict[str, list[str]]], shown: int = 6) -> list[str]:
    lacking = [
        f"{AXIS_NAMES.get(axis, axis)} {level} lacks {len(m)} ({', '.join(m[:2])}{', ...' if len(m) > 2 else ''})"
        for axis, levels in missing.items()
        for level, m in levels.items()
        if m
    ]
    if not lacking:
        return []
    more = f"; and {len(lacking) - shown} more" if len(lacking) > shown else ""
    return [
        f"design-axis effects, {dataset}: a level without every configuration the other levels of its axis have "
        f"(stopped by pruning, failed, or not drawn by a sampled search) averages the rest only (effects.csv "
        f"missing): {'; '.join(lacking[:shown])}{more}"
    ]


def _strategy_values(
    ranked: pd.DataFrame, base: pd.DataFrame, per_trial: pd.DataFrame, settings: AnalysisSettings
) -> pd.Series:
    """Each strategy's mean paired difference from the baseline (its selected trials, as ranked),
    over the cells every strategy has (each its own when they share none)."""
    keys = ["dataset", "label_fraction", "seed", "unit"]
    named = _named_units(per_trial, _with_baseline(ranked.set_index("trial_id")["strategy"], base, settings.baseline))
    is_base = named["strategy"] == settings.baseline
    mine, theirs = named[~is_base], named[is_base]
    paired = mine.merge(theirs[keys + ["dice"]], on=keys, suffixes=("", "_base"))
    paired["d"] = paired["dice"] - paired["dice_base"]
    cells = paired.groupby(["strategy", "label_fraction", "seed"])["d"].mean().unstack(["label_fraction", "seed"])
    shared = cells.dropna(axis=1)
    return (shared if shared.shape[1] else cells).mean(axis=1).dropna()


def _eta_squared(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Eta squared of each row of ``values`` (..., N) for the level index ``groups`` (N,): the share
    of the sum of squares about the mean that lies between the level means."""
    onehot = np.eye(groups.max() + 1)[groups]  # (N, L)
    centred = values - values.mean(axis=-1, keepdims=True)
    between = ((centred @ onehot) ** 2 / onehot.sum(axis=0)).sum(axis=-1)
    return between / (centred**2).sum(axis=-1)


def _importance(
    values: pd.Series, design: pd.DataFrame, axes: list[str], dataset: str, settings: AnalysisSettings
) -> tuple[pd.DataFrame, str | None]:
    """Each axis's eta squared over the strategies' values, its permutation null and Holm p, or
    the reason it cannot be computed.

    The null shuffles the values across strategies: under it no axis matters, so the same
    shuffles serve every axis and Holm keeps the chance of calling any axis important at alpha.
    An axis with no effect beside one with a large effect is tested conservatively (its share
    shrinks as the other takes the variance)."""
    empty = pd.DataFrame(columns=IMPORTANCE_COLUMNS)
    if len(values) < 3:
        return empty, f"{dataset}: {len(values)} pretrained strategy(ies) are too few for the axes' importance"
    v = values.to_numpy(dtype=float)
    if np.ptp(v) == 0:
        return empty, f"{dataset}: every strategy differs from the baseline alike; no axis explains anything"
    rng = _rng(settings.seed, dataset, "importance")
    shuffled = v[np.argsort(rng.random((settings.n_boot, v.size)), axis=1)]
    rows = []
    for axis in axes:
        groups = pd.factorize(design.loc[values.index, axis].astype(str))[0]
        observed, null = float(_eta_squared(v, groups)), _eta_squared(shuffled, groups)
        rows.append(
            {
                "dataset": dataset,
                "axis": axis,
                "importance": observed,
                "null_mean": float(null.mean()),
                "null_high": float(np.quantile(null, 1 - settings.alpha)),
                "p": (1 + int(np.sum(null >= observed - 1e-12))) / (settings.n_boot + 1),
                "n_strategies": v.size,
                "levels": int(groups.max() + 1),
                "n_perm": settings.n_boot,
                "method": "eta2, permutation",
            }
        )
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"].to_numpy())
    table["important"] = table["p_holm"] <= settings.alpha
    return table[IMPORTANCE_COLUMNS].sort_values("importance", ascending=False).reset_index(drop=True), None


def design_effects(
    full: pd.DataFrame, selected: pd.DataFrame, fractions: dict[str, tuple[float, ...]], settings: AnalysisSettings
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Per data set and axis the effect of each level (columns :data:`EFFECT_COLUMNS`), the axes'
    importance (:data:`IMPORTANCE_COLUMNS`) and notes.

    ``full``: the normalised per-case table of every trial; ``selected``: the trials the ranking uses
    (one per strategy and cell, its learning rate chosen on validation loss). Every axis but the
    learning rate, and the importance, use the selected trials against the selected baseline; the
    learning rate compares each rate's trials with the baseline at the same rate. An axis the study
    holds at one level has no effect to show and is left out.
    """
    if "trial_id" not in full:
        return pd.DataFrame(columns=EFFECT_COLUMNS), pd.DataFrame(columns=IMPORTANCE_COLUMNS), []
    effects, importance, notes = [], [], []
    for dataset, frame in full.groupby("dataset", sort=True):
        dataset = str(dataset)
        pooled = frame[frame["label_fraction"].isin(fractions.get(dataset, ()))]
        trials = pooled.drop_duplicates("trial_id")
        is_base = trials["strategy"] == settings.baseline
        chosen = trials["trial_id"].isin(set(selected.loc[selected["dataset"] == dataset, "trial_id"]))
        base, ranked, every = trials[is_base & chosen], trials[~is_base & chosen], trials[~is_base]
        if base.empty or ranked.empty:
            continue
        per_trial = _trial_units(pooled, settings)
        varied = [a for a in AXES if a not in _TUNED and _varies(ranked, a)]
        missing: dict[str, dict[str, list[str]]] = {}
        for axis in varied:
            try:
                table, missing[axis] = _axis_effects(
                    ranked,
                    base,
                    per_trial,
                    axis,
                    [a for a in varied if a != axis],
                    dataset,
                    fractions[dataset],
                    settings,
                )
                effects.append(table)
            except DataError as exc:
                notes.append(f"design-axis effects, {dataset} {axis}: {exc}")
        if _varies(every, "lr"):
            table, missing["lr"], more = _lr_effects(
                every, trials[is_base], per_trial, dataset, fractions[dataset], settings
            )
            effects.append(table)
            notes += more
        notes += _missing_notes(dataset, missing)
        if varied:
            values = _strategy_values(ranked, base, per_trial, settings)
            table, why = _importance(
                values, ranked.drop_duplicates("strategy").set_index("strategy"), varied, dataset, settings
            )
            importance.append(table)
            notes += [why] if why else []
    return _stack(effects, EFFECT_COLUMNS), _stack(importance, IMPORTANCE_COLUMNS), notes


def _stack(tables: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    tables = [t for t in tables if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)


CASE_COLUMNS = ["dataset", "strategy", "unit", "dice", "dice_baseline", "diff", "cells"]


def chosen_cases(
    selected: pd.DataFrame, chosen: dict[str, str], fractions: dict[str, tuple[float, ...]], settings: AnalysisSettings
) -> pd.DataFrame:
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
        paired = mine.merge(base[keys + ["dice"]], on=keys, suffixes=("", "_baseline")).dropna(
            subset=["dice", "dice_baseline"]
        )
        if paired.empty:
            continue
        paired["diff"] = paired["dice"] - paired["dice_baseline"]
        # Fractions within a seed first, then seeds, as the per-case pairing averages them.
        per_unit = (
            paired.groupby(["seed", "unit"])[["dice", "dice_baseline", "diff"]].mean().groupby(level="unit").mean()
        )
        per_unit["cells"] = paired.groupby("unit").size()
        per_unit = per_unit.reset_index().assign(dataset=dataset, strategy=strategy)
        parts.append(per_unit.sort_values(["diff", "unit"], ascending=[False, True])[CASE_COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CASE_COLUMNS)
