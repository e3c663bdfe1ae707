"""The study's dashboard: one self-contained HTML file with the paper's figures and tables.

``build_report(store, ...)`` writes ``<study>/report/report.html`` (every image inline as a data URI,
no script, nothing fetched from a network) and each figure as PNG and SVG in
``<study>/report/figures/``. Templates and styles live in ``dashboards/``.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd

from study.analysis import Analysis, AnalysisSettings, analyze
from study.folder.records import TrialRecord
from study.folder.store import StudyStore
from study.report import _figures as figures
from study.report._html import (
    DASHBOARDS,
    RANKING_SHOWN,
    _missing,
    _section,
    _table,
)
from study.report._sections import (
    _answer,
    _boundary,
    _drill_down,
    _effects,
    _figure,
    _overview,
    _with_chosen,
)


def build_report(
    store: StudyStore,
    state: dict,
    table: pd.DataFrame,
    results: list[TrialRecord],
    *,
    settings: AnalysisSettings | None = None,
) -> Path:
    """Write the dashboard of a study whose per-case ``table`` is loaded; returns the HTML path."""
    return write_report(store, state, table, results, settings=settings)[0]


def write_report(
    store: StudyStore,
    state: dict,
    table: pd.DataFrame,
    results: list[TrialRecord],
    *,
    settings: AnalysisSettings | None = None,
) -> tuple[Path, Analysis]:
    """:func:`build_report`, also returning the analysis it drew (the driver ends with its headline)."""
    study_dir, out = store.root, store.report_dir
    figs = out / "figures"
    if settings is None:
        from study.analyze import spec_settings

        settings = AnalysisSettings(**spec_settings(state, pairing=None, top_k=None))
    analysis = analyze(table, settings)
    l2 = figures.inpainting_table(store, state)
    ranking = analysis.ranking

    def beats(r: Any) -> str:
        return "beats" if r.beats_baseline else ""

    body = "".join(
        f"<h3>{html.escape(ds)}</h3>"
        + _table(part, f'class="ranking" data-dataset="{html.escape(ds, quote=True)}"', RANKING_SHOWN, row_class=beats)
        for ds, part in ranking.groupby("dataset", sort=True)
    )
    pairs = (
        "one pair per case (or patient), its differences averaged over the label-limited fractions and seeds"
        if analysis.settings.pairing == "per_case"
        else "pairs per case and label fraction pooled over the label-limited fractions (the paper's protocol; "
        "correlated pairs make these p-values too small)"
    )
    parts = [
        _answer(analysis),
        _overview(state, results, analysis, optuna=store.optuna_storage),
        _section(
            "Table 3. Ranking against the supervised baseline",
            body,
            f"One-sided Wilcoxon signed-rank test (strategy greater) on paired class-averaged Dice, {pairs}; "
            "Holm and Benjamini-Hochberg adjusted p; median paired difference, Hodges-Lehmann shift with its "
            "95 % interval, matched-pairs rank-biserial; best set: no other strategy is shown better (each "
            "against all others, Holm); P(worse / equivalent / better): Bayesian signed-rank posterior with "
            f"a region of practical equivalence of +-{analysis.settings.rope:g} Dice; "
            f"P(top-{analysis.settings.top_k}): share of bootstrap resamples of the cases (and seeds) in which "
            "the strategy ranks in the top k, a description of the ranking's spread, not a verdict.",
        )
        if not ranking.empty
        else _missing("Table 3. Ranking", "no strategy could be paired with the baseline."),
        _effects(analysis, figs),
        _with_chosen(_drill_down(analysis), analysis),
        _with_chosen(_boundary(table, analysis), analysis),
        _figure(
            "Figure 1. Corruptions",
            figures.corruption_examples(state),
            figs,
            "fig1_corruptions",
            "One training slice corrupted by each pretext task, sampler and patch size of the study "
            "(K in pixels of a 512 x 512 image; the pixels used at this image size in brackets).",
            "the study has no pretraining axes or its data cannot be opened.",
        ),
        _section(
            "Table 2. Inpainting L2 norm",
            _table(l2, 'class="inpainting"'),
            "L2 norm of restored minus original per held-out slice, mean and SD, per pretraining: "
            "lower is a better restoration.",
        )
        if not l2.empty
        else _missing("Table 2. Inpainting L2 norm", "no pretraining has finished."),
        _with_chosen(
            _figure(
                "Figures 3-4. Dice against label fraction",
                figures.dice_vs_fraction(table, analysis.chosen),
                figs,
                "fig3_dice_vs_fraction",
                "Mean test Dice per class and data set at each label fraction: every strategy (thin), the chosen "
                "strategy (red), the supervised baseline (black) and its value with the most labels (dashed).",
                "the study has a single label fraction.",
            ),
            analysis,
        ),
        _figure(
            "Figure 5. Scaling with unlabeled data",
            figures.scaling_figure(table, analysis.scaling_fits),
            figs,
            "fig5_scaling",
            "Test Dice against pretraining extent per label fraction with the fit Dice = a x^k + c, "
            "drawn only where the shape is identified: the power law fits better than a constant gain (F-test "
            "p_step <= alpha) and k's 95 % profile interval [k_low, k_high] lies inside its bounds (1e-6, 5); the "
            "note says why a fit is not.",
            "the study has fewer than two pretraining extents.",
            extra=_table(analysis.scaling_fits, 'class="scaling"'),
        ),
        _with_chosen(
            _figure(
                "Figure 6. Clinical metric errors",
                figures.clinical_figure(analysis.clinical_summary),
                figs,
                "fig6_clinical",
                "Median signed percent error of each clinical measurement from the predicted masks, "
                "per class and label fraction, for the chosen strategy and the supervised baseline.",
                "the data carry no clinical measurements.",
            ),
            analysis,
        ),
        _with_chosen(
            _figure(
                "Figure 7. Per-case clinical errors",
                figures.clinical_cases_figure(analysis.clinical_cases),
                figs,
                "fig7_clinical_cases",
                "Per test case, absolute percent error of the baseline (x) against the chosen "
                "strategy (y), averaged over classes and label-limited fractions; points below the diagonal favour "
                "the strategy.",
                "the data carry no clinical measurements.",
            ),
            analysis,
        ),
        _figure(
            "Figure A1. Transfer choices",
            figures.transfer_figure(table),
            figs,
            "figA1_transfer",
            "Per-case test Dice of each transfer scope, schedule and learning rate, best median first.",
            "the study varies no transfer choice.",
        ),
    ]

    template = Template((DASHBOARDS / "report.html").read_text())
    page = template.substitute(
        title=html.escape(f"Study {state.get('name', study_dir.name)}"),
        subtitle=html.escape(f"{study_dir}"),
        css=(DASHBOARDS / "report.css").read_text(),
        sections="\n".join(parts),
        written=time.strftime("%Y-%m-%d %H:%M"),
        figures=html.escape(str(figs)),
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path, analysis
