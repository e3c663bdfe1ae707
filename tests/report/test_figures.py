"""The report's figures that speak of "the chosen strategy" name it, at a readable size (issue 27,
Found 4). Synthetic tables: nothing trains."""

from __future__ import annotations

import pandas as pd

from study.report._figures import clinical_cases_figure, clinical_figure

CHOSEN = "restoration/K32/poisson_disc|encoder/at_once"


def test_figure_7_names_the_strategy_on_readable_axes() -> None:
    cases = pd.DataFrame(
        {
            "dataset": ["mri"] * 4,
            "metric": ["t2_ms"] * 2 + ["thickness_mm"] * 2,
            "strategy": [CHOSEN] * 4,
            "unit": ["a", "b", "a", "b"],
            "baseline_abs_pct_err": [3.0, 5.0, 2.0, 4.0],
            "strategy_abs_pct_err": [2.0, 6.0, 1.0, 3.0],
        }
    )
    fig = clinical_cases_figure(cases)
    for ax in [a for a in fig.axes if a.get_visible()]:
        assert ax.xaxis.label.get_fontsize() >= 10 and ax.yaxis.label.get_fontsize() >= 10
        assert all(t.get_fontsize() >= 9 for t in ax.get_xticklabels())
        assert ax.get_ylabel().replace("\n", "|").startswith(CHOSEN)  # which strategy, not "strategy"
        assert "supervised" in ax.get_xlabel()


def test_figure_6_names_the_strategy_in_its_legend() -> None:
    summary = pd.DataFrame(
        {
            "dataset": ["mri"] * 2,
            "metric": ["t2_ms"] * 2,
            "class": ["femoral_cartilage"] * 2,
            "label_fraction": [0.05, 1.0],
            "strategy": [CHOSEN] * 2,
            "median_pct_err_strategy": [1.0, 0.5],
            "median_pct_err_baseline": [2.0, 0.4],
        }
    )
    fig = clinical_figure(summary)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert CHOSEN in labels and "chosen strategy" not in labels
