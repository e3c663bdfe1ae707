"""How Dice grows with unlabeled pretraining data (P §2.9, Figure 5).

Per data set, pretraining strategy family (the strategy without its extent) and label fraction,
Dice = a * x^k + c is fitted by non-linear least squares over the pretraining extent x, where the
Dice at x is the mean over test units of the class-averaged Dice. As in the paper's Figure 5 the
supervised baseline is the point at x = 0 (no pretraining data). The residual standard error is
sqrt(SSE / (n - 3)), so a fit needs at least 4 points. The largest extent is also tested against
extent 1 (the training set alone) with the one-sided signed-rank test.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from study.analysis._stats import scipy_method, tie_and_zero_counts, wilcoxon_greater

# Plan format: "<task>/K<size>/<sampler>[/x<extent>]|<scope>/<schedule>"; the extent part names
# how much pretraining data, the rest is the family a scaling curve follows.
_EXTENT = re.compile(r"/x([0-9.eE+-]+)(?=\||$)")
MIN_POINTS = 4


def power_law(x: np.ndarray, a: float, k: float, c: float) -> np.ndarray:
    return a * np.power(x, k) + c


def fit_power_law(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares a, k, c of y = a x^k + c and the residual standard error; a ``note`` instead
    of numbers when there are fewer than 4 distinct x or the fit fails.

    k is bounded to (0, 5] so that x = 0 is defined and the curve stays monotone; the start is
    k = 0.5 with a, c through the outermost points.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    out = {"n_points": int(x.size), "a": np.nan, "k": np.nan, "c": np.nan, "rse": np.nan, "note": ""}
    if np.unique(x).size < MIN_POINTS:
        out["note"] = (f"needs at least {MIN_POINTS} extents (the supervised baseline counts as 0) "
                       f"for a, k, c and sqrt(SSE/(n-3)); has {np.unique(x).size}")
        return out
    lo, hi = np.argmin(x), np.argmax(x)
    k0 = 0.5
    span = x[hi] ** k0 - x[lo] ** k0
    a0 = (y[hi] - y[lo]) / span if span > 0 else 0.0
    p0 = [a0 if a0 != 0 else 1e-3, k0, y[lo] - a0 * x[lo] ** k0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            params, _ = curve_fit(power_law, x, y, p0=p0, bounds=([-np.inf, 1e-6, -np.inf], [np.inf, 5.0, np.inf]),
                                  maxfev=20_000)
    except (RuntimeError, ValueError, OptimizeWarning) as exc:
        out["note"] = f"fit failed: {exc}"
        return out
    sse = float(np.sum((y - power_law(x, *params)) ** 2))
    out.update(a=float(params[0]), k=float(params[1]), c=float(params[2]), rse=math.sqrt(sse / (x.size - 3)))
    return out


def strategy_extents(strategies: pd.Series, known: dict[str, float] | None = None) -> pd.DataFrame:
    """Per strategy: its family (extent removed from the name) and its extent (1 when unnamed)."""
    names = pd.Series(strategies.unique())
    parsed = names.str.extract(_EXTENT, expand=False).astype(float).fillna(1.0)
    extent = [(known or {}).get(s, e) for s, e in zip(names, parsed)]
    return pd.DataFrame({"strategy": names, "family": names.str.replace(_EXTENT, "", regex=True), "extent": extent})


def scaling(units: pd.DataFrame, baseline: str, extents: dict[str, float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fits, tests) for every family that was pretrained at two or more extents.

    ``units``: seed-averaged units (dataset, strategy, label_fraction, unit, dice). Fits: one row per
    data set, family and label fraction with the points, a, k, c, rse and a note. Tests: the largest
    extent against extent 1 on the same units, one-sided (larger extent greater).
    """
    ssl = units[units["strategy"] != baseline]
    info = strategy_extents(ssl["strategy"], extents)
    ssl = ssl.merge(info, on="strategy")
    families = ssl.groupby(["dataset", "family"])["extent"].nunique()
    families = families[families >= 2]
    fits, tests = [], []
    means = units.groupby(["dataset", "strategy", "label_fraction"])["dice"].mean()
    for (dataset, family), _ in families.items():
        rows = ssl[(ssl["dataset"] == dataset) & (ssl["family"] == family)]
        for fraction, frame in rows.groupby("label_fraction", sort=True):
            points = frame.groupby("extent")["dice"].mean()
            x, y = list(points.index), list(points.values)
            if (dataset, baseline, fraction) in means.index:
                x, y = [0.0, *x], [float(means[(dataset, baseline, fraction)]), *y]
            fits.append({"dataset": dataset, "family": family, "label_fraction": fraction,
                         "extents": ",".join(f"{v:g}" for v in x), "dice": ",".join(f"{v:.4f}" for v in y),
                         **fit_power_law(np.array(x), np.array(y))})
            tests.append({"dataset": dataset, "family": family, "label_fraction": fraction,
                          **_largest_vs_one(frame)})
    return pd.DataFrame(fits), pd.DataFrame(tests)


def _largest_vs_one(frame: pd.DataFrame) -> dict:
    largest = frame["extent"].max()
    out = {"extent": largest, "n": 0, "n_zero": 0, "method": "", "statistic": np.nan, "p": np.nan,
           "median_diff": np.nan, "note": ""}
    wide = frame[frame["extent"].isin([1.0, largest])].pivot_table(index="unit", columns="extent", values="dice")
    if 1.0 not in wide or largest == 1.0:
        out["note"] = "no extent-1 trial to compare with"
        return out
    wide = wide.dropna()
    if len(wide) < 2:
        out["note"] = f"{len(wide)} paired unit(s); the test needs at least 2"
        return out
    x, y = wide[largest].to_numpy()[None, :], wide[1.0].to_numpy()[None, :]
    statistic, p = wilcoxon_greater(x, y)
    n_zero, ties = tie_and_zero_counts(x - y)
    out.update(n=len(wide), n_zero=int(n_zero[0]), method=scipy_method(len(wide), int(n_zero[0]), bool(ties[0])),
               statistic=float(statistic[0]), p=float(p[0]), median_diff=float(np.median(x - y)))
    return out
