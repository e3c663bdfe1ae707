"""The answer in plain words, per data set and label fraction: which strategies beat the baseline,
which of them the data separate, what is practically equivalent, what is underpowered and what
would settle it.

A ranking's verdict is

- ``one_best``: strategies beat the baseline and one of them is better than every other (the best
  set, ``_best``, has one member, and it beats the baseline);
- ``best_not_separated``: strategies beat the baseline, but the data do not separate the best of
  them (several strategies are not shown worse than any other);
- ``no_practical_difference``: none beats the baseline and every strategy is within the region of
  practical equivalence of it (Bayesian signed-rank P(equivalent) >= 0.95);
- ``none_beats_baseline`` otherwise.

Each claim holds at the rate it states: beating the baseline is a Holm- (or BH-) corrected
signed-rank test; a strategy is named best alone only when every other strategy is shown worse
than some strategy, each by its smallest pairwise p times S - 1 and Holm over the S strategies, so
identical strategies are named best alone in at most alpha of studies
(``tests/analysis/test_claims_verdict.py`` simulates it). P(top-k) describes the ranking's spread
and is not used here: resampling around the observed ranking favours the observed winner.
"""

from __future__ import annotations

import math

import pandas as pd

from study.analysis._settings import AnalysisSettings

VERDICTS = ("one_best", "best_not_separated", "no_practical_difference", "none_beats_baseline")
DECISIVE = 0.95  # posterior share at which the Bayesian test's answer is stated as the answer
SHOWN = 3  # strategies named per line before "and N more"


def _listed(names: list[str], texts: list[str]) -> str:
    shown = ", ".join(texts[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _shift(r, unit: str = "Dice") -> str:
    if math.isnan(r.hl_ci_low):
        return f"{r.hl_shift:+.3f} {unit}"
    return f"{r.hl_shift:+.3f} [{r.hl_ci_low:+.3f}, {r.hl_ci_high:+.3f}] {unit}"


def fraction_label(fractions: tuple[float, ...]) -> str:
    """ "5 % labels", or "pooled 50 %, 25 % labels" for several fractions."""
    text = ", ".join(f"{100 * f:g} %" for f in fractions)
    return f"{text} labels" if len(fractions) == 1 else f"pooled {text} labels"


def dataset_verdict(frame: pd.DataFrame, settings: AnalysisSettings) -> dict:
    """``{"verdict", "beats_baseline", "best_set", "practically_equivalent", "underpowered"}`` of
    one data set's ranking (at one label fraction or pooled ones)."""
    frame = frame.sort_values("rank")
    beats = frame[frame["beats_baseline"].astype(bool)]
    best = frame[frame["best_set"].astype(bool)]
    equivalent = frame[frame["p_equivalent"] >= DECISIVE]
    if beats.empty:
        verdict = "no_practical_difference" if len(equivalent) == len(frame) else "none_beats_baseline"
    elif len(best) == 1 and bool(best["beats_baseline"].iloc[0]):
        verdict = "one_best"
    else:
        verdict = "best_not_separated"
    return {
        "verdict": verdict,
        "beats_baseline": list(beats["strategy"]),
        "best_set": list(best["strategy"]),
        "practically_equivalent": list(equivalent["strategy"]),
        "underpowered": list(frame.loc[frame["underpowered"].astype(bool), "strategy"]),
    }


def _level(settings: AnalysisSettings) -> str:
    return f"{'Holm' if settings.correction == 'holm' else 'BH'} p <= {settings.alpha:g}"


def _answer(frame: pd.DataFrame, verdict: dict, settings: AnalysisSettings) -> list[str]:
    """The lines of one ranking (one label fraction, or the pooled ones)."""
    frame = frame.sort_values("rank")
    n_all = len(frame)
    beats = frame[frame["beats_baseline"].astype(bool)]
    best = frame[frame["best_set"].astype(bool)]
    rope = f"+-{settings.rope:g} {'mm HD95' if settings.metric == 'hd95' else settings.metric_name}"
    kind = verdict["verdict"]
    if kind == "none_beats_baseline":
        r = frame.iloc[0]
        p = r.p_holm if settings.correction == "holm" else r.p_bh
        equivalent = len(verdict["practically_equivalent"])
        same = (
            f"; {equivalent} of {n_all} practically equivalent to it (P(within {rope}) >= {DECISIVE:g})"
            if equivalent
            else ""
        )
        return [
            f"no strategy beats the baseline (closest: {r.strategy} {_shift(r, settings.unit)}, "
            f"corrected p {p:.3g}){same}"
        ]
    if kind == "no_practical_difference":
        return [
            f"no practical difference: every strategy is within {rope} of the baseline "
            f"(Bayesian signed-rank P >= {DECISIVE:g}), none beats it"
        ]
    lines = [
        f"{len(beats)} of {n_all} beat the baseline: "
        + _listed(list(beats["strategy"]), [f"{r.strategy} {_shift(r, settings.unit)}" for r in beats.itertuples()])
    ]
    pairs = f"each against all {n_all - 1} others, Holm"
    if kind == "one_best":
        lines.append(f"  best: {best['strategy'].iloc[0]}, better than every other strategy ({pairs})")
    else:
        lines.append(
            f"  the data do not separate the best {len(best)}: none of them is shown worse than another "
            f"({pairs}): " + _listed(list(best["strategy"]), list(best["strategy"]))
        )
    return lines


def headline(
    parts: list[tuple[tuple[float, ...], pd.DataFrame, dict]],
    settings: AnalysisSettings,
    n_units: int,
    unit: str,
    seed_tau: float | None,
) -> list[str]:
    """A few lines answering the study's question for one data set: the main ranking (the pooled
    fractions) first, then each other label fraction the study ran, then what is underpowered and
    what would settle it."""
    fractions, main, verdict = parts[0]
    dataset, n_all = str(main["dataset"].iloc[0]), len(main)
    lines = [
        f"{dataset} ({n_units} {unit}s, pairing {settings.pairing}, {_level(settings)} over {n_all} "
        f"strateg{'y' if n_all == 1 else 'ies'}{'' if settings.metric == 'dice' else ', by ' + settings.metric_name}):"
    ]
    for fr, frame, v in parts:
        answer = _answer(frame, v, settings)
        lines.append(f"  {fraction_label(fr)}: {answer[0]}")
        lines += ["  " + line for line in answer[1:]]
    under = main[main["underpowered"].astype(bool)]
    if not under.empty:
        lines.append(
            f"  underpowered at {fraction_label(fractions)}: {len(under)} of {n_all} (with "
            f"{int(under['n'].max())} pairs even all-positive differences cannot reach {_level(settings)} "
            f"beside the others' p-values)"
        )
    if verdict["verdict"] not in ("one_best", "no_practical_difference"):
        lines.append("  to settle it: " + _remedy(main, settings, n_units, unit, seed_tau))
    return lines


def _remedy(frame: pd.DataFrame, settings: AnalysisSettings, n_units: int, unit: str, seed_tau: float | None) -> str:
    """How many test units (at the observed effect and the corrected alpha) or seeds would settle it."""
    beats = frame[frame["beats_baseline"].astype(bool)]
    candidates = frame if beats.empty else beats
    needed = candidates.dropna(subset=["cases_needed"]).sort_values("cases_needed")
    parts = []
    if not needed.empty:
        r = needed.iloc[0]
        more = int(r.cases_needed)
        if more > n_units:
            parts.append(
                f"about {more} {unit}s (now {n_units}) would give {r.strategy} 80 % power against the "
                f"baseline at the corrected alpha, at its observed effect"
            )
    elif beats.empty:
        parts.append("no strategy is ahead of the baseline on average; more cases would not change that")
    if seed_tau is None:
        parts.append("a second seed (--set 'seeds=[...]') shows whether the ranking survives another seed")
    elif seed_tau < 0.5:
        parts.append(f"the seeds' rankings agree poorly (mean Kendall tau {seed_tau:.2f}): more seeds would settle it")
    return "; ".join(parts) or "more test cases or seeds would narrow the intervals and separate the best"


def optimum_line(best: list[str], n_sets: int) -> str:
    where = "every data set" if n_sets > 1 else "the data set"
    if best:
        return f"optimum: {', '.join(best)} (beats the baseline and is better than every other strategy in {where})"
    return f"optimum: none (no strategy beats the baseline and is better than every other in {where})"
