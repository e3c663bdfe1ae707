"""The dashboard's sections, each from the study's state, records and analysis: the answer, the overview
and plan, the effects of each axis, the drill-down, the boundary metrics, the figures."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from study.analysis import Analysis
from study.design import axes as design_axes
from study.folder.records import Status, TrialRecord
from study.report import _figures as figures
from study.report._html import (
    _image,
    _level,
    _missing,
    _section,
    _table,
)


def _axes(spec: dict) -> list[tuple[str, list]]:
    """The study's design as (field, levels) rows, as a reader scans them."""
    rows: list[tuple[str, list]] = [
        ("datasets", spec.get("datasets", [])),
        ("label_fractions", spec.get("label_fractions", [])),
    ]
    for section in ("pretraining", "finetuning"):
        for name, levels in (spec.get(section) or {}).items():
            rows.append((f"{section}.{name}", levels if isinstance(levels, list) else [levels]))
    base = spec.get("baseline") or {}
    rows.append(
        ("baseline", ["on" if base.get("enabled", True) else "off"] + ([f"lr {base['lr']}"] if base.get("lr") else []))
    )
    search = spec.get("search") or {}
    rows.append(
        (
            "search",
            [search.get("algorithm", "grid")]
            + ([f"{search['num_samples']} samples"] if search.get("num_samples") else []),
        )
    )
    rows.append(("seeds", spec.get("seeds") or [spec.get("seed")]))
    scale = spec.get("scale") or {}
    rows.append(("scale", [scale.get("profile", "laptop") if isinstance(scale, dict) else scale]))
    res = spec.get("resources") or {}
    rows.append(
        ("resources per trial", [f"{res.get('cpus_per_trial', 1):g} CPU", f"{res.get('gpus_per_trial', 0):g} GPU"])
    )
    rows.append(("analysis", [f"pairing {(spec.get('analysis') or {}).get('pairing', 'per_case')}"]))
    return rows


def _resolved(spec: dict) -> list[tuple[str, list]]:
    """:func:`_axes` with what the spec leaves to its scale profile resolved: ``finetuning.lr 0.01
    (the laptop profile's)`` rather than null."""
    rows = _axes(spec)
    try:
        from study.design.spec import StudySpec

        full = StudySpec.model_validate(spec)
    except Exception:  # noqa: BLE001 - a spec this version cannot read: shown as written
        return rows
    profile = full.scale.profile
    resolved = {a.path: getattr(full.scale, a.scale_default) for a in design_axes.AXES if a.scale_default}
    null_means = {a.path: a.null_means for a in design_axes.AXES if a.null_means}
    out = []
    for name, levels in rows:
        if name in resolved and levels == [None]:
            levels = [f"{resolved[name]:g} (the {profile} profile's)"]
        elif name in null_means and levels == [None]:
            levels = [null_means[name]]
        out.append((name, levels))
    return out


def _plan_table(state: dict, results: list[TrialRecord]) -> str:
    """Every planned trial as a cell (data set and strategy by label fraction): its test Dice, or
    why it has none."""
    from study.design.plan import TrialPoint

    by_id = {r.trial_id: r for r in results}
    points = []
    for entry in state.get("trials") or []:
        try:
            points.append(TrialPoint.from_json(entry))
        except (TypeError, KeyError, ValueError):
            continue  # an entry this version cannot rebuild; its record still counts above
    cells = [(p.dataset, p.strategy, p.label_fraction, p.id) for p in points] or [
        (r.dataset, r.strategy, r.label_fraction, r.trial_id) for r in results
    ]
    if not cells:
        return ""

    def shown(trial_id: str) -> str:
        r = by_id.get(trial_id)
        if r is None:
            return "pending"
        if r.status is Status.FINISHED:
            return f"{r.dice:.3f}" if r.dice is not None else "finished"
        return r.status.value

    frame = pd.DataFrame(
        [{"data set": ds, "strategy": st, "fraction": f"{fr:g}", "cell": shown(tid)} for ds, st, fr, tid in cells]
    )
    # Several trials in one cell (a searched lr, several seeds): each shown, in plan order.
    grid = (
        frame.groupby(["data set", "strategy", "fraction"], sort=True)["cell"]
        .agg(" / ".join)
        .unstack("fraction")
        .reset_index()
        .fillna("")
    )
    fractions = sorted((c for c in grid.columns if c not in ("data set", "strategy")), key=float)
    grid = grid[["data set", "strategy", *fractions]]
    grid.columns = ["data set", "strategy", *[f"test Dice @{f}" for f in fractions]]
    return "<h3>The plan: test Dice of each trial</h3>" + _table(grid, 'class="plan"')


def _effects(analysis: Analysis, folder: Path) -> str:
    """Design-axis effects and importance, per data set, with the forest plot."""
    title = "Design-axis effects"
    if analysis.effects.empty:
        return _missing(title, "the study varies no design axis across its pretrained strategies.")

    def mark(r: Any) -> str:
        return "helps" if r.ci_low > 0 else "hurts" if r.ci_high < 0 else ""

    body = _image(figures.effects_figure(analysis.effects, analysis.importance), folder, "fig_effects", title)
    for ds, part in analysis.effects.groupby("dataset", sort=True):
        attrs = f'class="effects" data-dataset="{html.escape(str(ds), quote=True)}"'
        body += f"<h3>{html.escape(str(ds))}</h3>" + _table(
            part,
            attrs,
            [
                "axis",
                "level",
                "n_trials",
                "n",
                "mean_diff",
                "ci_low",
                "ci_high",
                "positive",
                "baseline_at",
                "missing",
                "resampled",
                "incomplete",
            ],
            row_class=mark,
        )
        imp = analysis.importance[analysis.importance["dataset"] == ds] if not analysis.importance.empty else None
        if imp is not None and not imp.empty:
            body += _table(
                imp,
                f'class="importance" data-dataset="{html.escape(str(ds), quote=True)}"',
                ["axis", "importance", "null_mean", "null_high", "p", "p_holm", "important", "levels", "n_strategies"],
            )
    pairing = "one pair per unit" if analysis.settings.pairing == "per_case" else "pairs per unit and label fraction"
    return _section(
        title,
        body,
        "Each level of each design axis on its own: the strategies with that level, each at its selected "
        "learning rate (the trials the ranking uses), paired with the supervised baseline at its selected "
        f"learning rate as the ranking pairs ({pairing}); a learning rate: every pretrained trial at that "
        "rate against the baseline at the same rate. Mean paired difference in Dice with a 95 % percentile "
        "bootstrap interval over the units, and the seeds when there are several (green: above 0, red: "
        "below). Marginal over the study's other axes; missing: configurations the level lacks that other "
        "levels of its axis have (stopped, failed or not drawn), so it averages the rest only. Importance: "
        "eta squared, the share of the strategies' mean paired differences' sum of squares between the "
        "axis's level means, beside its null (values shuffled across strategies: mean and 1 - alpha "
        "quantile); important where the Holm-adjusted permutation p is at most alpha.",
    )


def _drill_down(analysis: Analysis, shown: int = 5) -> str:
    title = "Per-case drill-down"
    if analysis.chosen_cases.empty:
        return _missing(title, "the chosen strategy shares no test case with the baseline.")
    body = ""
    for ds, part in analysis.chosen_cases.groupby("dataset", sort=True):
        part = part.sort_values("diff", ascending=False)
        strategy = str(part["strategy"].iloc[0])

        def attrs(kind: str, ds: object = ds) -> str:
            return f'class="cases {kind}" data-dataset="{html.escape(str(ds), quote=True)}"'

        columns = ["unit", "dice", "dice_baseline", "diff", "cells"]
        body += (
            f"<h3>{html.escape(str(ds))}: {html.escape(strategy)}</h3>"
            f"<p>Helps most ({len(part)} units in all, {int((part['diff'] > 0).sum())} better than the baseline):</p>"
            + _table(part.head(shown), attrs("helps"), columns)
            + "<p>Hurts most:</p>"
            + _table(part.tail(shown).iloc[::-1], attrs("hurts"), columns)
        )
    return _section(
        title,
        body,
        "The test cases (or patients) where the chosen strategy gains most and loses most "
        "against the supervised baseline: class-averaged Dice averaged over the pooled label fractions "
        "and seeds (cells: how many fraction x seed pairs).",
    )


def _boundary(table: pd.DataFrame, analysis: Analysis) -> str:
    """Dice beside NSD and HD95 per class for the chosen strategy and the baseline (study.analysis._boundary)."""
    from study.analysis._boundary import boundary_summary

    title = "Boundary metrics"
    frame = boundary_summary(table, analysis.chosen, analysis.settings.baseline)
    if frame.empty:
        return _missing(title, "the per-case tables carry no NSD or HD95 (trials run before they were recorded).")
    return _section(
        title,
        _table(frame, 'class="boundary"'),
        "Per class, the chosen strategy and the supervised baseline: mean test Dice, normalised surface "
        "distance at the class's tolerance (nsd_tol_mm) and the 95th-percentile Hausdorff distance in mm "
        "(mean and median), over the cases where the class is present; python -m study.analyze NAME "
        "--metric nsd (or hd95) ranks by them.",
    )


def _overview(state: dict, results: list[TrialRecord], analysis: Analysis | None, *, optuna: str | None = None) -> str:
    spec = state.get("spec", {})
    done = [r for r in results if r.status is Status.FINISHED]
    failed = [r for r in results if r.status is Status.FAILED]
    errored = [r for r in results if r.status is Status.ERRORED]
    planned = len(state.get("trials", [])) or len(results)
    pretrainings = {r.pretrain_key for r in results if r.pretrain_key}
    wall = sum(r.seconds or 0 for r in results)
    uri = state.get("tracking_uri", "")
    run = state.get("parent_run_id", "")
    link = (
        f' (<a href="{html.escape(uri)}">{html.escape(uri)}</a>)'
        if uri.startswith("http")
        else f" in {html.escape(uri)}"
    )

    def bad(group: list) -> str:
        return ' class="failed"' if group else ""  # red only when there are some

    counts = (
        f'<p class="counts"><span>planned trials: <b>{planned}</b></span><span>finished: <b>{len(done)}</b></span>'
        f"<span>stopped early: <b>{sum(r.stopped for r in results)}</b></span>"
        f"<span{bad(failed)}>failed: <b>{len(failed)}</b></span><span{bad(errored)}>errored: "
        f"<b>{len(errored)}</b></span>"
        f"<span>pending: <b>{max(planned - len(results), 0)}</b></span>"
        f"<span>pretrainings: <b>{len(pretrainings)}</b></span><span>summed trial time: "
        f"<b>{wall / 60:.1f} min</b></span></p>"
    )
    rows = pd.DataFrame([{"axis": name, "levels": ", ".join(map(_level, levels))} for name, levels in _resolved(spec)])
    body = (
        counts
        + _table(rows, 'class="axes"')
        + _plan_table(state, results)
        + f"<p>MLflow parent run <code>{html.escape(run)}</code>{link}"
        + (f"; the search in Optuna's dashboard: <code>optuna-dashboard {html.escape(optuna)}</code>" if optuna else "")
        + ".</p>"
    )
    body += (
        '<details><summary>The spec as run (YAML)</summary><pre class="spec">'
        + html.escape(yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100))
        + "</pre></details>"
    )
    for title, group in (
        ("Failed trials (a retry cannot help)", failed),
        ("Errored trials (retried, no result; run the study again to retry)", errored),
    ):
        if group:
            items = "".join(
                f"<li>{html.escape(r.strategy)} on {html.escape(r.dataset)} at "
                f"{r.label_fraction}: {html.escape(r.reason)}</li>"
                for r in group
            )
            body += f'<p class="failed">{html.escape(title)}:</p><ul class="failed">{items}</ul>'
    stopped = sorted(
        (r for r in results if r.stopped), key=lambda r: (r.dataset, r.strategy, r.lr or 0, r.label_fraction)
    )
    if stopped:
        rows = pd.DataFrame(
            [
                {
                    "data set": r.dataset,
                    "strategy": r.strategy,
                    "lr": r.lr,
                    "label fraction": r.label_fraction,
                    "rung": int(r.metrics.get("rung", -1)) + 1,
                    "epoch": int(r.metrics.get("rung_epoch", 0)),
                    "Holm p": r.metrics.get("p_holm", float("nan")),
                }
                for r in stopped
            ]
        )
        body += (
            "<p>Stopped early by the pruning rungs (another configuration of their data set was better on "
            "the validation patients, Holm over every ordered pair; never ranked):</p>"
            + _table(rows, 'class="stopped"')
        )
    if analysis is not None and analysis.notes:
        body += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in analysis.notes) + "</ul>"
    return _section("Overview", body, "The spec as run, what finished, and where the MLflow runs are.")


def _answer(analysis: Analysis) -> str:
    """The headline of ``study.analyze``, first thing on the page."""
    lines = "".join(
        f'<li class="{"sub" if line.startswith(" ") else "head"}">{html.escape(line.strip())}</li>'
        for line in analysis.headline
    )
    return _section(
        "Answer",
        f'<ul class="headline">{lines}</ul>',
        "Per label fraction: which strategies beat the supervised baseline at the corrected level, "
        "which of them the data separate (the best set: no other strategy shown better), what is "
        "practically equivalent to the baseline, and what would settle it.",
    )


def _chosen_line(analysis: Analysis) -> str:
    """Which strategy each data set's "chosen strategy" is, and whether it beat the baseline: the
    first of the best set when one beats it, else the best ranked, shown for comparison only."""
    if not analysis.chosen:
        return ""
    ranking = analysis.ranking
    items = []
    for ds, strategy in sorted(analysis.chosen.items()):
        rows = ranking[(ranking["dataset"] == ds) & (ranking["strategy"] == strategy)] if not ranking.empty else ranking
        beats = bool(rows["beats_baseline"].any()) if "beats_baseline" in rows else False
        verdict = (
            "beats the supervised baseline"
            if beats
            else "did not beat the supervised baseline: the best ranked, shown for comparison"
        )
        items.append(f"<li><b>{html.escape(str(ds))}</b>: <code>{html.escape(strategy)}</code> ({verdict})</li>")
    return f'<ul class="chosen">{"".join(items)}</ul>'


def _figure(title: str, fig, folder: Path, stem: str, caption: str, why_missing: str, extra: str = "") -> str:
    """A figure's section, or a note saying why the study cannot draw it."""
    if fig is None:
        return _missing(title, why_missing)
    return _section(title, _image(fig, folder, stem, title) + extra, caption)


def _with_chosen(section: str, analysis: Analysis) -> str:
    """A section about "the chosen strategy", naming it (before its caption)."""
    if "Left out:" in section:
        return section
    head, sep, tail = section.rpartition('<p class="caption">')
    return head + "<p>The chosen strategy:</p>" + _chosen_line(analysis) + sep + tail
