"""``study.analyze --metric nsd|hd95``: the boundary metrics ranked with Dice's pairing, corrections
and verdict; HD95 direction-aware (lower is better); the headline names the metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.analysis import AnalysisSettings, analyze
from study.analyze import main
from study.errors import DataError

from .test_cli import write_study

GOOD = "restoration/K32/poisson_disc|encoder/at_once"


def _with_boundary(folder: Path) -> None:
    """NSD and HD95 columns that follow Dice: the better strategy has the higher NSD and the lower HD95."""
    for path in (folder / "trials").glob("*/per_case.csv"):
        table = pd.read_csv(path)
        table["nsd"] = (table["dice"] * 0.9).clip(0, 1)
        table["hd95"] = 20.0 * (1.0 - table["dice"])
        table["nsd_tol_mm"] = 1.0
        table.to_csv(path, index=False)


@pytest.fixture
def study(tmp_path: Path) -> Path:
    folder = write_study(tmp_path)  # the synthetic study tests/analysis/test_cli.py ranks by Dice
    _with_boundary(folder)
    return folder


@pytest.mark.parametrize("metric, unit", [("nsd", "NSD"), ("hd95", "mm HD95 reduction")])
def test_analyze_ranks_by_a_boundary_metric_and_its_headline_names_it(
    study: Path, tmp_path: Path, metric: str, unit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tiny", "--storage", str(tmp_path / "studies"), "--metric", metric, "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    name = {"nsd": "NSD", "hd95": "HD95"}[metric]
    assert lines[0] == f"mri (6 cases, pairing per_case, Holm p <= 0.05 over 2 strategies, by {name}):"
    assert lines[1].startswith(f"  pooled 25 %, 5 % labels: 2 of 2 beat the baseline: {GOOD} +")
    assert lines[1].endswith(unit) and lines[1].count(f"] {unit}") == 2
    assert f"mri: 2 strategies vs 'supervised' by {name}, one-sided Wilcoxon" in out
    ranking = pd.read_csv(study / "analysis" / metric / "ranking.csv")  # beside Dice's, not over it
    assert ranking.iloc[0]["strategy"] == GOOD and bool(ranking.iloc[0]["beats_baseline"])
    assert (ranking["hl_shift"] > 0).all()  # HD95 is ranked as a reduction: positive means better
    summary = json.loads((study / "analysis" / metric / "summary.json").read_text())
    assert summary["datasets"]["mri"]["beats_baseline"][0] == GOOD
    assert not (study / "analysis" / "ranking.csv").exists()


def test_hd95_is_direction_aware_and_uses_its_own_rope(study: Path) -> None:
    from study.analyze import load_study

    table = load_study(study).table
    hd = analyze(table, AnalysisSettings(metric="hd95", rope=1.0))
    dice = analyze(table, AnalysisSettings())
    for frame in (hd.ranking, dice.ranking):
        assert frame.set_index("strategy").loc[GOOD, "rank"] == 1
    # the same pairs and tests as Dice's: HD95 here is 20 (1 - Dice), so the p-values agree
    assert np.allclose(hd.ranking.set_index("strategy")["p"], dice.ranking.set_index("strategy")["p"])
    # read the wrong way round (higher is better), the better strategy would come last
    wrong = analyze(table.assign(nsd=table["hd95"]), AnalysisSettings(metric="nsd"))
    assert wrong.ranking.set_index("strategy").loc[GOOD, "rank"] == 2
    with pytest.raises(DataError, match="no 'nsd' column"):
        analyze(table.drop(columns=["nsd"]), AnalysisSettings(metric="nsd"))
    older = table.assign(nsd=table["nsd"].where(table["trial_id"] != table["trial_id"].iloc[0]))
    with pytest.raises(DataError, match="1 trial\\(s\\) have no 'nsd' values .* ran before boundary metrics"):
        analyze(older, AnalysisSettings(metric="nsd"))


def test_tolerances_that_differ_between_trials_are_noted(study: Path) -> None:
    from study.analyze import load_study

    table = load_study(study).table
    table.loc[table["strategy"] == GOOD, "nsd_tol_mm"] = 2.0
    notes = analyze(table, AnalysisSettings(metric="nsd")).notes
    assert any("mri/femoral_cartilage" in n and "different tolerances" in n for n in notes)


def test_the_report_shows_dice_beside_nsd_and_hd95_per_class(
    study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from study.analysis._boundary import boundary_summary
    from study.analyze import load_study
    from study.report.__main__ import main as report_main

    table = load_study(study).table
    summary = boundary_summary(table, {"mri": GOOD}, "supervised")
    assert set(summary["strategy"]) == {GOOD, "supervised"} and len(summary) == 2 * 3 * 2  # x fractions x classes
    row = summary[
        (summary["strategy"] == GOOD) & (summary["label_fraction"] == 1.0) & (summary["class"] == "meniscus")
    ].iloc[0]
    cases = table[(table["strategy"] == GOOD) & (table["label_fraction"] == 1.0) & (table["class"] == "meniscus")]
    assert row["dice"] == pytest.approx(cases["dice"].mean()) and row["hd95"] == pytest.approx(cases["hd95"].mean())
    assert row["nsd_tol_mm"] == 1.0 and row["n_cases"] == 6
    assert boundary_summary(table.drop(columns=["nsd", "hd95"]), {"mri": GOOD}, "supervised").empty

    assert report_main(["tiny", "--storage", str(tmp_path / "studies")]) == 0
    page = (study / "report" / "report.html").read_text()
    section = page[page.index("Boundary metrics") :]
    table = section[section.index('<table class="boundary"') : section.index("</table>")]
    assert "hd95" in table and "nsd" in table and GOOD.split("/")[0] in table
