"""Statistical early stopping of a paired design study: which strategies to stop at a rung.

At each rung (a fraction of the fine-tuning budget) every trial of a data set pauses; once all of
them have reached it, each strategy's per-case **validation** Dice (never test) is compared with
the current leader's on the same cases by a one-sided paired test, Holm-corrected over the
strategies tested at that rung. A strategy is stopped where the leader is better at the corrected
level, most significant first, while more than ``min_survivors`` strategies would remain. The
supervised baseline (at every learning rate) is never stopped and never tested.

What is judged is a *configuration* (:func:`study.analysis.configuration`): a strategy at its
fine-tuning learning rates (a strategy tried at a learning rate that cannot learn is stopped there,
and ranked on its other rates). It is judged
across the label fractions the analysis pools, and the seeds: a case's value is its Dice averaged
over those trials, as the analysis pairs per case. Stopping a configuration stops every trial of
it on that data set (every fraction), so the final ranking compares whole strategies, and the
stopped ones are listed apart. Decisions depend only on the values, never on which trial
finished first: a rung is decided when the last trial of the data set reaches it.

Pure functions; the Tune searcher that pauses and resumes trials is ``study.rung_search``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from study.analysis import holm, wilcoxon_greater


@dataclass(frozen=True)
class Decision:
    """One strategy's test at one rung against the leader (``stopped`` when it lost)."""

    dataset: str
    rung: int
    strategy: str
    leader: str
    n: int
    mean_dice: float
    leader_dice: float
    p: float
    p_holm: float
    stopped: bool
    test: str = "one-sided Wilcoxon signed-rank, leader > strategy, per validation case"

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @staticmethod
    def from_json(d: dict) -> Decision:
        return Decision(**{k: (math.nan if v is None and k in ("p", "p_holm", "mean_dice", "leader_dice") else v)
                           for k, v in d.items()})

    def reason(self, epoch: int) -> str:
        return (f"stopped at rung {self.rung + 1} (epoch {epoch}): worse than {self.leader} on {self.n} validation "
                f"cases, Holm p = {self.p_holm:.3g} (mean Dice {self.mean_dice:.3f} vs {self.leader_dice:.3f})")


def rung_epochs(rungs: tuple[float, ...] | list[float], max_epochs: int) -> list[int]:
    """The total fine-tuning epoch at which each rung pauses the trials (at least 1, increasing)."""
    out: list[int] = []
    for r in rungs:
        e = max(1, math.ceil(r * max_epochs))
        if e < max_epochs and (not out or e > out[-1]):
            out.append(e)
    return out


def decide(values: dict[str, dict[str, float]], *, dataset: str, rung: int, protected: set[str], alpha: float,
           min_survivors: int) -> list[Decision]:
    """The decisions of one rung. ``values``: configuration -> {validation case: Dice} of every
    configuration still running (the baseline's included, which are ``protected``: never tested).
    The leader is the highest mean Dice on the cases all share (ties by name); it is not tested."""
    if not values:
        return []
    cases = sorted(set.intersection(*(set(v) for v in values.values())))
    table = {s: np.array([values[s][c] for c in cases], dtype=float) for s in sorted(values)}
    means = {s: float(np.nanmean(v)) if len(v) else math.nan for s, v in table.items()}
    leader = min(table, key=lambda s: (-np.nan_to_num(means[s], nan=-np.inf), s))
    tested = [s for s in table if s != leader and s not in protected]
    if not tested or len(cases) < 2:
        return []
    lead = np.broadcast_to(table[leader], (len(tested), len(cases)))
    others = np.stack([table[s] for s in tested])
    ok = ~np.isnan(lead).any(axis=0) & ~np.isnan(others).any(axis=0)
    _, p = wilcoxon_greater(lead[:, ok], others[:, ok])
    p_holm = holm(p)
    survivors = sum(1 for s in table if s not in protected)
    order = sorted(range(len(tested)), key=lambda i: (p_holm[i], p[i], tested[i]))
    stop = set()
    for i in order:
        if p_holm[i] <= alpha and survivors - len(stop) > min_survivors:
            stop.add(i)
    return [Decision(dataset, rung, s, leader, int(ok.sum()), means[s], means[leader], float(p[i]), float(p_holm[i]),
                     i in stop) for i, s in enumerate(tested)]


def case_values(per_trial: dict[str, dict[str, float]], strategy_of: dict[str, str]) -> dict[str, dict[str, float]]:
    """Configuration -> {case: Dice averaged over its trials} from trial -> {case: Dice} (the
    trials at the pooled fractions and every seed); ``strategy_of`` maps trial -> configuration."""
    sums: dict[str, dict[str, list[float]]] = {}
    for trial, cases in per_trial.items():
        into = sums.setdefault(strategy_of[trial], {})
        for case, dice in cases.items():
            into.setdefault(case, []).append(dice)
    return {s: {c: float(np.mean(v)) for c, v in cs.items()} for s, cs in sums.items()}
