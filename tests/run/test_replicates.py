"""Replicate seeds and stale trials through the real runner and the analysis command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from study.analysis._verdict import VERDICTS
from tests.conftest import run_cli
from tests.run.conftest import FinishedStudy
from tests.run.test_study import _results, _run
from tests.study_runner import StudyRunner

pytestmark = pytest.mark.slow


def test_a_changed_plan_leaves_old_trials_out_and_seeds_replicate_every_trial(
    tiny_grid: FinishedStudy, tiny_mri: Path, study_runner: StudyRunner
) -> None:
    tmp_path, spec = tiny_grid.folder, tiny_grid.spec  # write_spec(folder, datasets=[tiny_mri]), run once
    study = tmp_path / "studies" / "tiny"
    first = set(_results(study))
    assert len(first) == 4
    # a new learning rate and two seeds: none of the first plan's trials is in the second
    second = _run(tmp_path, spec, "--set", "finetuning.lr=[0.002]", "--set", "seeds=[0,1]", runner=study_runner)
    assert "tiny: 8 trials finished, 0 failed" in second.stdout
    results = _results(study)
    new = {i: r for i, (r, _) in results.items() if i not in first}
    assert len(new) == 8 and sorted(r["seed"] for r in new.values()) == [0] * 4 + [1] * 4
    assert {r["lr"] for r in new.values()} == {0.002}
    pretrainings = {r["pretrain_key"] for r in new.values() if r["pretrain_key"]}
    assert len(pretrainings) == 2  # one per seed

    analysis = run_cli("study.analyze", "tiny", "--no-mlflow", cwd=tmp_path)
    assert analysis.returncode == 0, analysis.stderr
    lines = analysis.stdout.splitlines()
    assert "tiny-mri (2 cases, pairing per_case, Holm p <= 0.05 over 1 strategy):" in lines[0]  # named by its folder
    assert "4 trial(s) from an earlier plan of this study are left out" in analysis.stdout
    out = study / "analysis"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["trials_used"] == 8
    assert summary["trials_left_out"] == 4 and summary["left_out"] == {"stale": 4}
    assert summary["datasets"][str(tiny_mri)]["verdict"] in VERDICTS
    ranking = pd.read_csv(out / "ranking.csv")
    assert ranking["seeds"].astype(str).tolist() == ["0,1"]
    assert ranking["p_top_k"].isna().all()  # one strategy is in the top 3 by construction: left empty
    per_seed = pd.read_csv(out / "seed_ranking.csv")
    assert sorted(per_seed["seed"].unique()) == [0, 1]
    assert "2 seeds, mean Kendall tau" in analysis.stdout and "P(top-3)" in analysis.stdout

    with_stale = run_cli("study.analyze", "tiny", "--no-mlflow", "--include-stale", cwd=tmp_path)
    assert with_stale.returncode == 0, with_stale.stderr
    assert "4 trial(s) from earlier plans analysed too" in with_stale.stdout
    assert json.loads((out / "summary.json").read_text())["trials_used"] == 12  # the old seed is a third replicate
