"""The answer in plain words: which strategies beat the baseline, whether the ranking is stable,
what is underpowered, and what would settle it (at most six lines per data set).

A data set's verdict is ``stable`` when a strategy beats the baseline at the corrected level and is
in the top k in at least ``stable_share`` of the bootstrap resamples, ``unstable`` when strategies
beat the baseline but none of them holds its place, and ``none_beats_baseline`` otherwise. The
optimum is named only among strategies whose verdict is stable in every data set.
"""

from __future__ import annotations

import math

import pandas as pd

from study.analysis._settings import AnalysisSettings

VERDICTS = ("stable", "unstable", "none_beats_baseline")
SHOWN = 3  # strategies named per line before "and N more"


def _listed(names: list[str], texts: list[str]) -> str:
    shown = ", ".join(texts[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _shift(r) -> str:
    if math.isnan(r.hl_ci_low):
        return f"{r.hl_shift:+.3f} Dice"
    return f"{r.hl_shift:+.3f} [{r.hl_ci_low:+.3f}, {r.hl_ci_high:+.3f}] Dice"


def dataset_verdict(frame: pd.DataFrame, settings: AnalysisSettings) -> dict:
    """``{"verdict", "beats_baseline", "stable_top_k", "underpowered"}`` of one data set's ranking."""
    frame = frame.sort_values("rank")
    beats = frame[frame["beats_baseline"]]
    stable = frame[(frame["p_top_k"] >= settings.stable_share) & frame["top_k"]]
    held = beats[beats["strategy"].isin(set(stable["strategy"]))]
    verdict = "stable" if not held.empty else "unstable" if not beats.empty else "none_beats_baseline"
    return {"verdict": verdict, "beats_baseline": list(beats["strategy"]), "stable_top_k": list(stable["strategy"]),
            "underpowered": list(frame.loc[frame["underpowered"].astype(bool), "strategy"])}


def headline(frame: pd.DataFrame, settings: AnalysisSettings, verdict: dict, n_units: int, unit: str,
             seed_tau: float | None) -> list[str]:
    """At most six lines answering the study's question for one data set."""
    frame = frame.sort_values("rank")
    dataset, k, n_all = str(frame["dataset"].iloc[0]), settings.top_k, len(frame)
    level = f"{'Holm' if settings.correction == 'holm' else 'BH'} p <= {settings.alpha:g}"
    beats = frame[frame["beats_baseline"]]
    first = {"stable": f"{len(beats)} of {n_all} strategies beat the baseline ({level}) and the best holds its place",
             "unstable": f"{len(beats)} of {n_all} strategies beat the baseline ({level}), but the ranking is not stable",
             "none_beats_baseline": f"no strategy beats the baseline ({level}, {n_all} tested)"}[verdict["verdict"]]
    lines = [f"{dataset} ({n_units} {unit}s, pairing {settings.pairing}): {first}"]
    if not beats.empty:
        lines.append("  beats the baseline: " + _listed(list(beats["strategy"]), [
            f"{r.strategy} {_shift(r)}" for r in beats.itertuples()]))
    else:
        best = frame.iloc[0]
        lines.append(f"  closest: {best.strategy} {_shift(best)}, "
                     f"{'Holm' if settings.correction == 'holm' else 'BH'} p "
                     f"{(best.p_holm if settings.correction == 'holm' else best.p_bh):.3g}")
    stable = frame[frame["strategy"].isin(verdict["stable_top_k"])]
    if not stable.empty:
        lines.append(f"  stable top {k} (P(top-{k}) >= {settings.stable_share:g}): " + _listed(
            list(stable["strategy"]), [f"{r.strategy} ({r.p_top_k:.2f})" for r in stable.itertuples()]))
    else:
        best = frame.sort_values("p_top_k", ascending=False).iloc[0]
        lines.append(f"  stable top {k}: none (highest P(top-{k}): {best.strategy} {best.p_top_k:.2f})")
    under = frame[frame["underpowered"].astype(bool)]
    if not under.empty:
        lines.append(f"  underpowered: {len(under)} of {n_all} (with {int(under['n'].max())} pairs even all-positive "
                     f"differences cannot reach {level} over {n_all} tests)")
    if verdict["verdict"] != "stable":
        lines.append("  to settle it: " + _remedy(frame, beats, settings, n_units, unit, seed_tau))
    return lines[:6]


def _remedy(frame: pd.DataFrame, beats: pd.DataFrame, settings: AnalysisSettings, n_units: int, unit: str,
            seed_tau: float | None) -> str:
    """How many test units (at the observed effect and the corrected alpha) or seeds would settle it."""
    candidates = frame if beats.empty else beats
    needed = candidates.dropna(subset=["cases_needed"]).sort_values("cases_needed")
    parts = []
    if not needed.empty:
        r = needed.iloc[0]
        more = int(r.cases_needed)
        if more > n_units:
            parts.append(f"about {more} {unit}s (now {n_units}) would give {r.strategy} 80 % power at the corrected "
                         f"alpha, at its observed effect")
    elif beats.empty:
        parts.append("no strategy is ahead of the baseline on average; more cases would not change that")
    if seed_tau is None:
        parts.append("a second seed (--set 'seeds=[...]') shows whether the ranking survives another seed")
    elif seed_tau < 0.5:
        parts.append(f"the seeds' rankings agree poorly (mean Kendall tau {seed_tau:.2f}): more seeds would settle it")
    return "; ".join(parts) or "more test cases or seeds would narrow the intervals"


def optimum_line(best: list[str], settings: AnalysisSettings, n_sets: int) -> str:
    where = "every data set" if n_sets > 1 else "the data set"
    if best:
        return (f"optimum: {', '.join(best)} (beats the baseline and is stably in the top {settings.top_k} of {where})")
    return (f"optimum: none (no strategy beats the baseline and holds a top-{settings.top_k} place "
            f"in {where})")
