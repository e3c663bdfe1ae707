"""Statistical early stopping through the real runner: a configuration that cannot learn is
stopped at the rung, the baseline never; decisions are the same on a rerun and after a driver
killed between a rung's decision and its records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from study.data import PhantomSettings, make_phantom_dataset
from tests.conftest import run_cli
from tests.study_runner import StudyRunner

pytestmark = pytest.mark.slow

BROKEN = "restoration/K64/random|encoder/at_once lr=1e-06"


@pytest.fixture(scope="module")
def ct_with_validation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CT phantom with 12 validation patients: enough pairs for a corrected test to reject."""
    out = tmp_path_factory.mktemp("ct") / "ct"
    make_phantom_dataset(
        PhantomSettings(kind="ct", size=32, n_train=8, n_val=12, n_test=4, n_unlabeled=4, n_slices=1), out
    )
    return out


def _spec(folder: Path, data: Path) -> Path:
    spec = {
        "name": "pruned",
        "datasets": [str(data)],
        "scale": {
            "profile": "laptop",
            "image_size": 32,
            "widths": [8, 16, 32],
            "groups": 4,
            "batch_size": 4,
            "pretrain_max_epochs": 2,
            "finetune_max_epochs": 6,
            "steps_per_epoch": 4,
            "n_masks": 4,
        },
        "pretraining": {"task": ["restoration"], "patch_size": [64], "sampler": ["random"]},
        # 1e-6 cannot learn in 24 steps: that configuration must be stopped, the baseline at 1e-6 never
        "finetuning": {"scope": ["encoder"], "schedule": ["at_once"], "lr": [0.01, 1e-6]},
        "label_fractions": [0.5, 1.0],
        "baseline": True,
        "search": {"algorithm": "grid"},
        "storage": str(folder / "studies"),
        "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
        "resources": {"cpus_per_trial": 1},
        "retries": 1,
        "pruning": {"enabled": True, "rungs": [0.5], "min_survivors": 1},
    }
    path = folder / "pruned.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run(runner: StudyRunner, folder: Path, spec: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """``python -m study.run SPEC``: a command of its own with a fault (Ray's workers see it only in
    their environment at start), else by the session's study runner (its ``main``, its Ray kept)."""
    if fault is None:
        return runner.run(folder, str(spec))
    return subprocess.run(
        [sys.executable, "-m", "study.run", str(spec)],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=900,
        env={**os.environ, "SSL_STUDY_FAULT": fault},
    )


def _decisions(study: Path) -> list[dict]:
    return [d for f in sorted((study / "pruning").glob("*.json")) for d in json.loads(f.read_text())["decisions"]]


def _results(study: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (study / "trials").glob("*/result.json")}


def test_a_configuration_that_cannot_learn_is_stopped_and_decisions_survive_a_killed_driver(
    tmp_path: Path, ct_with_validation: Path, study_runner: StudyRunner
) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    done = _run(study_runner, clean, _spec(clean, ct_with_validation))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "6 trials finished, 0 failed, 2 stopped early" in done.stdout
    assert "2 stopped trials would have made the grid about" in done.stdout
    study = clean / "studies" / "pruned"
    decisions = _decisions(study)
    stopped = {d["strategy"] for d in decisions if d["stopped"]}
    assert stopped == {BROKEN} and all(d["p_holm"] <= 0.05 for d in decisions if d["stopped"])
    results = _results(study)
    by_status: dict[str, list[dict]] = {}
    for r in results.values():
        by_status.setdefault(r["status"], []).append(r)
    assert sorted((r["label_fraction"], r["lr"]) for r in by_status["stopped"]) == [(0.5, 1e-6), (1.0, 1e-6)]
    assert all(r["strategy"] != "supervised" for r in by_status["stopped"])
    assert {r["lr"] for r in by_status["finished"] if r["strategy"] == "supervised"} == {0.01, 1e-6}
    # a stopped trial was never tested: no per-case table, the rung and its p in the record
    for r in by_status["stopped"]:
        assert not (study / "trials" / r["trial_id"] / "per_case.csv").exists()
        assert r["rung"] == 0 and r["rung_epoch"] == 3 and r["p_holm"] <= 0.05
        assert "stopped at rung 1 (epoch 3)" in r["reason"] and r["finetune_images"] == 3 * 4 * 4
    # every finished trial ran its whole budget or stopped early on its own; its compute is counted
    assert all(r["finetune_images"] > 0 for r in by_status["finished"])

    client = mlflow.MlflowClient(f"sqlite:///{clean / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pruned")
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id], max_results=100)
        if r.data.tags.get("study.kind") == "trial"
    ]
    tagged = [r for r in runs if "study.stopped" in r.data.tags]
    assert len(tagged) == 2 and {r.info.status for r in tagged} == {"KILLED"}

    analysis = run_cli("study.analyze", str(study), "--no-mlflow")
    assert analysis.returncode == 0, analysis.stderr
    assert f"{BROKEN} stopped at rung 1 (epoch 3)" in analysis.stdout and "not ranked" in analysis.stdout
    assert json.loads((study / "analysis" / "summary.json").read_text())["left_out"]["stopped"] == 2

    # the same study again, its driver killed once the rung is decided but before the stopped
    # records are written: the same command finishes it, with the same decisions as the clean run
    killed = tmp_path / "killed"
    killed.mkdir()
    spec = _spec(killed, ct_with_validation)
    first = _run(study_runner, killed, spec, fault="kill-driver:rung")
    assert first.returncode != 0
    assert _decisions(killed / "studies" / "pruned") == decisions
    again = _run(study_runner, killed, spec)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert _decisions(killed / "studies" / "pruned") == decisions
    rerun = {
        (r["strategy"], r["lr"], r["label_fraction"]): (r["status"], r.get("p_holm"))
        for r in _results(killed / "studies" / "pruned").values()
    }
    assert rerun == {
        (r["strategy"], r["lr"], r["label_fraction"]): (r["status"], r.get("p_holm")) for r in results.values()
    }
