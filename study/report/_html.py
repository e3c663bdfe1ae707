"""The dashboard's HTML pieces: how a number reads in a cell, a table, a section, an inline figure."""

from __future__ import annotations

import base64
import html
import math
import numbers
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from study.design import axes as design_axes
from study.report import _figures as figures

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
RANKING_SHOWN = [
    "rank",
    "strategy",
    "n",
    "median_diff",
    "hl_shift",
    "hl_ci_low",
    "hl_ci_high",
    "rank_biserial",
    "p",
    "p_holm",
    "p_bh",
    "beats_baseline",
    "best_set",
    "p_worse",
    "p_equivalent",
    "p_better",
    "p_top_k",
    "underpowered",
    "incomplete",
]


# How a column's numbers read: differences signed, p-values without exponents, counts as integers.
SIGNED = {
    "median_diff",
    "median_diff_ci_low",
    "median_diff_ci_high",
    "hl_shift",
    "hl_ci_low",
    "hl_ci_high",
    "rank_biserial",
    "rank_biserial_ci_low",
    "rank_biserial_ci_high",
    "mean_diff",
    "ci_low",
    "ci_high",
    "diff",
}
P_VALUES = {"p", "p_holm", "p_bh", "p_step"}
COUNTS = {
    "rank",
    "n",
    "n_zero",
    "n_trials",
    "n_slices",
    "cells",
    "levels",
    "cases_needed",
    "statistic",
    "n_strategies",
    "missing",
    *(a.flat for a in design_axes.AXES if a.type is int),
}
SHARES = {"p_top_k", "positive", "importance", "null_mean", "null_high", "p_worse", "p_equivalent", "p_better"}


def number(column: str, v: object) -> str:
    """A table cell as a reader wants it: ``+0.012``, ``<0.001``, ``0.84``, ``12``, ``yes``."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else ""
    if not isinstance(v, numbers.Number):
        return str(v)
    v = float(v)
    if column in COUNTS and v.is_integer():
        return f"{int(v)}"
    if column in P_VALUES:
        return "<0.001" if v < 1e-3 else f"{v:.3f}"
    if column in SIGNED:
        return f"{v:+.3f}"
    if column in SHARES:
        return f"{v:.2f}"
    return (
        f"{v:.3g}"
        if abs(v) >= 1000 or (v != 0 and abs(v) < 0.001)
        else f"{v:.3f}".rstrip("0").rstrip(".")
        if v.is_integer()
        else f"{v:.3f}"
    )


def _breakable(text: str) -> str:
    """Escaped text that a narrow column may wrap after ``/``, ``|`` and ``_`` (a strategy such as
    ``restoration/K64/poisson_disc_spread|encoder+decoder/freeze_then_unfreeze`` has no space), so
    the widest table fits a 1400 px page; what it reads (textContent) is unchanged."""
    escaped = html.escape(text)
    for mark in ("/", "|", "_"):
        escaped = escaped.replace(mark, mark + "<wbr>")
    return escaped


def _table(
    frame: pd.DataFrame,
    attrs: str = "",
    columns: list[str] | None = None,
    row_class: Callable[[object], str] | None = None,
) -> str:
    """An HTML table; ``row_class`` names a row's class (the ranking marks rows that beat the baseline)."""
    frame = frame[[c for c in (columns or list(frame.columns)) if c in frame]]
    text = {c: not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]) for c in frame}
    head = "".join(f'<th class="{"text" if text[c] else ""}">{_breakable(str(c))}</th>' for c in frame)
    rows = []
    for row in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="text">{_breakable(number(c, v))}</td>' if text[c] else f"<td>{number(c, v)}</td>"
            for c, v in zip(frame.columns, row)
        )
        cls = row_class(row) if row_class else ""
        rows.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _section(title: str, body: str, caption: str) -> str:
    return f'<section><h2>{html.escape(title)}</h2>{body}<p class="caption">{html.escape(caption)}</p></section>'


def _missing(title: str, why: str) -> str:
    return f'<section><h2>{html.escape(title)}</h2><p class="note">Left out: {html.escape(why)}</p></section>'


def _image(fig, folder: Path, stem: str, alt: str) -> str:
    png, _ = figures.save(fig, folder, stem)
    data = base64.b64encode(png.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _level(value: object) -> str:
    if isinstance(value, dict):  # a distribution of a sampled search
        return ", ".join(f"{k}({', '.join(map(str, v))})" for k, v in value.items())
    return "null (the profile's)" if value is None else str(value)
