"""What must hold for a study after any fault, read from the study folder and the MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mlflow
import pandas as pd

from study.analysis import analyze
from study.analyze import load_study
from study.faults import FAULT_ENV
from tests.study_runner import StudyRunner

# Small enough for seconds per trial, long enough that every fault point is reached: pretraining
# runs 3 epochs and fine-tuning 4, so a fault "after 2 epochs" fires mid-trial.
SCALE = {
    "profile": "laptop",
    "image_size": 32,
    "widths": [8, 16, 32],
    "groups": 4,
    "batch_size": 4,
    "pretrain_max_epochs": 3,
    "finetune_max_epochs": 4,
    "steps_per_epoch": 2,
    "n_masks": 4,
}


def run_study(cwd: Path, spec: Path, fault: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run(
        [sys.executable, "-m", "study.run", str(spec)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_study_here(runner: StudyRunner, cwd: Path, spec: Path) -> subprocess.CompletedProcess:
    """The same command with no fault, by the session's study runner (``tests/study_runner.py``: its
    ``main`` in a process that keeps its Ray): a resume, or a run to compare with, costs no new
    interpreter and no new Ray. It is another process than the killed driver, as a command is."""
    return runner.run(cwd, str(spec))


def trial_ids(study: Path) -> list[str]:
    state = json.loads((study / "study.json").read_text())
    return [_id_of(t) for t in state["trials"]]


def _id_of(trial_json: dict) -> str:
    from study.design.plan import TrialPoint

    return TrialPoint.from_json(trial_json).id


def per_case(study: Path) -> pd.DataFrame:
    parts = [pd.read_csv(p).assign(trial_id=p.parent.name) for p in sorted((study / "trials").glob("*/per_case.csv"))]
    return pd.concat(parts).sort_values(["trial_id", "case_id", "class"]).reset_index(drop=True)


def ranking(study: Path) -> pd.DataFrame:
    return analyze(load_study(study).table).ranking.reset_index(drop=True)


def mlflow_runs(db: Path, name: str) -> tuple[list, list]:
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    kind = lambda k: [r for r in runs if r.data.tags.get("study.kind") == k]  # noqa: E731
    return kind("trial"), kind("study")


def assert_complete(study: Path, db: Path, reference: dict) -> int:
    """Every planned trial finished exactly once, one FINISHED MLflow run each and none RUNNING,
    complete per-case tables equal to the uninterrupted run's, the same ranking. Returns the
    number of results lost (planned trials without a finished result): the caller asserts 0."""
    ids = trial_ids(study)
    results = {}
    for trial_id in ids:
        path = study / "trials" / trial_id / "result.json"
        if path.exists():
            results[trial_id] = json.loads(path.read_text())
    lost = sum(1 for t in ids if results.get(t, {}).get("status") != "finished")
    assert lost == 0, f"{lost} planned trial(s) without a finished result"
    finished = Counter(line.split()[0] for line in (study / "trials" / "finished.log").read_text().splitlines())
    assert finished == Counter(ids), f"results written per trial: {dict(finished)}"

    trials, parents = mlflow_runs(db, study.name)
    assert sorted(r.data.tags["study.trial_id"] for r in trials) == sorted(ids), "one child run per trial"
    assert {r.info.status for r in trials} == {"FINISHED"}, [r.info.status for r in trials]
    assert [r.info.status for r in parents] == ["FINISHED"]
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    for run in trials:
        assert len(client.get_metric_history(run.info.run_id, "dice")) == 1, "a final result logged twice"

    table = per_case(study)
    for trial_id, result in results.items():
        rows = table[table["trial_id"] == trial_id]
        assert len(rows) == result["n_test_cases"] * rows["class"].nunique() and len(rows) > 0
    pd.testing.assert_frame_equal(table, reference["per_case"])
    pd.testing.assert_frame_equal(ranking(study), reference["ranking"])
    return lost
