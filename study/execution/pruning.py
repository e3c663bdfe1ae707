"""Statistical early stopping of a paired design study: which configurations to stop at a rung.

At each rung (a fraction of the fine-tuning budget) every trial of a data set pauses; once all of
them have reached it, every configuration's **validation** Dice (never test) is compared with every
other configuration's on the same patients: for each ordered pair, a one-sided Wilcoxon signed-rank
test of "j is better than i". The hypothesis "no configuration is better than i" gets i's smallest
p times the number of its comparators (Bonferroni), and Holm corrects over the configurations
tested at the rung, as the analysis's best set does (``study.analysis._best``). A configuration is
stopped when that hypothesis is rejected at the corrected level, most significant first, while at
least ``min_survivors`` strategies keep a configuration running. The supervised baseline (at every
learning rate) is a comparator but is never tested and never stopped.

The guarantee, per rung: the chance of stopping any configuration that is as good as the best
(against it, every other configuration's per-patient differences are symmetric about zero or
shifted downwards) is at most ``alpha``, whatever configuration happens to lead on these data:
every such stop rejects a true hypothesis of the Holm family, each of whose p-values is valid
(Bonferroni over its comparators), and Holm controls the family-wise error in the strong sense;
``min_survivors`` only takes stops away. ``tests/analysis/test_claims_pruning.py``
measures it: 15 equal configurations, 20 correlated validation patients, 1,000 simulated rungs,
some configuration stopped in 3.1 % of them (the leader rule this replaced: 27 %). It does not
promise anything across rungs (with r rungs the chance is at most r x ``alpha``); that a
configuration stopped at a rung would still have been worse at the end of its budget (a late
bloomer is lost); anything about test cases; that patients are independent (it assumes so); or
that a worse configuration is stopped (power needs patients: with n of them no p is below 1/2^n,
and Holm multiplies the smallest by the number of tests).

What is judged is a *configuration* (:func:`study.analysis.configuration`): a strategy at its
fine-tuning learning rates. The unit is a patient, as in the analysis: a trial's per-case values
become per-patient means first (CT slices of one volume are one patient), and a trial's rung file
names each case's subject. Each pair is compared on the cells (label fraction x seed) both
configurations have, the analysis's pooled fractions only, averaged over fractions then seeds per
patient, so a configuration whose 5 % trial failed is compared on its other cells, never over
unlike ones. Stopping a configuration stops every trial of it on that data set (every fraction), and
the stopped ones are listed apart. Decisions depend only on the values, never on which trial
finished first: a rung is decided when the last trial of the data set reaches it.

Pure functions; the Tune searcher that pauses and resumes trials is ``study.execution.rung_search``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from study.analysis import holm, wilcoxon_greater

Cell = tuple[float, int]  # (label fraction, seed): one trial of a configuration
TEST = (
    "one-sided Wilcoxon signed-rank, comparator > configuration, per validation patient (case where no "
    "subject is known), on the cells both have; 'no configuration is better' by the smallest p times the "
    "comparators, Holm over the configurations tested at the rung"
)
_RENAMED = {"leader": "comparator", "leader_dice": "comparator_dice"}  # decision files of the leader rule
_FLOATS = ("p", "p_holm", "mean_dice", "comparator_dice")


@dataclass(frozen=True)
class Decision:
    """One configuration's tests at one rung, summarised by the comparator most significantly
    better than it: its p, the Holm p of "no configuration is better" over the ``m`` configurations
    tested at the rung, the ``n`` patients (or cases)
    of that pair and both mean Dice on them; ``stopped`` when that Holm p reached alpha and
    ``min_survivors`` allowed it. ``strategy`` is the configuration (the name decision files use)."""

    dataset: str
    rung: int
    strategy: str
    comparator: str
    n: int
    mean_dice: float
    comparator_dice: float
    p: float
    p_holm: float
    stopped: bool
    m: int | None = None  # None: a decision of the leader rule (older study folders)
    unit: str = "case"
    test: str = TEST

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @staticmethod
    def from_json(d: dict) -> Decision:
        """Reads this rule's files and the leader rule's (``leader``, ``leader_dice``, their own
        ``test`` text), so a study folder written before keeps its decisions on resume."""
        d = {_RENAMED.get(k, k): v for k, v in d.items()}
        return Decision(**{k: (math.nan if v is None and k in _FLOATS else v) for k, v in d.items()})

    def reason(self, epoch: int) -> str:
        family = f" over {self.m} configurations" if self.m else ""
        return (
            f"stopped at rung {self.rung + 1} (epoch {epoch}): worse than {self.comparator} on {self.n} "
            f"validation {self.unit}s, Holm p = {self.p_holm:.3g}{family} (mean Dice {self.mean_dice:.3f} vs "
            f"{self.comparator_dice:.3f})"
        )


def rung_epochs(rungs: tuple[float, ...] | list[float], max_epochs: int) -> list[int]:
    """The total fine-tuning epoch at which each rung pauses the trials (at least 1, increasing)."""
    out: list[int] = []
    for r in rungs:
        e = max(1, math.ceil(r * max_epochs))
        if e < max_epochs and (not out or e > out[-1]):
            out.append(e)
    return out


# -- values: trials -> configuration x cell x patient ------------------------------------------


def unit_values(
    per_trial: Mapping[str, Mapping[str, float]],
    *,
    configuration_of: Mapping[str, str],
    cell_of: Mapping[str, Cell],
    subject_of: Mapping[str, str],
) -> tuple[dict, str]:
    """(configuration -> {cell: {unit: Dice}}, the unit: "patient" or "case").

    ``per_trial``: trial -> {validation case: Dice}; ``subject_of``: case -> subject, a case not in
    it is its own subject (rung files written before subjects were recorded). A unit is a patient
    (the mean of its cases, NaN cases skipped as the analysis's means skip them) wherever some
    subject has several cases; two trials of one configuration in one cell are averaged.
    """
    cases = {c for v in per_trial.values() for c in v}
    grouped = len({subject_of.get(c, c) for c in cases}) < len(cases)
    into: dict[str, dict[Cell, dict[str, list[float]]]] = {}
    for trial, dice_of in per_trial.items():
        patients: dict[str, list[float]] = {}
        for case, dice in dice_of.items():
            patients.setdefault(subject_of.get(case, case), []).append(dice)
        cell = into.setdefault(configuration_of[trial], {}).setdefault(cell_of[trial], {})
        for patient, dice in patients.items():
            cell.setdefault(patient, []).append(_nanmean(dice))
    values = {s: {c: {u: _nanmean(v) for u, v in us.items()} for c, us in cells.items()} for s, cells in into.items()}
    return values, "patient" if grouped else "case"


def _nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


# -- the tests ------------------------------------------------------------------------------------


def signed_rank_greater(d: np.ndarray) -> np.ndarray:
    """One-sided p of "the differences are above zero" per row of ``d`` (NaN: no pair), by
    :func:`study.analysis.wilcoxon_greater`: rows of one length in one call, so its batched exact
    test serves them all (the ordered pairs of 15 configurations are 210 rows a rung). A row of
    zeros only (two configurations alike on every patient) is a test that found nothing, p 1, where
    scipy gives NaN above 13 pairs: it stays in the Holm family."""
    p = np.full(len(d), np.nan)
    n = (~np.isnan(d)).sum(axis=1)
    for k in np.unique(n[n > 0]):
        rows = np.flatnonzero(n == k)
        block = d[rows][~np.isnan(d[rows])].reshape(len(rows), k)  # a row's pairs, in order
        p[rows] = np.where((block == 0).all(axis=1), 1.0, wilcoxon_greater(block, np.zeros_like(block))[1])
    return p


def _mean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no shared cell: NaN, not a pair
        return np.nanmean(a, axis=axis)


def pair_means(table: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``table`` ``(S, C, U)``: configuration x cell x unit, NaN where missing; ``seeds`` ``(C,)``
    the seed of each cell. -> ``x``, ``y`` ``(S, S, U)``: configuration i's and j's mean on each
    unit over the cells where both have it (fractions first, then seeds, as the analysis pairs)."""
    both = ~np.isnan(table)[:, None] & ~np.isnan(table)[None, :]
    x = np.where(both, table[:, None], np.nan)
    y = np.where(both, table[None, :], np.nan)
    per_seed = [(_mean(x[:, :, seeds == s], 2), _mean(y[:, :, seeds == s], 2)) for s in np.unique(seeds)]
    return _mean(np.stack([a for a, _ in per_seed]), 0), _mean(np.stack([b for _, b in per_seed]), 0)


def _array(values: Mapping[str, Mapping[Cell, Mapping[str, float]]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = sorted(values)
    cells = sorted({c for v in values.values() for c in v})
    units = sorted({u for v in values.values() for us in v.values() for u in us})
    at = {u: i for i, u in enumerate(units)}
    table = np.full((len(names), len(cells), len(units)), np.nan)
    for s, name in enumerate(names):
        for c, cell in enumerate(cells):
            for unit, dice in values[name].get(cell, {}).items():
                table[s, c, at[unit]] = dice
    return names, table, np.array([seed for _, seed in cells])


def decide(
    values: Mapping[str, Mapping[Cell, Mapping[str, float]]],
    *,
    dataset: str,
    rung: int,
    protected: set[str],
    strategies: Mapping[str, str],
    alpha: float,
    min_survivors: int,
    unit: str = "case",
) -> list[Decision]:
    """The decisions of one rung: one per configuration that may be stopped and has a pair.

    ``values``: configuration -> {cell: {unit: Dice}} of every configuration still running (from
    :func:`unit_values`; the baseline's included, which are ``protected``: comparators only).
    ``strategies``: configuration -> strategy, for ``min_survivors``.
    """
    names, table, seeds = _array(values)
    tested = [i for i, s in enumerate(names) if s not in protected]
    if not tested or len(names) < 2:
        return []
    x, y = pair_means(table, seeds)
    ii, jj = np.array([(i, j) for i in tested for j in range(len(names)) if j != i]).T
    d = y[ii, jj] - x[ii, jj]  # j - i: "j is better" is the alternative
    p = signed_rank_greater(d)
    smallest = {}  # configuration -> (its most significant pair, that p times its comparators)
    for i in tested:
        rows = np.flatnonzero((ii == i) & ~np.isnan(p))
        if rows.size:
            k = min(rows, key=lambda r: (p[r], names[jj[r]]))
            smallest[i] = (k, min(1.0, rows.size * p[k]))
    order = list(smallest)
    p_holm = dict(zip(order, holm(np.array([smallest[i][1] for i in order]))))
    decisions = []
    for i in order:
        k = smallest[i][0]
        j, pair = jj[k], ~np.isnan(d[k])
        decisions.append(
            Decision(
                dataset,
                rung,
                names[i],
                names[j],
                int(pair.sum()),
                float(x[i, j][pair].mean()),
                float(y[i, j][pair].mean()),
                float(p[k]),
                float(p_holm[i]),
                False,
                len(order),
                unit,
            )
        )
    stop = _stops(decisions, [s for s in names if s not in protected], strategies, alpha, min_survivors)
    return [Decision(**{**asdict(dec), "stopped": dec.strategy in stop}) for dec in decisions]


def _stops(
    decisions: list[Decision], candidates: list[str], strategies: Mapping[str, str], alpha: float, min_survivors: int
) -> set[str]:
    """The configurations to stop: shown worse at ``alpha``, most significant first, while at least
    ``min_survivors`` strategies keep a running configuration (stopping one learning rate of a
    strategy that runs at another does not count against it)."""
    running = set(candidates)
    stop: set[str] = set()
    for dec in sorted(decisions, key=lambda d: (d.p_holm, d.p, d.strategy)):
        if not dec.p_holm <= alpha:
            break
        left = {strategies[s] for s in running - {dec.strategy}}
        if len(left) >= min_survivors:
            running.discard(dec.strategy)
            stop.add(dec.strategy)
    return stop
