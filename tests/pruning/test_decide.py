"""The rung decisions of statistical early stopping on synthetic validation values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from study.analysis import configuration, holm, wilcoxon_greater
from study.execution.pruning import TEST, Decision, decide, rung_epochs, signed_rank_greater, unit_values

CELL = (0.05, 0)


def values(
    rng: np.random.Generator, shifts: dict[str, float], n: int = 20, noise: float = 0.01, cells: tuple = (CELL,)
) -> dict:
    """configuration -> {cell: {case: Dice}}: a shared per-case difficulty, a shift, noise."""
    base = rng.uniform(0.5, 0.8, n)
    return {
        s: {c: {f"c{i}": float(v) for i, v in enumerate(base + shift + rng.normal(0, noise, n))} for c in cells}
        for s, shift in shifts.items()
    }


def run(v: dict, protected: set[str], min_survivors: int = 1, strategies: dict | None = None) -> dict[str, Decision]:
    out = decide(
        v,
        dataset="ct",
        rung=0,
        protected=protected,
        strategies=strategies or {s: s for s in v},
        alpha=0.05,
        min_survivors=min_survivors,
    )
    return {d.strategy: d for d in out}


def test_a_clearly_worse_configuration_is_stopped_and_a_clearly_better_one_never() -> None:
    rng = np.random.default_rng(0)
    v = values(rng, {"supervised lr=0.01": 0.0, "good": 0.05, "bad": -0.3, "twin": 0.05, "other": 0.0})
    out = run(v, {"supervised lr=0.01"})
    assert set(out) == {"good", "bad", "twin", "other"}  # everyone but the baseline is tested
    assert out["bad"].stopped and out["bad"].p_holm <= 0.05 and out["bad"].comparator in {"good", "twin"}
    best, bad = (np.array(list(v[s][CELL].values())) for s in (out["bad"].comparator, "bad"))
    assert out["bad"].p == pytest.approx(stats.wilcoxon(best, bad, alternative="greater").pvalue)
    assert out["bad"].n == 20 and out["bad"].mean_dice == pytest.approx(bad.mean())
    assert out["bad"].comparator_dice == pytest.approx(best.mean())
    # "no configuration is better" per tested configuration: Holm over the 4 of them
    assert {d.m for d in out.values()} == {4}
    assert not out["good"].stopped and not out["twin"].stopped  # as good as the best: not shown worse
    assert "worse than" in out["bad"].reason(9) and "over 4 configurations" in out["bad"].reason(9)


def test_the_holm_p_is_the_smallest_pair_p_times_the_comparators_holm_over_configurations() -> None:
    rng = np.random.default_rng(4)
    v = values(rng, {"supervised": 0.0, "a": 0.02, "b": -0.01, "c": -0.05}, noise=0.02)
    out = run(v, {"supervised"})
    names = sorted(v)
    x = {s: np.array(list(v[s][CELL].values())) for s in names}
    pairs = [(i, j) for i in ("a", "b", "c") for j in names if j != i]
    p = np.array([stats.wilcoxon(x[j], x[i], alternative="greater").pvalue for i, j in pairs])
    best = {s: min((k for k, (i, _) in enumerate(pairs) if i == s), key=lambda k: p[k]) for s in ("a", "b", "c")}
    adjusted = dict(zip(best, holm(np.array([min(1.0, 3 * p[best[s]]) for s in best]))))
    for s, k in best.items():
        assert (out[s].comparator, out[s].p) == (pairs[k][1], pytest.approx(p[k]))
        assert out[s].p_holm == pytest.approx(adjusted[s])


def test_min_survivors_keeps_the_least_significant_losers() -> None:
    rng = np.random.default_rng(1)
    v = values(rng, {"supervised": 0.0, "lead": 0.2, "a": -0.3, "b": -0.2, "c": -0.1})
    out = run(v, {"supervised"}, min_survivors=2)
    # every loser is significant; stopping goes by p, and stops once two non-baseline strategies remain
    assert {s for s, d in out.items() if d.stopped} == {"a", "b"}


def test_min_survivors_counts_strategies_not_learning_rates() -> None:
    rng = np.random.default_rng(5)
    shifts = {"supervised lr=0.01": 0.0, "x lr=0.01": 0.0, "x lr=1e-06": -0.5, "x lr=1e-05": -0.01, "y lr=0.01": -0.4}
    v = values(rng, shifts)
    strategies = {s: s.split(" ")[0] for s in shifts}
    out = run(v, {"supervised lr=0.01"}, min_survivors=2, strategies=strategies)
    assert all(d.p_holm <= 0.05 for s, d in out.items() if s != "x lr=0.01")
    assert out["y lr=0.01"].p_holm < out["x lr=1e-05"].p_holm  # y is stopped before x at 1e-5, if at all
    # x's learning rates that cannot keep up go (x still runs at 0.01); y would leave one strategy of two
    assert {s for s, d in out.items() if d.stopped} == {"x lr=1e-06", "x lr=1e-05"}
    # counted as configurations, y went and two learning rates of one strategy were "two survivors"
    as_configurations = run(v, {"supervised lr=0.01"}, min_survivors=2)
    assert {s for s, d in as_configurations.items() if d.stopped} == {"x lr=1e-06", "y lr=0.01"}


def test_a_configuration_missing_a_cell_is_compared_on_the_cells_both_have() -> None:
    """The issue's Found 3: identical configurations, one lacking its 5 % trial (failed). Its
    100 % values are higher (more labels); averaged over its other fractions only it led and stopped
    the others. Compared on shared cells, nothing is stopped."""
    rng = np.random.default_rng(6)
    n = 20
    difficulty = rng.uniform(0.4, 0.8, n)
    gain = {0.05: 0.0, 1.0: 0.15}  # every configuration is better at 100 % labels

    def trial(fraction: float) -> dict:
        return {f"p{i}": float(v) for i, v in enumerate(difficulty + gain[fraction] + rng.normal(0, 0.01, n))}

    names = ["supervised", "a", "b", "c", "incomplete"]
    v = {s: {(f, 0): trial(f) for f in (0.05, 1.0) if not (s == "incomplete" and f == 0.05)} for s in names}
    out = run(v, {"supervised"})
    assert not any(d.stopped for d in out.values()), {s: d.p_holm for s, d in out.items()}
    # what the leader rule did: the incomplete one's mean of 100 % alone against a + b + c over both
    pooled = {s: np.mean([list(c.values()) for c in v[s].values()], axis=0) for s in names}
    old_p = holm(wilcoxon_greater(np.stack([pooled["incomplete"]] * 3), np.stack([pooled[s] for s in "abc"]))[1])
    assert (old_p < 1e-3).all()
    # the pairs with the incomplete configuration are on 100 % only: its n is every patient, its means alike
    assert out["incomplete"].n == n and abs(out["incomplete"].mean_dice - out["incomplete"].comparator_dice) < 0.01


def test_too_few_validation_cases_never_stop_anything() -> None:
    rng = np.random.default_rng(2)
    v = values(rng, {"supervised": 0.0, "lead": 0.2, "bad": -0.5}, n=4)  # 1/2^4 > 0.05
    assert not any(d.stopped for d in run(v, {"supervised"}).values())


def test_decisions_do_not_depend_on_the_order_values_arrive() -> None:
    rng = np.random.default_rng(3)
    v = values(rng, {"supervised": 0.0, "lead": 0.1, "a": -0.1, "b": 0.09})
    forward = decide(
        v, dataset="ct", rung=1, protected={"supervised"}, strategies={s: s for s in v}, alpha=0.05, min_survivors=1
    )
    backward = decide(
        dict(reversed(list(v.items()))),
        dataset="ct",
        rung=1,
        protected={"supervised"},
        strategies={s: s for s in v},
        alpha=0.05,
        min_survivors=1,
    )
    assert forward == backward
    assert [Decision.from_json(d.to_json()) for d in forward] == forward


def test_decision_files_of_the_leader_rule_still_read() -> None:
    """A study folder pruned before keeps its decisions on resume, with its own test text."""
    old = {
        "dataset": "ct",
        "rung": 0,
        "strategy": "x lr=1e-06",
        "leader": "y lr=0.01",
        "n": 20,
        "mean_dice": 0.1,
        "leader_dice": 0.8,
        "p": 1e-6,
        "p_holm": 3e-6,
        "stopped": True,
        "test": "one-sided Wilcoxon signed-rank, leader > strategy, per validation case",
    }
    d = Decision.from_json(old)
    assert (d.comparator, d.comparator_dice, d.m, d.unit) == ("y lr=0.01", 0.8, None, "case")
    assert d.test == old["test"] and d.test != TEST
    assert d.reason(9) == (
        "stopped at rung 1 (epoch 9): worse than y lr=0.01 on 20 validation cases, Holm p = 3e-06 "
        "(mean Dice 0.100 vs 0.800)"
    )
    nan = Decision.from_json({**old, "p": None, "p_holm": None})
    assert np.isnan(nan.p) and np.isnan(nan.p_holm)


def test_the_batched_signed_rank_equals_scipy_row_by_row() -> None:
    rng = np.random.default_rng(7)
    d = rng.normal(size=(60, 20))
    d[:10] = np.round(d[:10], 1)  # ties
    d[10:15, :3] = 0.0  # zeros
    d[15:20, 5:] = np.nan  # shorter rows (5 pairs)
    d[21:25] = rng.normal(size=(4, 20)) + 2.0
    got = signed_rank_greater(d)
    for row, p in zip(d, got):
        pairs = row[~np.isnan(row)]
        assert p == pytest.approx(stats.wilcoxon(pairs, alternative="greater").pvalue, rel=1e-9)
    # alike on every patient: a test that found nothing (scipy: NaN above 13 pairs); no pair: no test
    alike = np.zeros((3, 20))
    alike[1, 5:] = np.nan
    alike[2] = np.nan
    assert signed_rank_greater(alike)[:2].tolist() == [1.0, 1.0] and np.isnan(signed_rank_greater(alike)[2])


def test_rungs_unit_values_and_labels() -> None:
    assert rung_epochs([0.25, 0.5], 18) == [5, 9]
    assert rung_epochs([0.01, 0.02, 0.99], 10) == [1]  # repeats and the full budget are no rung
    got, unit = unit_values(
        {"t1": {"a1": 0.2, "a2": 0.4, "b": 0.5}, "t2": {"a1": 0.4, "a2": float("nan"), "b": 0.7}},
        configuration_of={"t1": "s", "t2": "s"},
        cell_of={"t1": (0.5, 0), "t2": (1.0, 0)},
        subject_of={"a1": "A", "a2": "A"},
    )
    assert unit == "patient"
    assert got == {"s": {(0.5, 0): {"A": pytest.approx(0.3), "b": 0.5}, (1.0, 0): {"A": 0.4, "b": 0.7}}}
    _, unit = unit_values({"t1": {"a": 0.2}}, configuration_of={"t1": "s"}, cell_of={"t1": CELL}, subject_of={})
    assert unit == "case"
    assert configuration("supervised", 0.01, None) == "supervised lr=0.01"
    assert configuration("x", 0.001, 0.0001) == "x lr=0.001 unfrozen_lr=0.0001"
