"""The paper's figures for one study, as matplotlib figures (Agg; nothing is shown on a screen).

Each function takes the study's tables and returns a figure, or None when the study lacks the data
(the report then says so in one line).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from study.constants import SUPERVISED  # noqa: E402
from study.folder.store import StudyStore  # noqa: E402


def corruption_examples(state: dict) -> Figure | None:
    """Figure 1: one slice of the study's data corrupted per task, sampler and patch size."""
    from study.data import open_dataset
    from study.pretext import draw_preview, preview_figure

    spec = state.get("spec", {})
    pre = spec.get("pretraining") or {}
    if not pre or not state.get("data_paths"):
        return None
    name, path = next(iter(state["data_paths"].items()))
    try:
        dataset = open_dataset(path)
    except Exception:
        return None
    image = _middle_slice(dataset)
    preview = preview_figure(
        image,
        patch_sizes_512=tuple(pre.get("patch_size", (32,))),
        seed=0,
        tasks=tuple(pre.get("task", ("restoration",))),
        samplers=tuple(pre.get("sampler", ("poisson_disc",))),
    )
    return draw_preview(preview, original_title=f"original ({short(name)})", panel_inches=1.6, font_size=7)


def short(dataset: str) -> str:
    """A data set as a figure names it: a folder by its last component (titles stay one line)."""
    return Path(dataset).name if "/" in dataset else dataset


def _middle_slice(dataset) -> np.ndarray:
    scan = dataset.split.train[0]
    middle = dataset.scans[scan].n_slices // 2
    return dataset.read_image(scan, slice(middle, middle + 1))[0, 0]


def mask_examples(point, data_path: str | None) -> Figure | None:
    """The masks one pretraining (a :class:`~study.design.plan.PretrainPoint`) trains with, drawn on a
    training slice of its data set: what its MLflow run shows beside its curves."""
    from study.data import open_dataset
    from study.pretext import draw_preview, preview_figure

    if data_path is None:
        return None
    dataset = open_dataset(data_path)
    try:
        image = _middle_slice(dataset)
    finally:
        dataset.close()
    preview = preview_figure(
        image, patch_sizes_512=(point.patch_size,), seed=point.seed, tasks=(point.task,), samplers=(point.sampler,)
    )
    return draw_preview(preview, original_title=f"original ({short(point.dataset)})", panel_inches=2.2, font_size=8)


def inpainting_table(store: StudyStore, state: dict) -> pd.DataFrame:
    """Table 2: held-out inpainting L2 per data set, task, patch size and sampler (mean and SD)."""
    rows = []
    for entry in state.get("trials", []):
        pre = entry.get("pretraining")
        if not pre:
            continue
        rows.append(
            {
                "dataset": entry["dataset"],
                "task": pre["task"],
                "patch_size": pre["patch_size"],
                "sampler": pre["sampler"],
                "extent": pre["extent"],
                "key": _pretrain_key(entry),
            }
        )
    if not rows:
        return pd.DataFrame()
    keys = pd.DataFrame(rows).drop_duplicates("key")
    out = []
    for row in keys.itertuples():
        table = store.read_inpainting(row.key)
        if table is not None:
            l2 = table["l2"]
            out.append(
                {
                    "dataset": row.dataset,
                    "task": row.task,
                    "patch_size": row.patch_size,
                    "sampler": row.sampler,
                    "extent": row.extent,
                    "l2_mean": l2.mean(),
                    "l2_sd": l2.std(),
                    "n_slices": len(l2),
                }
            )
    return pd.DataFrame(out).sort_values(["dataset", "task", "patch_size", "sampler"]) if out else pd.DataFrame()


def _pretrain_key(entry: dict) -> str:
    from study.design.plan import TrialPoint

    return TrialPoint.from_json(entry).pretraining.key


def dice_vs_fraction(table: pd.DataFrame, highlight: dict[str, str]) -> Figure | None:
    """Figures 3-4: mean test Dice against label fraction, per data set (rows) and class (columns);
    every strategy thin, the chosen one and the supervised baseline bold, 100 %-label baseline dashed."""
    if table.empty or table["label_fraction"].nunique() < 2:
        return None
    datasets = sorted(table["dataset"].unique())
    classes = {ds: list(dict.fromkeys(table.loc[table["dataset"] == ds, "class"])) for ds in datasets}
    n_cols = max(len(c) for c in classes.values())
    mean = table.groupby(["dataset", "class", "strategy", "label_fraction"])["dice"].mean()
    fig, axes = plt.subplots(
        len(datasets), n_cols, figsize=(2.6 * n_cols, 2.3 * len(datasets)), squeeze=False, sharey=True
    )
    for i, ds in enumerate(datasets):
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(classes[ds]):
                ax.set_visible(False)
                continue
            cls = classes[ds][j]
            part = mean.loc[(ds, cls)]
            for strategy, curve in part.groupby(level="strategy"):
                x = curve.index.get_level_values("label_fraction")
                if strategy == SUPERVISED:
                    ax.plot(x, curve.values, "k-o", lw=2, ms=3, label="supervised", zorder=3)
                    full = curve[x == x.max()]
                    ax.axhline(float(full.iloc[0]), color="k", ls="--", lw=0.8, label="supervised, most labels")
                elif strategy == highlight.get(ds):
                    ax.plot(
                        x,
                        curve.values,
                        "-o",
                        color="tab:red",
                        lw=2,
                        ms=3,
                        label="chosen strategy (row title)",
                        zorder=2,
                    )
                else:
                    ax.plot(x, curve.values, "-", color="tab:blue", lw=0.6, alpha=0.4)
            ax.set_xscale("log")
            fractions = sorted(part.index.get_level_values("label_fraction").unique())
            ax.set_xticks(fractions, [f"{f:g}" for f in fractions])  # the study's fractions, not 10^k
            ax.minorticks_off()
            chosen = highlight.get(ds)
            ax.set_title(f"{short(ds)}: {cls}" + (f"\nred: {chosen}" if chosen and j == 0 else ""), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("label fraction", fontsize=7)
            if j == 0:
                ax.set_ylabel("test Dice", fontsize=7)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes.ravel()), key=lambda hl: len(hl[0]))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def scaling_figure(table: pd.DataFrame, fits: pd.DataFrame) -> Figure | None:
    """Figure 5: Dice against pretraining extent per label fraction, with the fitted a x^k + c drawn
    only where the fit identifies the shape (elsewhere the points alone, marked in the legend)."""
    if fits.empty or "extent" not in table or table["extent"].dropna().nunique() < 2:
        return None
    datasets = sorted(fits["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3), squeeze=False)
    points = table.dropna(subset=["extent"]).groupby(["dataset", "label_fraction", "extent", "case_id"])["dice"].mean()
    for ax, ds in zip(axes[0], datasets):
        for fit in fits[fits["dataset"] == ds].itertuples():
            try:
                part = points.loc[(ds, fit.label_fraction)].groupby(level="extent").mean()
            except KeyError:
                continue
            drawn = bool(getattr(fit, "identified", False)) and all(np.isfinite([fit.a, fit.k, fit.c]))
            label = f"{fit.label_fraction:g} labels" + ("" if drawn else ": shape not identified, no curve")
            line = ax.plot(part.index, part.values, "o", ms=4, label=label)[0]
            if drawn:
                x = np.linspace(part.index.min(), part.index.max(), 100)
                ax.plot(x, fit.a * x**fit.k + fit.c, "-", color=line.get_color(), lw=1)
        ax.set_title(short(ds), fontsize=9)
        ax.set_xlabel("pretraining extent (x training set)", fontsize=8)
        ax.set_ylabel("test Dice", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def clinical_figure(summary: pd.DataFrame) -> Figure | None:
    """Figure 6: median signed percent error per class and label fraction, chosen strategy vs baseline."""
    if summary.empty:
        return None
    groups = list(summary.groupby(["dataset", "metric"]))
    # One row per data set and metric, wide enough for a readable label per bar pair.
    longest = max(len(part) for _, part in groups)
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(6.0, 0.55 * longest + 2), 3.2 * len(groups)), squeeze=False)
    for ax, ((ds, metric), part) in zip(axes[:, 0], groups):
        labels = [f"{c} @{f:g}" for c, f in zip(part["class"], part["label_fraction"])]
        x = np.arange(len(part))
        ax.bar(x - 0.2, part["median_pct_err_baseline"], 0.4, label="supervised", color="0.55")
        chosen = str(part["strategy"].iloc[0]) if "strategy" in part else "chosen strategy"
        ax.bar(x + 0.2, part["median_pct_err_strategy"], 0.4, label=chosen, color="tab:red")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x, labels, fontsize=8, rotation=35, ha="right")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(f"{short(ds)}: {metric} (class @ label fraction)", fontsize=9)
        ax.set_ylabel("median signed % error", fontsize=8)
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def effects_figure(effects: pd.DataFrame, importance: pd.DataFrame) -> Figure | None:
    """Design-axis effects: per data set, each level's mean paired dDice with its 95 % interval,
    grouped by axis (most important first), and beside them each axis's importance (eta squared)
    with the 1 - alpha quantile of its permutation null as a tick; a bar is filled where the axis is
    important at Holm p <= alpha."""
    if effects.empty:
        return None
    from study.analysis._effects import AXIS_NAMES

    datasets = sorted(effects["dataset"].unique())
    heights = [
        len(effects[effects["dataset"] == ds]) + effects.loc[effects["dataset"] == ds, "axis"].nunique()
        for ds in datasets
    ]
    fig, axes = plt.subplots(
        len(datasets),
        2,
        figsize=(10, 0.32 * sum(heights) + 1.2 * len(datasets)),
        squeeze=False,
        gridspec_kw={"width_ratios": [3, 1], "height_ratios": heights},
    )
    for (left, right), ds in zip(axes, datasets):
        part = effects[effects["dataset"] == ds]
        weights = importance[importance["dataset"] == ds].set_index("axis") if not importance.empty else pd.DataFrame()
        share = weights["importance"] if not weights.empty else pd.Series(dtype=float)
        order = sorted(part["axis"].unique(), key=lambda a: -share.get(a, 0.0))
        y, ticks, labels = 0, [], []
        for axis in order:
            for r in part[part["axis"] == axis].itertuples():
                color = "tab:green" if r.ci_low > 0 else "tab:red" if r.ci_high < 0 else "0.3"
                left.errorbar(
                    r.mean_diff,
                    -y,
                    xerr=[[r.mean_diff - r.ci_low], [r.ci_high - r.mean_diff]],
                    fmt="o",
                    color=color,
                    ms=4,
                    capsize=2,
                )
                ticks.append(-y)
                labels.append(f"{AXIS_NAMES.get(axis, axis)}: {r.level}")
                y += 1
            y += 1
        left.axvline(0, color="k", lw=0.7)
        left.set_yticks(ticks, labels, fontsize=8)
        left.tick_params(axis="x", labelsize=8)
        left.set_xlabel("mean paired dDice vs the supervised baseline (95 % CI)", fontsize=8)
        left.set_title(short(ds), fontsize=9)
        if share.empty:
            right.set_axis_off()
            right.text(
                0.5, 0.5, "importance:\ntoo few trials", ha="center", va="center", fontsize=8, transform=right.transAxes
            )
            continue
        names = [a for a in order if a in share.index]
        important = [bool(weights.loc[a, "important"]) for a in names]
        right.barh(
            range(len(names)),
            [share[a] for a in names],
            height=0.5,
            color=["tab:blue" if i else "white" for i in important],
            edgecolor="tab:blue",
        )
        right.scatter(
            [weights.loc[a, "null_high"] for a in names],
            range(len(names)),
            marker="|",
            s=120,
            color="k",
            zorder=3,
            label="null, 1 - alpha quantile",
        )
        right.set_yticks(range(len(names)), [AXIS_NAMES.get(a, a) for a in names], fontsize=8)
        right.invert_yaxis()
        right.set_xlim(0, 1)
        right.tick_params(axis="x", labelsize=8)
        right.set_xlabel("importance: eta2 of the strategies' dDice\n(filled: Holm p <= alpha)", fontsize=8)
        right.legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def clinical_cases_figure(cases: pd.DataFrame) -> Figure | None:
    """Figure 7: per test case, the baseline's absolute % error against the chosen strategy's."""
    if cases.empty:
        return None
    groups = list(cases.dropna(subset=["baseline_abs_pct_err", "strategy_abs_pct_err"]).groupby(["dataset", "metric"]))
    if not groups:
        return None
    # At most three panels a row, each wide enough for its labels at the size of the page's text.
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.ravel()[len(groups) :]:
        ax.set_visible(False)
    for ax, ((ds, metric), part) in zip(axes.ravel(), groups):
        ax.scatter(part["baseline_abs_pct_err"], part["strategy_abs_pct_err"], s=12)
        top = float(np.nanmax(part[["baseline_abs_pct_err", "strategy_abs_pct_err"]].to_numpy())) or 1.0
        ax.plot([0, top], [0, top], "k--", lw=0.6)
        chosen = str(part["strategy"].iloc[0]) if "strategy" in part else "chosen strategy"
        ax.set_title(f"{short(ds)}: {metric}", fontsize=11)
        ax.set_xlabel("supervised baseline: |% error|", fontsize=10)
        ax.set_ylabel(f"{chosen.replace('|', chr(10))}: |% error|", fontsize=10)
        ax.tick_params(labelsize=9)
    fig.tight_layout()
    return fig


def transfer_figure(table: pd.DataFrame) -> Figure | None:
    """Figure A1: per-case Dice of each transfer combination (scope, schedule, learning rates)."""
    cols = ("scope", "schedule", "lr", "unfrozen_lr")
    if not all(c in table for c in cols):
        return None
    pre = table[table["strategy"] != SUPERVISED]
    if pre.empty or pre[list(cols)].astype(str).drop_duplicates().shape[0] < 2:
        return None
    cases = (
        table.groupby(["dataset", "scope", "schedule", "lr", "unfrozen_lr", "strategy", "case_id"], dropna=False)[
            "dice"
        ]
        .mean()
        .reset_index()
    )
    cases["combination"] = [
        SUPERVISED if s == SUPERVISED else f"{sc}\n{sch}\nlr {lr:g}" + ("" if pd.isna(u) else f"/{u:g}")
        for s, sc, sch, lr, u in zip(
            cases["strategy"], cases["scope"], cases["schedule"], cases["lr"], cases["unfrozen_lr"]
        )
    ]
    datasets = sorted(cases["dataset"].unique())
    fig, axes = plt.subplots(
        len(datasets), 1, figsize=(max(6, 0.8 * cases["combination"].nunique()), 3 * len(datasets)), squeeze=False
    )
    for ax, ds in zip(axes[:, 0], datasets):
        part = cases[cases["dataset"] == ds]
        order = part.groupby("combination")["dice"].median().sort_values(ascending=False).index
        ax.boxplot([part.loc[part["combination"] == c, "dice"] for c in order], tick_labels=list(order))
        ax.tick_params(labelsize=7)
        ax.set_title(short(ds), fontsize=9)
        ax.set_ylabel("test Dice per case", fontsize=7)
    fig.tight_layout()
    return fig


def save(fig: Figure, folder: Path, stem: str) -> tuple[Path, Path]:
    """PNG (for the HTML and slides) and SVG (for papers) side by side."""
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{stem}.png", folder / f"{stem}.svg"
    fig.savefig(png, dpi=120)
    fig.savefig(svg)
    plt.close(fig)
    return png, svg
