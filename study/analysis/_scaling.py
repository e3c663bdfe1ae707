"""How Dice grows with unlabeled pretraining data (P §2.9, Figure 5), and whether its shape is known.

Per data set, pretraining strategy family (the strategy without its extent) and label fraction,
Dice = a * x^k + c is fitted by least squares over the pretraining extent x, where the Dice at x is
the mean over test units of the class-averaged Dice. As in the paper's Figure 5 the supervised
baseline is the point at x = 0 (no pretraining data). The residual standard error is
sqrt(SSE / (n - 3)), so a fit needs at least 4 points.

A few noisy points fit many shapes, and a least-squares k ends on its bound (1e-6 or 5) whenever
extent does not matter. So each fit also gives k's profile-likelihood interval and compares the
power law with its k -> 0 limit, a constant gain (Dice c at x = 0, c + g at every x > 0; a flat
line when there is no x = 0). The fit is ``identified`` only when the power law fits better than the
constant gain (F-test at alpha) and k's interval lies inside its bounds; otherwise ``note`` says
why, and the report draws the points without a curve. The largest extent is also tested against
extent 1 (the training set alone) with the one-sided signed-rank test.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import brentq, minimize_scalar

from study.analysis._stats import scipy_method, tie_and_zero_counts, wilcoxon_greater

# Plan format: "<task>/K<size>/<sampler>[/x<extent>]|<scope>/<schedule>"; the extent part names
# how much pretraining data, the rest is the family a scaling curve follows.
_EXTENT = re.compile(r"/x([0-9.eE+-]+)(?=\||$)")
MIN_POINTS = 4
K_BOUNDS = (1e-6, 5.0)  # k > 0 keeps x = 0 defined and the curve monotone; 5 is steeper than any data set seen
# Geometric, so the k -> 0 end, where the curve turns into a step, is resolved as finely as k near 1.
_K_GRID = np.geomspace(*K_BOUNDS, 801)
FIT_COLUMNS = ["n_points", "a", "k", "c", "rse", "k_low", "k_high", "p_step", "identified", "note"]


def power_law(x: np.ndarray, a: float, k: float, c: float) -> np.ndarray:
    return a * np.power(x, k) + c


def _profile(x: np.ndarray, y: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SSE, a and c at each fixed k: for a fixed k the model is linear in a and c, so the least
    squares over all three is the minimum over k of this profile."""
    z = np.power(x[None, :], np.atleast_1d(k)[:, None])  # (K, n)
    zc = z - z.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    szz = (zc**2).sum(axis=1)
    a = (zc @ yc) / szz
    c = y.mean() - a * z.mean(axis=1)
    sse = np.maximum(float(yc @ yc) - a * (zc @ yc), 0.0)
    return sse, a, c


def _best_k(x: np.ndarray, y: np.ndarray) -> float:
    """The k of least SSE: the grid's best, refined between its neighbours (on log k)."""
    sse, _, _ = _profile(x, y, _K_GRID)
    i = int(np.argmin(sse))
    lo, hi = _K_GRID[max(i - 1, 0)], _K_GRID[min(i + 1, _K_GRID.size - 1)]
    if lo == hi:
        return float(lo)
    found = minimize_scalar(
        lambda t: _profile(x, y, np.exp(t))[0][0],
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-12},
    )
    best = float(np.exp(found.x))
    return best if _profile(x, y, best)[0][0] <= sse[i] else float(_K_GRID[i])


def _k_interval(x: np.ndarray, y: np.ndarray, k: float, sse: float, confidence: float) -> tuple[float, float]:
    """The profile-likelihood interval of k: every k whose best SSE is within the F bound of the
    least SSE (the usual interval of non-linear least squares); an end is the bound itself when
    the profile never rises above the limit on that side."""
    df = x.size - 3
    limit = sse * (1 + stats.f.ppf(confidence, 1, df) / df)
    inside = _profile(x, y, _K_GRID)[0] <= limit

    def above(t: float) -> float:
        return _profile(x, y, t)[0][0] - limit

    below_k, above_k = np.flatnonzero(inside & (_K_GRID <= k)), np.flatnonzero(inside & (_K_GRID >= k))
    first = int(below_k.min()) if below_k.size else int(np.searchsorted(_K_GRID, k))
    last = int(above_k.max()) if above_k.size else int(np.searchsorted(_K_GRID, k)) - 1
    low = K_BOUNDS[0] if first == 0 else _crossing(above, _K_GRID[first - 1], min(_K_GRID[first], k))
    high = K_BOUNDS[1] if last >= _K_GRID.size - 1 else _crossing(above, max(_K_GRID[last], k), _K_GRID[last + 1])
    return low, high


def _crossing(f, lo: float, hi: float) -> float:
    """Where f changes sign between lo and hi, else the end nearer the fit (a conservative end)."""
    if np.sign(f(lo)) == np.sign(f(hi)):
        return lo if f(lo) <= 0 else hi
    return float(brentq(f, lo, hi, xtol=1e-12 * max(hi, 1e-12)))


def _step_sse(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """SSE and parameter count of the k -> 0 limit: Dice c at x = 0 and c + g at every x > 0, a
    constant gain of pretraining whatever its extent (a flat line when there is no x = 0)."""
    groups = [y[x == 0], y[x > 0]]
    groups = [g for g in groups if g.size]
    return float(sum(((g - g.mean()) ** 2).sum() for g in groups)), len(groups)


def fit_power_law(x: np.ndarray, y: np.ndarray, alpha: float = 0.05, confidence: float = 0.95) -> dict:
    """Least-squares a, k, c of y = a x^k + c (k in [1e-6, 5]) with the residual standard error,
    k's profile interval (``k_low``, ``k_high``), the F-test p of the power law against a
    constant gain (``p_step``), and whether the shape is ``identified``: p_step <= alpha and
    k's interval strictly inside the bounds. ``note`` says why a fit is not identified, or
    replaces the numbers when there are fewer than 4 distinct x.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    out = {
        "n_points": int(x.size),
        "a": np.nan,
        "k": np.nan,
        "c": np.nan,
        "rse": np.nan,
        "k_low": np.nan,
        "k_high": np.nan,
        "p_step": np.nan,
        "identified": False,
        "note": "",
    }
    if np.unique(x).size < MIN_POINTS or np.unique(x).size < x.size:
        out["note"] = (
            f"needs at least {MIN_POINTS} extents (the supervised baseline counts as 0) "
            f"for a, k, c and sqrt(SSE/(n-3)); has {np.unique(x).size}"
        )
        return out
    k = _best_k(x, y)
    sse, a, c = (float(v[0]) for v in _profile(x, y, k))
    low, high = _k_interval(x, y, k, sse, confidence)
    step, n_step = _step_sse(x, y)
    df = x.size - 3
    p = _f_test(step, sse, 3 - n_step, df)
    out.update(a=a, k=k, c=c, rse=math.sqrt(sse / df), k_low=low, k_high=high, p_step=p)
    out["note"] = "; ".join(_not_identified(k, low, high, p, alpha, confidence, bool((x == 0).any())))
    out["identified"] = not out["note"]
    return out


def _f_test(smaller: float, larger: float, df_extra: int, df: int) -> float:
    """p of the F-test of the extra parameters: the residual sums of squares of the smaller and the
    larger model (``larger`` fits at least as well), the extra parameters and the larger model's
    residual degrees of freedom."""
    if not smaller > larger:
        return 1.0
    if larger == 0:
        return 0.0
    return float(stats.f.sf((smaller - larger) / df_extra / (larger / df), df_extra, df))


def _not_identified(
    k: float, low: float, high: float, p: float, alpha: float, confidence: float, has_zero: bool
) -> list[str]:
    """Why the shape is not identified; empty when it is."""
    limit = "a constant gain (Dice c at x = 0, c + g at every extent)" if has_zero else "a constant"
    why = []
    if k <= K_BOUNDS[0] * (1 + 1e-6) or k >= K_BOUNDS[1] * (1 - 1e-6):
        why.append(f"k = {k:.3g} is on its bound")
    if p > alpha:
        why.append(f"fits no better than {limit} (F-test p = {p:.2g})")
    ends = [f"{b:g}" for b, on in ((K_BOUNDS[0], low <= K_BOUNDS[0]), (K_BOUNDS[1], high >= K_BOUNDS[1])) if on]
    if ends:
        why.append(f"k's {confidence:.0%} interval [{low:.3g}, {high:.3g}] reaches the bound {' and '.join(ends)}")
    return ["shape not identified", *why] if why else []


def strategy_extents(strategies: pd.Series, known: dict[str, float] | None = None) -> pd.DataFrame:
    """Per strategy: its family (extent removed from the name) and its extent (1 when unnamed)."""
    names = pd.Series(strategies.unique())
    parsed = names.str.extract(_EXTENT, expand=False).astype(float).fillna(1.0)
    extent = [(known or {}).get(s, e) for s, e in zip(names, parsed)]
    return pd.DataFrame({"strategy": names, "family": names.str.replace(_EXTENT, "", regex=True), "extent": extent})


def scaling(
    units: pd.DataFrame, baseline: str, extents: dict[str, float] | None = None, alpha: float = 0.05
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fits, tests) for every family that was pretrained at two or more extents.

    ``units``: seed-averaged units (dataset, strategy, label_fraction, unit, dice). Fits: one row per
    data set, family and label fraction with the points and :data:`FIT_COLUMNS` (see
    :func:`fit_power_law`). Tests: the largest extent against extent 1 on the same units, one-sided
    (larger extent greater).
    """
    ssl = units[units["strategy"] != baseline]
    info = strategy_extents(ssl["strategy"], extents)
    ssl = ssl.merge(info, on="strategy")
    fits, tests = [], []
    means = units.groupby(["dataset", "strategy", "label_fraction"])["dice"].mean()
    for (dataset, family), rows in ssl.groupby(["dataset", "family"], sort=True):
        if rows["extent"].nunique() < 2:
            continue
        for fraction, frame in rows.groupby("label_fraction", sort=True):
            points = frame.groupby("extent")["dice"].mean()
            x, y = list(points.index), list(points.values)
            if (dataset, baseline, fraction) in means.index:
                x, y = [0.0, *x], [float(means[(dataset, baseline, fraction)]), *y]
            fits.append(
                {
                    "dataset": dataset,
                    "family": family,
                    "label_fraction": fraction,
                    "extents": ",".join(f"{v:g}" for v in x),
                    "dice": ",".join(f"{v:.4f}" for v in y),
                    **fit_power_law(np.array(x), np.array(y), alpha),
                }
            )
            tests.append({"dataset": dataset, "family": family, "label_fraction": fraction, **_largest_vs_one(frame)})
    return pd.DataFrame(fits), pd.DataFrame(tests)


def _largest_vs_one(frame: pd.DataFrame) -> dict:
    largest = frame["extent"].max()
    out = {
        "extent": largest,
        "n": 0,
        "n_zero": 0,
        "method": "",
        "statistic": np.nan,
        "p": np.nan,
        "median_diff": np.nan,
        "note": "",
    }
    wide = frame[frame["extent"].isin([1.0, largest])].groupby(["unit", "extent"])["dice"].mean().unstack("extent")
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
    out.update(
        n=len(wide),
        n_zero=int(n_zero[0]),
        method=scipy_method(len(wide), int(n_zero[0]), bool(ties[0])),
        statistic=float(statistic[0]),
        p=float(p[0]),
        median_diff=float(np.median(x - y)),
    )
    return out
