"""What an analysis is asked to do: which fractions pool, what the baseline is, how many resamples."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from study.constants import SUPERVISED
from study.errors import DataError, SpecError

# The paper pools its label-limited subsets (P §2.8: "50%, 25%, 10%, and 5% training data").
PAPER_FRACTIONS: tuple[float, ...] = (0.5, 0.25, 0.1, 0.05)
AGGREGATES = ("auto", "case", "patient")
PAIRINGS = ("per_case", "pooled")
CORRECTIONS = ("holm", "bh")
# What a ranking can be asked for by (per-case table column): its name in words, whether higher is
# better, and the unit of a difference. HD95 is ranked as its reduction (baseline - strategy, mm), so
# a positive difference means better for every metric and the tests, corrections and verdicts are
# those of Dice unchanged.
METRICS: dict[str, tuple[str, bool, str]] = {
    "dice": ("Dice", True, "Dice"),
    "nsd": ("NSD", True, "NSD"),
    "hd95": ("HD95", False, "mm HD95 reduction"),
}


@dataclass(frozen=True)
class AnalysisSettings:
    """Settings of :func:`study.analysis.analyze`.

    ``fractions`` None means the paper's label-limited fractions present in the study, or every
    fraction below 1 when none of them is. ``aggregate`` "auto" averages Dice per patient when a data
    set's test cases are fewer patients than cases (CT slices), else keeps cases. ``pairing``
    "per_case" averages each unit's differences over the pooled fractions and seeds (one pair per
    unit), "pooled" is the paper's one pair per unit and fraction. A strategy beats the baseline
    where its ``correction``-adjusted p is at most ``alpha``. ``rope``: the region of practical
    equivalence of the Bayesian signed-rank test, +-rope in the metric's unit (Dice, NSD, mm of
    HD95); ``bayes_samples`` its posterior draws. ``metric`` is the per-case column ranked (``METRICS``):
    ``dice``, ``nsd`` or ``hd95`` (lower is better: ranked by its reduction against the baseline).
    """

    fractions: tuple[float, ...] | None = None
    top_k: int = 3
    baseline: str = SUPERVISED
    aggregate: str = "auto"
    n_boot: int = 2000
    confidence: float = 0.95
    alpha: float = 0.05
    seed: int = 0
    pairing: str = "per_case"
    correction: str = "holm"
    rope: float = 0.01
    bayes_samples: int = 20_000
    metric: str = "dice"

    @property
    def metric_name(self) -> str:
        """The metric in words: Dice, NSD, HD95."""
        return METRICS[self.metric][0]

    @property
    def unit(self) -> str:
        """What a difference is counted in: Dice, NSD, or mm HD95 reduction."""
        return METRICS[self.metric][2]

    def __post_init__(self) -> None:
        if self.fractions is not None:
            bad = [f for f in self.fractions if not 0 < f <= 1]
            if not self.fractions or bad:
                raise SpecError(f"fractions {list(self.fractions)} must be a non-empty list of values in (0, 1]")
        if self.top_k < 1:
            raise SpecError(f"top_k {self.top_k} must be at least 1")
        if self.aggregate not in AGGREGATES:
            raise SpecError(f"aggregate {self.aggregate!r} must be one of {', '.join(AGGREGATES)}")
        if self.n_boot < 100:
            raise SpecError(f"n_boot {self.n_boot} must be at least 100 for a 95 % percentile interval")
        if not 0.5 < self.confidence < 1:
            raise SpecError(f"confidence {self.confidence} must lie in (0.5, 1)")
        if self.pairing not in PAIRINGS:
            raise SpecError(f"pairing {self.pairing!r} must be one of {', '.join(PAIRINGS)}")
        if self.correction not in CORRECTIONS:
            raise SpecError(f"correction {self.correction!r} must be one of {', '.join(CORRECTIONS)}")
        if self.metric not in METRICS:
            raise SpecError(f"metric {self.metric!r} must be one of {', '.join(METRICS)}")
        if self.metric == "hd95" and not 0 <= self.rope < float("inf"):
            raise SpecError(f"rope {self.rope} must be a distance >= 0 (mm of HD95)")
        if self.metric != "hd95" and not 0 <= self.rope < 1:
            raise SpecError(f"rope {self.rope} must lie in [0, 1) ({self.metric_name})")
        if self.bayes_samples < 100:
            raise SpecError(f"bayes_samples {self.bayes_samples} must be at least 100")
        if not 0 < self.alpha < 1:
            raise SpecError(f"alpha {self.alpha} must lie in (0, 1)")


def pooled_fractions(present: Iterable[float], requested: tuple[float, ...] | None) -> tuple[float, ...]:
    """The label fractions whose pairs are pooled, largest first.

    Raises :class:`DataError` when a requested fraction is not in the study, or when nothing is
    label-limited (only 100 % trials).
    """
    have = sorted({float(f) for f in present}, reverse=True)
    if requested is not None:
        missing = [f for f in requested if not any(abs(f - h) < 1e-9 for h in have)]
        if missing:
            raise DataError(
                f"label fraction(s) {', '.join(f'{f:g}' for f in missing)} not in the study "
                f"(it has {', '.join(f'{h:g}' for h in have)})"
            )
        return tuple(h for h in have if any(abs(f - h) < 1e-9 for f in requested))
    chosen = tuple(h for h in have if any(abs(f - h) < 1e-9 for f in PAPER_FRACTIONS))
    if not chosen:
        chosen = tuple(h for h in have if h < 1)
    if not chosen:
        raise DataError(f"no label-limited fraction to pool: the study has only {', '.join(f'{h:g}' for h in have)}")
    return chosen
