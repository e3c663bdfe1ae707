"""The study's dashboard: one self-contained HTML file with the paper's figures and tables.

``build_report(store, ...)`` writes ``<study>/report/report.html`` (every image inline as a data URI,
no script, nothing fetched from a network) and each figure as PNG and SVG in
``<study>/report/figures/``. Templates and styles live in ``dashboards/``.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from string import Template

import pandas as pd

from study.analysis import Analysis, AnalysisSettings, analyze
from study.records import Status, TrialRecord
from study.report import _figures as figures
from study.store import StudyStore

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
RANKING_SHOWN = ["rank", "strategy", "n", "median_diff", "hl_shift", "hl_ci_low", "hl_ci_high", "rank_biserial",
                 "p", "p_holm", "p_bh", "beats_baseline", "p_top_k", "underpowered", "incomplete"]


def _table(frame: pd.DataFrame, attrs: str = "", columns: list[str] | None = None, digits: int = 3) -> str:
    frame = frame[[c for c in (columns or list(frame.columns)) if c in frame]]
    head = "".join(f'<th class="{"text" if frame[c].dtype == object else ""}">{html.escape(str(c))}</th>' for c in frame)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for v in values:
            if isinstance(v, float):
                text = "" if pd.isna(v) else (f"{v:.2e}" if 0 < abs(v) < 1e-3 else f"{v:.{digits}f}")
                cells.append(f"<td>{text}</td>")
            else:
                cells.append(f'<td class="text">{html.escape(str(v))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _section(title: str, body: str, caption: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}<p class=\"caption\">{html.escape(caption)}</p></section>"


def _missing(title: str, why: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2><p class=\"note\">Left out: {html.escape(why)}</p></section>"


def _image(fig, folder: Path, stem: str, alt: str) -> str:
    png, _ = figures.save(fig, folder, stem)
    data = base64.b64encode(png.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _overview(state: dict, results: list[TrialRecord], analysis: Analysis | None) -> str:
    spec = state.get("spec", {})
    done = [r for r in results if r.status is Status.FINISHED]
    failed = [r for r in results if r.status is Status.FAILED]
    errored = [r for r in results if r.status is Status.ERRORED]
    planned = len(state.get("trials", [])) or len(results)
    pretrainings = {r.pretrain_key for r in results if r.pretrain_key}
    wall = sum(r.seconds or 0 for r in results)
    uri = state.get("tracking_uri", "")
    run = state.get("parent_run_id", "")
    link = f' (<a href="{html.escape(uri)}">{html.escape(uri)}</a>)' if uri.startswith("http") else f" in {html.escape(uri)}"
    counts = (f'<p class="counts"><span>planned trials: <b>{planned}</b></span><span>finished: <b>{len(done)}</b></span>'
              f'<span>stopped early: <b>{sum(r.stopped for r in results)}</b></span>'
              f'<span class="failed">failed: <b>{len(failed)}</b></span><span class="failed">errored: <b>{len(errored)}</b></span>'
              f'<span>pending: <b>{max(planned - len(results), 0)}</b></span>'
              f'<span>pretrainings: <b>{len(pretrainings)}</b></span><span>summed trial time: <b>{wall / 60:.1f} min</b></span></p>')
    res = spec.get("resources", {})
    rows = pd.DataFrame([
        {"field": "data sets", "value": ", ".join(map(str, spec.get("datasets", [])))},
        {"field": "scale", "value": str(spec.get("scale", {}))},
        {"field": "pretraining axes", "value": str(spec.get("pretraining"))},
        {"field": "fine-tuning axes", "value": str(spec.get("finetuning"))},
        {"field": "label fractions", "value": str(spec.get("label_fractions"))},
        {"field": "seeds (replicates)", "value": ", ".join(map(str, spec.get("seeds") or [spec.get("seed")]))},
        {"field": "pairing", "value": str((spec.get("analysis") or {}).get("pairing", "per_case"))},
        {"field": "search", "value": str(spec.get("search"))},
        {"field": "resources per trial", "value": f"{res.get('cpus_per_trial')} CPU, {res.get('gpus_per_trial')} GPU"},
        {"field": "MLflow parent run", "value": f"{run}"},
    ])
    body = counts + _table(rows) + f"<p>MLflow parent run <code>{html.escape(run)}</code>{link}.</p>"
    for title, group in (("Failed trials (a retry cannot help)", failed), ("Errored trials (retried, no result; run the "
                         "study again to retry)", errored)):
        if group:
            items = "".join(f"<li>{html.escape(r.strategy)} on {html.escape(r.dataset)} at "
                            f"{r.label_fraction}: {html.escape(r.reason)}</li>" for r in group)
            body += f'<p class="failed">{html.escape(title)}:</p><ul class="failed">{items}</ul>'
    stopped = sorted((r for r in results if r.stopped), key=lambda r: (r.dataset, r.strategy, r.lr or 0,
                                                                       r.label_fraction))
    if stopped:
        rows = pd.DataFrame([{"data set": r.dataset, "strategy": r.strategy, "lr": r.lr, "label fraction": r.label_fraction,
                              "rung": int(r.metrics.get("rung", -1)) + 1, "epoch": int(r.metrics.get("rung_epoch", 0)),
                              "Holm p": r.metrics.get("p_holm", float("nan"))} for r in stopped])
        body += ('<p>Stopped early by the pruning rungs (worse than their data set\'s leader on the validation '
                 'cases; never ranked):</p>' + _table(rows, 'class="stopped"'))
    if analysis is not None and analysis.notes:
        body += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in analysis.notes) + "</ul>"
    return _section("Overview", body, "The spec as run, what finished, and where the MLflow runs are.")


def _answer(analysis: Analysis) -> str:
    """The headline of ``study.analyze``, first thing on the page."""
    lines = "".join(f'<li class="{"sub" if line.startswith(" ") else "head"}">{html.escape(line.strip())}</li>'
                    for line in analysis.headline)
    return _section("Answer", f'<ul class="headline">{lines}</ul>',
                    "Which strategies beat the supervised baseline at the corrected level, whether the ranking is "
                    "stable under resampling of cases and seeds, and what would settle it.")


def _figure(title: str, fig, folder: Path, stem: str, caption: str, why_missing: str, extra: str = "") -> str:
    """A figure's section, or a note saying why the study cannot draw it."""
    if fig is None:
        return _missing(title, why_missing)
    return _section(title, _image(fig, folder, stem, title) + extra, caption)


def build_report(store: StudyStore, state: dict, table: pd.DataFrame, results: list[TrialRecord], *,
                 settings: AnalysisSettings | None = None) -> Path:
    """Write the dashboard of a study whose per-case ``table`` is loaded; returns the HTML path."""
    study_dir, out = store.root, store.report_dir
    figs = out / "figures"
    if settings is None:
        from study.analyze import spec_settings

        settings = AnalysisSettings(**spec_settings(state, pairing=None, top_k=None))
    analysis = analyze(table, settings)
    l2 = figures.inpainting_table(store, state)
    ranking = analysis.ranking
    body = "".join(f"<h3>{html.escape(ds)}</h3>" + _table(part, f'class="ranking" data-dataset="{html.escape(ds, quote=True)}"', RANKING_SHOWN)
                   for ds, part in ranking.groupby("dataset", sort=True))
    pairs = ("one pair per case (or patient), its differences averaged over the label-limited fractions and seeds"
             if analysis.settings.pairing == "per_case" else
             "pairs per case and label fraction pooled over the label-limited fractions (the paper's protocol; "
             "correlated pairs make these p-values too small)")
    parts = [
        _answer(analysis),
        _overview(state, results, analysis),
        _figure("Figure 1. Corruptions", figures.corruption_examples(state), figs, "fig1_corruptions",
                "One training slice corrupted by each pretext task, sampler and patch size of the study "
                "(K in pixels of a 512 x 512 image; the pixels used at this image size in brackets).",
                "the study has no pretraining axes or its data cannot be opened."),
        _section("Table 2. Inpainting L2 norm", _table(l2, 'class="inpainting"'),
                 "L2 norm of restored minus original per held-out slice, mean and SD, per pretraining: "
                 "lower is a better restoration.") if not l2.empty
        else _missing("Table 2. Inpainting L2 norm", "no pretraining has finished."),
        _figure("Figures 3-4. Dice against label fraction", figures.dice_vs_fraction(table, analysis.chosen), figs,
                "fig3_dice_vs_fraction",
                "Mean test Dice per class and data set at each label fraction: every strategy (thin), the chosen "
                "strategy (red), the supervised baseline (black) and its value with the most labels (dashed).",
                "the study has a single label fraction."),
        _section("Table 3. Ranking against the supervised baseline", body,
                 f"One-sided Wilcoxon signed-rank test (strategy greater) on paired class-averaged Dice, {pairs}; "
                 "Holm and Benjamini-Hochberg adjusted p; median paired difference, Hodges-Lehmann shift with its "
                 f"95 % interval, matched-pairs rank-biserial; P(top-{analysis.settings.top_k}): share of bootstrap "
                 "resamples of the cases (and seeds) in which the strategy ranks in the top k.")
        if not ranking.empty else _missing("Table 3. Ranking", "no strategy could be paired with the baseline."),
        _figure("Figure 5. Scaling with unlabeled data", figures.scaling_figure(table, analysis.scaling_fits), figs,
                "fig5_scaling", "Test Dice against pretraining extent per label fraction with the fit Dice = a x^k + c.",
                "the study has fewer than two pretraining extents.",
                extra=_table(analysis.scaling_fits, 'class="scaling"')),
        _figure("Figure 6. Clinical metric errors", figures.clinical_figure(analysis.clinical_summary), figs,
                "fig6_clinical", "Median signed percent error of each clinical measurement from the predicted masks, "
                "per class and label fraction, for the chosen strategy and the supervised baseline.",
                "the data carry no clinical measurements."),
        _figure("Figure 7. Per-case clinical errors", figures.clinical_cases_figure(analysis.clinical_cases), figs,
                "fig7_clinical_cases", "Per test case, absolute percent error of the baseline (x) against the chosen "
                "strategy (y), averaged over classes and label-limited fractions; points below the diagonal favour "
                "the strategy.", "the data carry no clinical measurements."),
        _figure("Figure A1. Transfer choices", figures.transfer_figure(table), figs, "figA1_transfer",
                "Per-case test Dice of each transfer scope, schedule and learning rate, best median first.",
                "the study varies no transfer choice."),
    ]

    template = Template((DASHBOARDS / "report.html").read_text())
    page = template.substitute(
        title=html.escape(f"Study {state.get('name', study_dir.name)}"),
        subtitle=html.escape(f"{study_dir}"), css=(DASHBOARDS / "report.css").read_text(),
        sections="\n".join(parts), written=time.strftime("%Y-%m-%d %H:%M"), figures=html.escape(str(figs)),
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
