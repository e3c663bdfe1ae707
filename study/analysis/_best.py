"""Which strategies the data separate: the set not shown worse than any other.

Every strategy of a data set is compared with every other on the units both have (the same pairs
the ranking uses: one value per unit, averaged over the pooled fractions and the seeds), by the
one-sided signed-rank test that j is better than i, for every ordered pair. A strategy is **shown
worse** when the hypothesis "no other strategy is better than it" is rejected at the corrected
level (:func:`best_set`); the **best set** is every strategy that is not. The correction holds the
chance that *any* strategy as good as the best leaves the best set at alpha or less, whatever the
true means are (strong family-wise control): identical strategies stay together in it, and one
strategy is named alone only when every other one is shown worse than something.

Choosing the leader from the same data and testing the others against it as if it were fixed in
advance does not have this property (that is a comparison with a data-chosen control, whose error
grows with the number of strategies).
"""

from __future__ import annotations

import numpy as np

from study.analysis._stats import holm, wilcoxon_greater


def pairwise_p(values: np.ndarray) -> np.ndarray:
    """``(S, S)`` one-sided p that row j is better than row i (``p[j, i]``), over the columns where
    both are present; NaN on the diagonal and where fewer than 2 columns are shared.

    ``values``: ``(S, n)`` per-unit values (a strategy's Dice, or its difference from the baseline:
    the baseline cancels in a pairwise difference).
    """
    S, n = values.shape
    p = np.full((S, S), np.nan)
    j, i = np.nonzero(~np.eye(S, dtype=bool))
    if not j.size:
        return p
    present = ~np.isnan(values)
    if present.all():
        _, p[j, i] = wilcoxon_greater(values[j], values[i])
        return p
    for a, b in zip(j, i):
        both = present[a] & present[b]
        if both.sum() >= 2:
            _, q = wilcoxon_greater(values[a, both][None], values[b, both][None])
            p[a, b] = q[0]
    return p


def best_set(values: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``values`` ``(S, n)``: whether it is in the best set, the row that beats it most
    clearly (-1 where none does) and the Holm-adjusted p that it is as good as the best.

    The hypothesis "i is as good as the best" holds when no j is better than i, so its p-value is
    the smallest p of "j better than i" over the S - 1 others, times S - 1 (Bonferroni); Holm then
    runs over the S hypotheses. Every hypothesis that is true keeps its place with probability at
    least 1 - alpha, together (strong family-wise control).
    """
    S = values.shape[0]
    if S < 2:
        return np.ones(S, dtype=bool), np.full(S, -1), np.full(S, np.nan)
    p = pairwise_p(values)
    filled = np.where(np.isnan(p), np.inf, p)
    winner = filled.argmin(axis=0)
    smallest = filled[winner, np.arange(S)]
    p_as_good = holm(np.where(np.isinf(smallest), np.nan, np.minimum(1.0, (S - 1) * smallest)))
    shown = p_as_good <= alpha
    return ~shown, np.where(shown, winner, -1), p_as_good
