"""Everything ``python -m study.analyze`` reports, as numbers first (:class:`Analysis`), then text."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from study.analysis._clinical import clinical_cases, clinical_summary
from study.analysis._effects import AXIS_NAMES, chosen_cases, design_effects
from study.analysis._pairing import POOLED_CAVEAT
from study.analysis._ranking import optimum, rank_dataset, rank_strategies, seed_stability
from study.analysis._scaling import scaling
from study.analysis._settings import METRICS, AnalysisSettings, pooled_fractions
from study.analysis._tables import case_dice, normalise, select_trials, units
from study.analysis._transfer import transfer_summary
from study.analysis._verdict import dataset_verdict, headline, optimum_line
from study.errors import DataError


@dataclass
class Analysis:
    """The study's answers; each table is what the dashboard draws and what is written as CSV.

    ``chosen`` is, per data set, the strategy the clinical tables describe: the ``optimum`` (the
    strategy that beats the baseline and is better than every other in every data set), else the
    data set's rank 1. ``fraction_ranking`` ranks each label fraction the study ran on its own (the
    main ``ranking`` pools ``fractions``). ``verdicts`` and ``headline`` say it in words
    (``_verdict``).
    """

    settings: AnalysisSettings
    fractions: dict[str, tuple[float, ...]]
    unit: dict[str, str]
    ranking: pd.DataFrame
    optimum: list[str]
    chosen: dict[str, str]
    fraction_ranking: pd.DataFrame = field(default_factory=pd.DataFrame)
    seed_ranking: pd.DataFrame = field(default_factory=pd.DataFrame)
    seed_stability: pd.DataFrame = field(default_factory=pd.DataFrame)
    seed_agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    transfer: pd.DataFrame = field(default_factory=pd.DataFrame)
    scaling_fits: pd.DataFrame = field(default_factory=pd.DataFrame)
    scaling_tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    clinical_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    clinical_cases: pd.DataFrame = field(default_factory=pd.DataFrame)
    effects: pd.DataFrame = field(default_factory=pd.DataFrame)  # per data set, axis and level (_effects)
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)  # per data set and axis: eta2 vs its null
    chosen_cases: pd.DataFrame = field(default_factory=pd.DataFrame)  # per unit: chosen strategy vs baseline
    notes: list[str] = field(default_factory=list)
    verdicts: dict[str, dict] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    trials_used: int = 0
    trials_left_out: dict[str, int] = field(default_factory=dict)  # reason -> count

    def tables(self) -> dict[str, pd.DataFrame]:
        """The non-empty tables by file stem."""
        names = (
            "ranking",
            "fraction_ranking",
            "seed_ranking",
            "seed_stability",
            "seed_agreement",
            "transfer",
            "scaling_fits",
            "scaling_tests",
            "clinical_summary",
            "clinical_cases",
            "effects",
            "importance",
            "chosen_cases",
        )
        return {n: getattr(self, n) for n in names if not getattr(self, n).empty}

    def summary(self) -> dict:
        """Settings, choices and notes as plain JSON values."""
        return {
            "settings": asdict(self.settings),
            "fractions": {k: list(v) for k, v in self.fractions.items()},
            "unit": self.unit,
            "optimum": self.optimum,
            "chosen": self.chosen,
            "notes": self.notes,
        }

    def answer(self) -> dict:
        """``analysis/summary.json``: the verdict and what it rests on, for scripts and the report."""
        return {
            "pairing": self.settings.pairing,
            "seeds": self.seeds,
            "trials_used": self.trials_used,
            "trials_left_out": sum(self.trials_left_out.values()),
            "left_out": self.trials_left_out,
            "datasets": self.verdicts,
            "optimum": self.optimum,
            "headline": self.headline,
        }

    def to_json(self) -> dict:
        """The summary and every table as records; NaN becomes null."""
        return {**self.summary(), "tables": {n: records(t) for n, t in self.tables().items()}}


def records(table: pd.DataFrame) -> list[dict]:
    def clean(v: object) -> object:
        if isinstance(v, (np.bool_, bool)):
            return bool(v)
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return None if math.isnan(v) or math.isinf(v) else float(v)
        return None if v is pd.NA else v

    return [{k: clean(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def _chosen(ranking: pd.DataFrame, best: list[str]) -> dict[str, str]:
    out = {}
    for dataset, frame in ranking.groupby("dataset", sort=True):
        pick = [s for s in best if s in set(frame["strategy"])]
        out[str(dataset)] = pick[0] if pick else str(frame.sort_values("rank")["strategy"].iloc[0])
    return out


def _per_seed(
    seeded: pd.DataFrame, fractions: dict[str, tuple[float, ...]], settings: AnalysisSettings, kind: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    parts, notes = [], []
    for (dataset, seed), frame in seeded.groupby(["dataset", "seed"], sort=True):
        if not (frame["strategy"] == settings.baseline).any():
            notes.append(f"{dataset}: seed {seed} has no baseline run and is left out of the per-seed rankings")
            continue
        table, _ = rank_dataset(
            frame, str(dataset), fractions[dataset], settings, kind.get(dataset, "case"), stream=f"seed-{seed}"
        )
        parts.append(table.assign(seed=seed))
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), notes


def analyze(table: pd.DataFrame, settings: AnalysisSettings | None = None) -> Analysis:
    """Rank, correct, measure and fit from a per-case table (one row per trial, case and class).

    Needs columns dataset, strategy, label_fraction, case_id, class, dice; uses subject_id, seed,
    trial_id, val_loss, extent, scope, schedule, lr, unfrozen_lr and ``*_pct_err`` when present.
    """
    settings = settings or AnalysisSettings()
    full = normalise(by_metric(table, settings.metric))
    selected, notes = select_trials(full)
    notes += _tolerance_notes(selected, settings.metric)
    cases = case_dice(selected)
    fractions = {
        ds: pooled_fractions(f["label_fraction"], settings.fractions) for ds, f in cases.groupby("dataset", sort=True)
    }
    per_seed, kind = units(cases, settings.aggregate, by_seed=True)
    ranking, more = rank_strategies(per_seed, fractions, settings, kind)
    notes += more
    if settings.pairing == "pooled":
        notes.append(POOLED_CAVEAT)
    best = optimum(ranking)
    if ranking["dataset"].nunique() == 1:
        notes.append("one data set: the optimum is judged on it alone (the paper asks for one in MRI and CT)")
    chosen = _chosen(ranking, best)
    result = Analysis(
        settings,
        fractions,
        kind,
        ranking,
        best,
        chosen,
        notes=notes,
        seeds=sorted(int(s) for s in cases["seed"].unique()),
        trials_used=int(selected["trial_id"].nunique()) if "trial_id" in selected else 0,
    )
    if "trial_id" in full and len(full["trial_id"].unique()) > result.trials_used:
        result.trials_left_out["not_selected"] = int(full["trial_id"].nunique()) - result.trials_used
    if cases["seed"].nunique() > 1:
        result.seed_ranking, more = _per_seed(per_seed, fractions, settings, kind)
        result.notes += more
        result.seed_stability, result.seed_agreement = seed_stability(result.seed_ranking, settings.top_k)
    result.fraction_ranking, more = _per_fraction(per_seed, fractions, settings, kind)
    result.notes += more
    _verdicts(result, per_seed)
    per_unit, _ = units(cases, settings.aggregate)
    result.transfer = transfer_summary(full, ranking, fractions, settings)
    result.effects, result.importance, more = design_effects(full, selected, fractions, settings)
    result.notes += more
    result.chosen_cases = chosen_cases(selected, chosen, fractions, settings)
    extents = None
    if "extent" in selected:
        known = selected.dropna(subset=["extent"]).drop_duplicates("strategy")
        extents = dict(zip(known["strategy"], known["extent"].astype(float)))
    result.scaling_fits, result.scaling_tests = scaling(per_unit, settings.baseline, extents, settings.alpha)
    result.clinical_summary = clinical_summary(selected, chosen, settings.baseline)
    result.clinical_cases = clinical_cases(selected, chosen, settings.baseline, fractions)
    return result


def by_metric(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The table with ``dice`` replaced by the score the analysis ranks: the metric's own column
    where higher is better (Dice, NSD), its negative where lower is (HD95, so every difference is a
    reduction and positive means better); the tables' ``dice`` column then holds that score."""
    if metric == "dice":
        return table
    _, higher, _ = METRICS[metric]
    if metric not in table.columns:
        raise DataError(
            f"the per-case tables have no {metric!r} column: their trials ran before boundary "
            "metrics were recorded; rank by dice, or run the study again with --fresh"
        )
    values = table[metric].astype(float)
    if not values.notna().any():
        raise DataError(f"the per-case tables' {metric!r} column is empty: nothing to rank")
    if "trial_id" in table:  # a study resumed across the change: some trials' tables have no such column
        has = values.notna().groupby(table["trial_id"]).any()
        scored = table["dice"].notna().groupby(table["trial_id"]).any()
        older = sorted(has.index[~has & scored])
        if older:
            raise DataError(
                f"{len(older)} trial(s) have no {metric!r} values ({', '.join(older[:3])}"
                f"{', ...' if len(older) > 3 else ''}): they ran before boundary metrics were recorded; "
                "rank by dice, or run them again (--fresh)"
            )
    return table.assign(dice=values if higher else -values)


def _tolerance_notes(table: pd.DataFrame, metric: str) -> list[str]:
    """NSD compared across trials evaluated at different tolerances (a spec changed between runs)."""
    if metric != "nsd" or "nsd_tol_mm" not in table:
        return []
    spread = table.groupby(["dataset", "class"], sort=True)["nsd_tol_mm"].nunique()
    mixed = [f"{d}/{c}" for (d, c), n in spread.items() if n > 1]
    return (
        [
            f"NSD of {', '.join(mixed)} was evaluated at different tolerances by different trials (nsd_tol_mm); "
            "their NSD values are not comparable"
        ]
        if mixed
        else []
    )


def _per_fraction(
    per_seed: pd.DataFrame, fractions: dict[str, tuple[float, ...]], settings: AnalysisSettings, kind: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """Each label fraction the study ran, ranked on its own, where it is not the main ranking."""
    parts, notes = [], []
    for dataset, frame in per_seed.groupby("dataset", sort=True):
        for f in sorted(frame["label_fraction"].unique()):
            if (float(f),) == tuple(fractions[dataset]):
                continue
            try:
                table, _ = rank_dataset(
                    frame, str(dataset), (float(f),), settings, kind.get(dataset, "case"), stream=f"fraction-{f:g}"
                )
            except DataError as exc:
                notes.append(f"{dataset} at label fraction {f:g} is not ranked on its own: {exc}")
                continue
            parts.append(table.assign(label_fraction=float(f)))
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), notes


def _verdicts(result: Analysis, per_seed: pd.DataFrame) -> None:
    settings = result.settings
    for dataset, frame in result.ranking.groupby("dataset", sort=True):
        name = str(dataset)
        verdict = dataset_verdict(frame, settings)
        parts = [(result.fractions[name], frame, verdict)]
        verdict = {**verdict, "fractions": list(result.fractions[name]), "by_fraction": {}}
        if not result.fraction_ranking.empty:
            mine = result.fraction_ranking[result.fraction_ranking["dataset"] == name]
            for f, part in mine.groupby("label_fraction", sort=True):
                v = dataset_verdict(part, settings)
                verdict["by_fraction"][f"{f:g}"] = v
                parts.append(((float(f),), part, v))
        if len(result.fractions[name]) == 1:
            verdict["by_fraction"][f"{result.fractions[name][0]:g}"] = parts[0][2]
        parts = [parts[0]] + sorted(parts[1:], key=lambda p: p[0][0])
        tau = None
        if not result.seed_agreement.empty:
            taus = result.seed_agreement.loc[result.seed_agreement["dataset"] == name, "kendall_tau"]
            tau = float(taus.mean()) if taus.notna().any() else None
        n_units = int(per_seed.loc[per_seed["dataset"] == name, "unit"].nunique())
        result.verdicts[name] = verdict
        result.headline += headline(parts, settings, n_units, result.unit.get(name, "case"), tau)
    result.headline.append(optimum_line(result.optimum, len(result.verdicts)))


def _p(v: float) -> str:
    if v != v:
        return "-"
    return f"{v:.2e}" if v < 1e-3 else f"{v:.3f}"


def _num(v: float, digits: int = 3) -> str:
    return "-" if v != v else f"{v:+.{digits}f}"


def format_ranking(analysis: Analysis) -> str:
    """The terminal table: per data set, strategies by p with effect sizes and adjusted p."""
    lines: list[str] = [*analysis.headline, ""]
    k = analysis.settings.top_k
    rope = f"{analysis.settings.rope:g}"
    delta = {"dice": "median dDice", "nsd": "median dNSD", "hd95": "median HD95 reduction (mm)"}[
        analysis.settings.metric
    ]
    headers = [
        "rank",
        "strategy",
        "n",
        delta,
        "HL shift [95% CI]",
        "rank-biserial",
        "p",
        "Holm p",
        "BH p",
        f"P(worse/+-{rope}/better)",
        f"P(top-{k})",
        "flag",
    ]
    for dataset, frame in analysis.ranking.groupby("dataset", sort=True):
        fr = ", ".join(f"{f:g}" for f in analysis.fractions[dataset])
        unit = analysis.unit.get(dataset, "case")
        seeds = len(analysis.seeds)
        how = (
            f"one pair per {unit}, its differences averaged over label fractions {fr}"
            + (f" and {seeds} seeds" if seeds > 1 else "")
            if analysis.settings.pairing == "per_case"
            else f"pairs per {unit} and label fraction, pooled over {fr} (the paper's protocol)"
        )
        by = "" if analysis.settings.metric == "dice" else f" by {analysis.settings.metric_name}"
        lines.append(
            f"{dataset}: {len(frame)} strategies vs {analysis.settings.baseline!r}{by}, one-sided Wilcoxon, {how}"
        )
        rows = [
            [
                str(r.rank),
                r.strategy,
                str(r.n),
                _num(r.median_diff),
                f"{_num(r.hl_shift)} [{_num(r.hl_ci_low)}, {_num(r.hl_ci_high)}]",
                _num(r.rank_biserial, 2),
                _p(r.p),
                _p(r.p_holm),
                _p(r.p_bh),
                f"{r.p_worse:.2f}/{r.p_equivalent:.2f}/{r.p_better:.2f}",
                f"{r.p_top_k:.2f}",
                ",".join(
                    f
                    for f, on in (
                        ("beats", r.beats_baseline),
                        ("best-set", r.best_set),
                        ("underpowered", r.underpowered),
                        ("incomplete", bool(r.incomplete)),
                        (r.method, r.method != "exact"),
                    )
                    if on
                ),
            ]
            for r in frame.itertuples()
        ]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
        left = {1, len(headers) - 1}

        def fmt(cells: list[str], widths: list[int] = widths, left: set[int] = left) -> str:
            return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        lines += ["  " + fmt(headers), "  " + fmt(["-" * w for w in widths])]
        lines += ["  " + fmt(row).rstrip() for row in rows]
        lines.append("")
    lines += _effect_lines(analysis) + _seed_lines(analysis) + _scaling_lines(analysis)
    lines += [f"note: {n}" for n in analysis.notes]
    return "\n".join(lines)


def _effect_lines(analysis: Analysis) -> list[str]:
    """Per data set and axis: each level's mean paired dDice [95 % CI] and the axis' importance
    beside its null."""
    if analysis.effects.empty:
        return []
    lines = []
    weight = {(r.dataset, r.axis): r for r in analysis.importance.itertuples()}
    for dataset, frame in analysis.effects.groupby("dataset", sort=True):
        d = {"dice": "dDice", "nsd": "dNSD", "hd95": "HD95 reduction (mm)"}[analysis.settings.metric]
        lines.append(
            f"design-axis effects, {dataset}: mean paired {d} vs the baseline per level [95% CI], each at "
            f"its selected lr (a learning rate: against the baseline at the same rate)"
            + (
                f"; importance: eta2 of the strategies' {d} [its null's {1 - analysis.settings.alpha:.0%} "
                f"quantile], Holm p"
                if weight
                else ""
            )
        )
        axes = sorted(frame["axis"].unique(), key=lambda a: -getattr(weight.get((dataset, a)), "importance", -1.0))
        for axis in axes:
            part = frame[frame["axis"] == axis]
            levels = ", ".join(
                f"{r.level}{f' (lacks {r.missing})' if r.missing else ''} {_num(r.mean_diff)} "
                f"[{_num(r.ci_low)}, {_num(r.ci_high)}]"
                for r in part.itertuples()
            )
            w = weight.get((dataset, axis))
            share = (
                f" (importance {w.importance:.2f} [{w.null_high:.2f}], p {_p(w.p_holm)}"
                f"{', important' if w.important else ''})"
                if w is not None
                else ""
            )
            lines.append(f"  {AXIS_NAMES.get(axis, axis)}{share}: {levels}")
        lines.append("")
    return lines


def _seed_lines(analysis: Analysis) -> list[str]:
    if analysis.seed_stability.empty:
        return []
    lines = []
    for dataset, frame in analysis.seed_stability.groupby("dataset", sort=True):
        tau = analysis.seed_agreement.loc[analysis.seed_agreement["dataset"] == dataset, "kendall_tau"].mean()
        always = frame.loc[frame["top_k_share"] == 1.0, "strategy"].tolist()
        lines.append(
            f"seeds, {dataset}: {frame['n_seeds'].max()} seeds, mean Kendall tau {tau:.2f}; in the top "
            f"{analysis.settings.top_k} on every seed: {', '.join(always) or 'none'}"
        )
    return lines


def _scaling_lines(analysis: Analysis) -> list[str]:
    lines = []
    for r in analysis.scaling_fits.itertuples():
        fit = (
            f"a={r.a:.4g}, k={r.k:.3g} [{r.k_low:.3g}, {r.k_high:.3g}], c={r.c:.4g}, S={r.rse:.2g}; vs a constant "
            f"gain p {_p(r.p_step)}; {'identified' if r.identified else r.note}"
            if r.a == r.a
            else r.note
        )
        lines.append(f"scaling, {r.dataset} {r.family} at fraction {r.label_fraction:g}: {fit}")
    return lines
