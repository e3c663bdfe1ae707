from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from study.analysis import AnalysisSettings, analyze, fit_power_law, power_law, scaling, strategy_extents


@pytest.mark.parametrize(
    ("x", "a", "k", "c"),
    [
        ([0, 1, 1.5, 2], 0.05, 0.4, 0.60),  # MRI extents with the supervised point at 0: n - 3 = 1
        ([0, 1, 6.5, 12], 0.02, 0.3, 0.70),  # CT extents
        ([0, 1, 2, 4, 8, 16, 32], 0.10, 0.25, 0.50),  # seven points
        ([1, 2, 3, 5], -0.03, 0.8, 0.90),  # falling curve, no 0
    ],
)
def test_power_law_fit_recovers_a_k_c_from_exact_points(x: list[float], a: float, k: float, c: float) -> None:
    xs = np.array(x, dtype=float)
    fit = fit_power_law(xs, power_law(xs, a, k, c))
    assert fit["note"] == ""
    assert (fit["a"], fit["k"], fit["c"]) == (
        pytest.approx(a, rel=1e-4),
        pytest.approx(k, rel=1e-4),
        pytest.approx(c, rel=1e-4),
    )
    assert fit["rse"] == pytest.approx(0.0, abs=1e-7) and fit["n_points"] == len(x)


def test_residual_standard_error_is_sqrt_sse_over_n_minus_3() -> None:
    x = np.array([0, 1, 2, 4, 8, 16.0])
    y = power_law(x, 0.1, 0.5, 0.5) + np.array([0.01, -0.01, 0.005, 0.0, -0.005, 0.01])
    fit = fit_power_law(x, y)
    sse = np.sum((y - power_law(x, fit["a"], fit["k"], fit["c"])) ** 2)
    assert fit["rse"] == pytest.approx(np.sqrt(sse / 3))


def test_fewer_than_four_extents_give_a_note_not_an_error() -> None:
    fit = fit_power_law(np.array([1.0, 1.5, 2.0]), np.array([0.6, 0.62, 0.63]))
    assert np.isnan(fit["a"]) and "at least 4 extents" in fit["note"] and "has 3" in fit["note"]


def test_strategy_extents_parse_the_plan_names() -> None:
    names = pd.Series(
        ["restoration/K32/poisson_disc|encoder/at_once", "restoration/K32/poisson_disc/x1.5|encoder/at_once"]
    )
    info = strategy_extents(names)
    assert info["extent"].tolist() == [1.0, 1.5]
    assert info["family"].nunique() == 1


def extent_table(a: float = 0.05, k: float = 0.4, c: float = 0.6) -> pd.DataFrame:
    """Per case Dice = curve(extent) + a case effect that is the same for every extent (so the
    mean over cases lies on the curve); the supervised baseline is the point at x = 0."""
    family = "restoration/K32/poisson_disc"
    effects = np.linspace(-0.02, 0.02, 6)
    records = []
    for f in (0.05, 0.25):
        for name, x in (
            ("supervised", 0.0),
            (f"{family}|encoder/at_once", 1.0),
            (f"{family}/x1.5|encoder/at_once", 1.5),
            (f"{family}/x2|encoder/at_once", 2.0),
            (f"{family}/x3|encoder/at_once", 3.0),
        ):
            level = power_law(np.array(x), a, k, c) + (0.1 * f)
            for i, e in enumerate(effects):
                records.append(
                    {
                        "dataset": "mri",
                        "strategy": name,
                        "label_fraction": f,
                        "case_id": f"c{i}",
                        "class": "a",
                        "dice": float(level + e + 0.001 * (i - 2.5) * (x == 3.0)),
                    }
                )
    return pd.DataFrame(records)


def test_scaling_fits_each_fraction_and_tests_the_largest_extent() -> None:
    table = extent_table()
    result = analyze(table, AnalysisSettings(n_boot=200))
    fits = result.scaling_fits.set_index("label_fraction")
    assert fits.loc[0.05, "extents"] == "0,1,1.5,2,3" and fits.loc[0.05, "n_points"] == 5
    assert (fits.loc[0.05, "a"], fits.loc[0.05, "k"]) == (pytest.approx(0.05, rel=1e-3), pytest.approx(0.4, rel=1e-3))
    assert fits.loc[0.25, "c"] == pytest.approx(0.625, rel=1e-3) and fits.loc[0.25, "rse"] < 1e-6
    tests = result.scaling_tests.set_index("label_fraction")
    x = table[(table["strategy"].str.contains("/x3")) & (table["label_fraction"] == 0.05)]["dice"].to_numpy()
    y = table[
        (table["strategy"] == "restoration/K32/poisson_disc|encoder/at_once") & (table["label_fraction"] == 0.05)
    ]["dice"].to_numpy()
    assert tests.loc[0.05, "extent"] == 3.0 and tests.loc[0.05, "n"] == 6
    assert tests.loc[0.05, "p"] == pytest.approx(stats.wilcoxon(x, y, alternative="greater").pvalue, rel=1e-12)


def test_a_study_with_one_extent_has_no_scaling_table() -> None:
    table = extent_table()
    one = table[~table["strategy"].str.contains("/x")]
    fits, tests = scaling(one.rename(columns={"case_id": "unit"}), "supervised")
    assert fits.empty and tests.empty
