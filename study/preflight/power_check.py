"""Before a study runs: can its data sets answer it at all?

With n pairs the one-sided signed-rank test gives no p below 1 / 2^n. The analysis tests S
strategies against the baseline under Holm, whose first step multiplies the smallest p by S: with
``S / 2^n > alpha`` no strategy can be shown to beat the baseline, whatever the data (16 strategies
need 9 test patients). Pruning's first step multiplies a configuration's smallest p by its
comparators and by the configurations tested (``study.execution.pruning``): 16 configurations and the
baseline need 13 validation patients before anything can stop. A warning, not a refusal: a study
run for its intervals or its per-seed rankings may still be worth its time.
"""

from __future__ import annotations

import math

from study.constants import SUPERVISED
from study.design.plan import Plan


def needed(tests: int, alpha: float) -> int:
    """The fewest pairs at which ``tests`` Holm-corrected signed-rank tests can reach ``alpha``."""
    return max(1, math.ceil(math.log2(tests / alpha)))


def power_warnings(plan: Plan, units: dict[str, tuple[int, int, str]], alpha: float = 0.05) -> list[str]:
    """One line per data set whose test (or, with pruning, validation) units are too few.

    ``units``: data set -> (test units, validation units, what a unit is: "patient" or "volume").
    A sampled search's strategies are not known in advance: nothing is said of it.
    """
    if not plan.enumerable:
        return []
    spec, lines = plan.spec, []
    fractions = len([f for f in spec.label_fractions if f < 1]) or 1
    for dataset, (n_test, n_val, unit) in units.items():
        trials = [t for t in plan.trials if t.dataset == dataset]
        strategies = {t.strategy for t in trials} - {SUPERVISED}
        if not strategies:
            continue
        pairs = n_test * (fractions if spec.analysis.pairing == "pooled" else 1)
        need = needed(len(strategies), alpha)
        if pairs < need:
            lines.append(
                f"warning: {dataset}: {n_test} test {unit}s cannot show any of {len(strategies)} strategies "
                f"better than the baseline at Holm p <= {alpha:g} (all {pairs} pairs positive give "
                f"{len(strategies)} / 2^{pairs} = {len(strategies) / 2**pairs:.3g}); {need} would"
            )
        if not spec.pruning.enabled:
            continue
        configurations = {t.unit for t in trials}  # what pruning judges
        tested = len({t.unit for t in trials if t.strategy != SUPERVISED})
        need = needed(tested * (len(configurations) - 1), spec.pruning.alpha)
        if n_val < need:
            lines.append(
                f"warning: {dataset}: pruning can stop nothing with {n_val} validation {unit}s "
                f"({tested} configurations, each against {len(configurations) - 1} others, Holm); "
                f"{need} would"
            )
    return lines
