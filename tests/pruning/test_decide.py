"""The rung decisions of statistical early stopping on synthetic validation values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from study.analysis import configuration
from study.pruning import Decision, case_values, decide, rung_epochs


def values(rng: np.random.Generator, shifts: dict[str, float], n: int = 20, noise: float = 0.01) -> dict:
    base = rng.uniform(0.5, 0.8, n)
    return {s: {f"c{i}": float(v) for i, v in enumerate(base + shift + rng.normal(0, noise, n))}
            for s, shift in shifts.items()}


def test_a_clearly_worse_configuration_is_stopped_and_a_clearly_better_one_never() -> None:
    rng = np.random.default_rng(0)
    v = values(rng, {"supervised lr=0.01": 0.0, "good": 0.05, "bad": -0.3, "twin": 0.05, "other": 0.0})
    out = {d.strategy: d for d in decide(v, dataset="ct", rung=0, protected={"supervised lr=0.01"}, alpha=0.05,
                                         min_survivors=1)}
    assert "good" not in out  # the leader is not tested
    assert {d.leader for d in out.values()} == {"good"} and "supervised lr=0.01" not in out
    assert out["bad"].stopped and out["bad"].p_holm <= 0.05
    lead, bad = np.array(list(v["good"].values())), np.array(list(v["bad"].values()))
    assert out["bad"].p == pytest.approx(stats.wilcoxon(lead, bad, alternative="greater").pvalue)
    assert out["bad"].n == 20 and out["bad"].mean_dice == pytest.approx(bad.mean())
    assert not out["twin"].stopped  # as good as the leader: not shown worse


def test_min_survivors_keeps_the_least_significant_losers() -> None:
    rng = np.random.default_rng(1)
    v = values(rng, {"supervised": 0.0, "lead": 0.2, "a": -0.3, "b": -0.2, "c": -0.1})
    out = {d.strategy: d for d in decide(v, dataset="ct", rung=0, protected={"supervised"}, alpha=0.05,
                                         min_survivors=2)}
    # every loser is significant; stopping goes by p, and stops once two non-baseline configurations remain
    assert sum(d.stopped for d in out.values()) == 2 and not out["c"].stopped


def test_too_few_validation_cases_never_stop_anything() -> None:
    rng = np.random.default_rng(2)
    v = values(rng, {"supervised": 0.0, "lead": 0.2, "bad": -0.5}, n=4)  # 1/2^4 > 0.05
    assert not any(d.stopped for d in decide(v, dataset="mri", rung=0, protected={"supervised"}, alpha=0.05,
                                             min_survivors=1))


def test_decisions_do_not_depend_on_the_order_values_arrive() -> None:
    rng = np.random.default_rng(3)
    v = values(rng, {"supervised": 0.0, "lead": 0.1, "a": -0.1, "b": 0.09})
    forward = decide(v, dataset="ct", rung=1, protected={"supervised"}, alpha=0.05, min_survivors=1)
    backward = decide(dict(reversed(list(v.items()))), dataset="ct", rung=1, protected={"supervised"}, alpha=0.05,
                      min_survivors=1)
    assert forward == backward
    assert [Decision.from_json(d.to_json()) for d in forward] == forward


def test_rungs_case_values_and_labels() -> None:
    assert rung_epochs([0.25, 0.5], 18) == [5, 9]
    assert rung_epochs([0.01, 0.02, 0.99], 10) == [1]  # repeats and the full budget are no rung
    got = case_values({"t1": {"a": 0.2, "b": 0.4}, "t2": {"a": 0.4}}, {"t1": "s", "t2": "s"})
    assert got == {"s": {"a": pytest.approx(0.3), "b": 0.4}}
    assert configuration("supervised", 0.01, None) == "supervised lr=0.01"
    assert configuration("x", 0.001, 0.0001) == "x lr=0.001 unfrozen_lr=0.0001"
