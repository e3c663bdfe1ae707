"""Paired differences against the baseline: which cells (label fraction x seed) pair, and what a pair is.

A cell is one label fraction and one seed. A strategy is paired with the baseline on the cells every
ranked strategy shares, so all are ranked on the same footing; one missing a cell that others have
(a failed trial, a seed not run yet) is flagged ``incomplete``. Within a cell, each unit (a test case
or a patient) gives one difference ``strategy - baseline``. Then:

- ``per_case`` (default): each unit's differences are averaged over the pooled fractions and the
  seeds, one pair per unit. The same case at 5 % and 50 % labels shares its difficulty, so its
  differences are not independent; one pair per case keeps the test's type-I error at its level.
- ``pooled``: the paper's protocol (P §2.8), one pair per unit and fraction (seeds averaged). Its
  pairs are correlated, so its p-values are too small; kept for reproducing the paper.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.analysis._settings import PAIRINGS
from study.errors import DataError

POOLED_CAVEAT = (
    "pairing pooled (the paper's protocol): the same test case at several label fractions counts "
    "as several pairs, which are correlated, so p-values are smaller than they should be"
)


@dataclass
class PairGroup:
    """Strategies that share the same paired units: ``d`` ``(S, n)`` differences, ``x`` and ``y``
    ``(S, n)`` the strategy's and the baseline's mean Dice behind each difference."""

    strategies: list[str]
    d: np.ndarray
    x: np.ndarray
    y: np.ndarray
    fractions: str
    seeds: str


@dataclass
class Pairing:
    """Every paired strategy of one data set. ``d`` ``(S, n)`` holds all strategies' differences on
    one set of columns (NaN where a pair is missing), for resampling them jointly; ``per_seed``
    ``(S, R, n)`` the per-case differences of each seed (``per_case`` only), for resampling seeds."""

    groups: list[PairGroup]
    strategies: list[str]
    d: np.ndarray
    per_seed: np.ndarray | None
    unpaired: list[str]  # no trial in any cell the baseline has
    incomplete: dict[str, str]  # strategy -> the cells it lacks that others have
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    shared: bool = True  # every strategy is paired on the same cells


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _cell_text(cells: set[tuple[float, int]]) -> str:
    return ", ".join(f"fraction {f:g} seed {s}" for f, s in sorted(cells, key=lambda c: (-c[0], c[1])))


def _mean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice is a missing pair: NaN
        return np.nanmean(a, axis=axis)


def pair_with_baseline(
    frame: pd.DataFrame, dataset: str, baseline: str, fractions: tuple[float, ...], pairing: str = "per_case"
) -> Pairing:
    """Pair each strategy with the baseline on the shared cells of ``fractions``.

    ``frame``: one data set's units per seed (columns strategy, label_fraction, seed, unit, dice).
    Raises :class:`DataError` when there is no baseline or no other strategy, when the strategies
    share no cell, or when a strategy lacks some of the baseline's test units in a cell (named).
    """
    if pairing not in PAIRINGS:
        raise DataError(f"pairing {pairing!r} must be one of {', '.join(PAIRINGS)}")
    names = sorted(set(frame["strategy"]) - {baseline})  # before filtering: an unpaired strategy is named
    frame = frame[frame["label_fraction"].isin(fractions)]
    is_base = frame["strategy"] == baseline
    base = frame[is_base]
    if base.empty:
        have = sorted(frame["strategy"].unique())
        raise DataError(
            f"data set {dataset}: no baseline {baseline!r} at label fraction(s) "
            f"{', '.join(f'{f:g}' for f in fractions)} (strategies: {_names(have)})"
        )
    if not names:
        raise DataError(f"data set {dataset}: only the baseline {baseline!r}, no strategy to compare")
    cells_of = {
        s: set(zip(f["label_fraction"].astype(float), f["seed"].astype(int)))
        for s, f in frame.groupby("strategy", sort=False)
    }
    base_cells = cells_of[baseline]
    present = {s: cells_of.get(s, set()) & base_cells for s in names}
    unpaired = [s for s in names if not present[s]]
    ranked = [s for s in names if present[s]]
    if not ranked:
        raise DataError(
            f"data set {dataset}: no strategy has a trial where the baseline has one ({_cell_text(base_cells)})"
        )
    union = set().union(*(present[s] for s in ranked))
    common = set.intersection(*(present[s] for s in ranked))
    incomplete = {s: _cell_text(union - present[s]) for s in ranked if present[s] != union}
    # No cell shared by all (e.g. stale trials of another seed analysed too): each strategy is
    # paired on the cells it has, and every one of them is flagged incomplete.
    cells = sorted(common or union, key=lambda c: (-c[0], c[1]))
    seeds = tuple(sorted({s for _, s in cells}))
    cell_fractions = tuple(sorted({f for f, _ in cells}, reverse=True))

    keys = pd.MultiIndex.from_arrays([base["label_fraction"].astype(float), base["seed"].astype(int), base["unit"]])
    if keys.has_duplicates:
        raise DataError(f"data set {dataset}: the baseline has a test case twice at one label fraction and seed")
    unit_names = list(dict.fromkeys(base["unit"]))
    unit_index = pd.Index(unit_names)
    cell_index = {c: i for i, c in enumerate(cells)}
    S, C, U = len(ranked), len(cells), len(unit_names)
    y = np.full((C, U), np.nan)
    in_base = np.zeros((C, U), dtype=bool)
    ci = np.array([cell_index.get(c, -1) for c in zip(base["label_fraction"].astype(float), base["seed"].astype(int))])
    ui = unit_index.get_indexer(base["unit"])
    ok = ci >= 0
    y[ci[ok], ui[ok]] = base["dice"].to_numpy()[ok]
    in_base[ci[ok], ui[ok]] = True

    others = frame[frame["strategy"].isin(ranked)]
    si = pd.Index(ranked).get_indexer(others["strategy"])
    ci = np.array(
        [cell_index.get(c, -1) for c in zip(others["label_fraction"].astype(float), others["seed"].astype(int))]
    )
    ui = unit_index.get_indexer(others["unit"])
    ok = (ci >= 0) & (ui >= 0)
    x = np.full((S, C, U), np.nan)
    have = np.zeros((S, C, U), dtype=bool)
    has_cell = np.array([[c in present[s] for c in cells] for s in ranked])
    x[si[ok], ci[ok], ui[ok]] = others["dice"].to_numpy()[ok]
    have[si[ok], ci[ok], ui[ok]] = True
    lacking = in_base[None] & ~have & has_cell[:, :, None]
    if lacking.any():
        s, c, u = (int(v[0]) for v in np.nonzero(lacking))
        where = np.flatnonzero(lacking[s].any(axis=0))
        f, seed = cells[c]
        raise DataError(
            f"data set {dataset}: strategy {ranked[s]!r} lacks {len(where)} of the baseline's test "
            f"case(s) at fraction {f:g} seed {seed}: {_names([unit_names[i] for i in where])}"
        )

    d = x - y[None]  # NaN where either Dice is NaN or the unit is not tested in the cell
    valid = ~np.isnan(d)
    xv, yv = np.where(valid, x, np.nan), np.where(valid, y[None], np.nan)
    cell_f = np.array([f for f, _ in cells])
    cell_s = np.array([s for _, s in cells])
    if pairing == "per_case":
        # Fractions first, then seeds: a seed's mean difference per case, averaged over seeds.
        per_seed = np.stack([_mean(d[:, cell_s == s], axis=1) for s in seeds], axis=1)  # (S, R, U)
        D, X, Y = _mean(per_seed, axis=1), _mean(xv, axis=1), _mean(yv, axis=1)
        columns_f = np.full(U, np.nan)
    else:
        per_seed = None
        parts = [(d[:, cell_f == f], xv[:, cell_f == f], yv[:, cell_f == f]) for f in cell_fractions]
        D = np.concatenate([_mean(p[0], axis=1) for p in parts], axis=1)  # (S, F*U)
        X = np.concatenate([_mean(p[1], axis=1) for p in parts], axis=1)
        Y = np.concatenate([_mean(p[2], axis=1) for p in parts], axis=1)
        columns_f = np.repeat(cell_fractions, U)
    groups: list[PairGroup] = []
    patterns, inverse = np.unique(~np.isnan(D), axis=0, return_inverse=True)
    seed_text = ",".join(str(s) for s in seeds)
    for g, pattern in enumerate(patterns):
        rows = np.flatnonzero(inverse.ravel() == g)
        if not pattern.any():
            continue
        if pairing == "pooled":
            frac = ",".join(f"{f:g}" for f in cell_fractions if pattern[columns_f == f].any())
        else:
            frac = ",".join(f"{f:g}" for f in cell_fractions)
        groups.append(
            PairGroup(
                [ranked[r] for r in rows],
                D[np.ix_(rows, pattern)],
                X[np.ix_(rows, pattern)],
                Y[np.ix_(rows, pattern)],
                frac,
                seed_text,
            )
        )
    return Pairing(groups, ranked, D, per_seed, unpaired, incomplete, cell_fractions, seeds, shared=bool(common))
