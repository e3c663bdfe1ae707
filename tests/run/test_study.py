"""Studies through the real runner: a local Ray, an MLflow SQLite store, the study folder on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.run.conftest import FinishedStudy, write_spec
from tests.study_runner import StudyRunner

pytestmark = pytest.mark.slow


def _runs(tmp_path: Path, name: str, kind: str = "trial") -> list:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("study.kind") == kind]


def _results(study: Path) -> dict[str, tuple[dict, float]]:
    """Trial id -> (result, modification time of result.json)."""
    out = {}
    for path in (study / "trials").glob("*/result.json"):
        out[path.parent.name] = (json.loads(path.read_text()), path.stat().st_mtime_ns)
    return out


def _attempts(study: Path, trial_id: str) -> list[dict]:
    return [json.loads(line) for line in (study / "trials" / trial_id / "attempts.jsonl").read_text().splitlines()]


def _run(
    tmp_path: Path, spec: Path, *args: str, env: dict | None = None, status: int = 0, runner: StudyRunner | None = None
) -> subprocess.CompletedProcess:
    """``python -m study.run SPEC ARGS`` in ``tmp_path``: by the session's study runner (the same
    ``main`` in a process that keeps its Ray) when given one, else as a command of its own; always so
    with a fault (``env``), which reaches Ray's workers only from their environment at start."""
    if runner is not None and not env:
        result = runner.run(tmp_path, str(spec), *args)
    else:
        result = subprocess.run(
            [sys.executable, "-m", "study.run", str(spec), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=600,
            env={**os.environ, **(env or {})},
        )
    assert result.returncode == status, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_grid_runs_each_point_once_then_resumes_and_extends(
    tiny_grid: FinishedStudy, tiny_mri: Path, study_runner: StudyRunner
) -> None:
    tmp_path, spec, first = tiny_grid.folder, tiny_grid.spec, tiny_grid.first  # run once: python -m study.run
    study = tmp_path / "studies" / "tiny"
    assert "tiny: 4 trials finished, 0 failed" in first.stdout
    results = _results(study)
    assert len(results) == 4
    assert {r["strategy"] for r, _ in results.values()} == {"supervised", "restoration/K64/random|encoder/at_once"}
    assert sorted((r["strategy"], r["label_fraction"]) for r, _ in results.values()) == sorted(
        (s, f) for s in ("supervised", "restoration/K64/random|encoder/at_once") for f in (0.5, 1.0)
    )
    assert "mri0000.h5" in (study / "data_checked.json").read_text()  # the data check is recorded at once
    # one pretraining for the two fractions that share it
    assert len((study / "pretrain" / "executed.log").read_text().splitlines()) == 1
    runs = _runs(tmp_path, "tiny")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["study.trial_id"] for r in runs} == set(results)
    run = runs[0]
    assert "finetune/val_loss" in run.data.metrics and "dice" in run.data.metrics
    artifacts = {
        a.path for a in mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").list_artifacts(run.info.run_id)
    }
    assert {"per_case.json", "per_case.csv"} <= artifacts
    parents = _runs(tmp_path, "tiny", kind="study")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"

    # the same command again: nothing re-runs
    again = _run(tmp_path, spec, runner=study_runner)
    assert "4/4 done" not in again.stdout or "0 to run" in again.stdout
    assert {k: m for k, (_, m) in _results(study).items()} == {k: m for k, (_, m) in results.items()}
    assert all(len(_attempts(study, t)) == 1 for t in results)

    # an enlarged space runs only the new points
    bigger = write_spec(tmp_path, datasets=[str(tiny_mri)], label_fractions=[0.25, 0.5, 1.0])
    assert bigger == spec
    _run(tmp_path, spec, runner=study_runner)
    after = _results(study)
    assert len(after) == 6
    assert all(after[k][1] == m for k, (_, m) in results.items())  # old results untouched
    assert len((study / "pretrain" / "executed.log").read_text().splitlines()) == 1
    runs = _runs(tmp_path, "tiny")
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert len(_runs(tmp_path, "tiny", kind="study")) == 1


def test_a_crashed_trial_is_retried_from_its_checkpoint(tmp_path: Path, tiny_mri: Path) -> None:
    scale = {
        "profile": "laptop",
        "image_size": 32,
        "widths": [8, 16, 32],
        "groups": 4,
        "batch_size": 4,
        "pretrain_max_epochs": 1,
        "finetune_max_epochs": 3,
        "steps_per_epoch": 2,
        "n_masks": 4,
    }
    spec = write_spec(tmp_path, datasets=[str(tiny_mri)], scale=scale, label_fractions=[1.0], pretraining=None)
    _run(tmp_path, spec, env={"SSL_STUDY_FAULT": "crash:2"})
    study = tmp_path / "studies" / "tiny"
    (trial_id,) = _results(study)
    attempts = _attempts(study, trial_id)
    assert [a["resumed_from_epoch"] for a in attempts] == [-1, 1]  # died after epoch 2, resumed after it
    result, _ = _results(study)[trial_id]
    assert result["status"] == "finished" and result["epochs"] == 3
    runs = _runs(tmp_path, "tiny")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


def test_a_killed_driver_resumes_without_duplicate_or_orphaned_runs(
    tmp_path: Path, tiny_mri: Path, study_runner: StudyRunner
) -> None:
    scale = {
        "profile": "laptop",
        "image_size": 32,
        "widths": [8, 16, 32],
        "groups": 4,
        "batch_size": 4,
        "pretrain_max_epochs": 2,
        "finetune_max_epochs": 6,
        "steps_per_epoch": 4,
        "n_masks": 4,
    }
    spec = write_spec(tmp_path, datasets=[str(tiny_mri)], scale=scale, label_fractions=[0.25, 0.5, 0.75, 1.0])
    study = tmp_path / "studies" / "tiny"
    driver = subprocess.Popen(
        [sys.executable, "-m", "study.run", str(spec)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(_results(study)) < 2:
        time.sleep(0.5)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = _results(study)
    assert 2 <= len(before) < 8, "the driver was killed too late to test a resume"
    _run(tmp_path, spec, runner=study_runner)
    after = _results(study)
    assert len(after) == 8
    assert all(after[k][1] == m for k, (_, m) in before.items())  # finished trials untouched
    runs = _runs(tmp_path, "tiny")
    assert sorted(r.data.tags["study.trial_id"] for r in runs) == sorted(after)  # one run per trial
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert [r.info.status for r in _runs(tmp_path, "tiny", kind="study")] == ["FINISHED"]


def test_a_sampled_search_reads_back_repeated_configurations(
    tmp_path: Path, tiny_mri: Path, study_runner: StudyRunner
) -> None:
    spec = write_spec(
        tmp_path,
        datasets=[str(tiny_mri)],
        label_fractions=[1.0],
        finetuning={"scope": ["encoder"], "schedule": ["at_once"], "lr": [0.001]},
        search={"algorithm": "tpe", "num_samples": 5, "seed": 1},
    )
    out = _run(tmp_path, spec, runner=study_runner)
    study = tmp_path / "studies" / "tiny"
    sampled = [json.loads(line) for line in (study / "sampled.jsonl").read_text().splitlines()]
    assert len(sampled) == 5
    unique = {s["trial_id"] for s in sampled}
    assert len(unique) <= 2  # the space holds the baseline and one pretrained strategy
    assert set(_results(study)) == unique
    assert all(len(_attempts(study, t)) >= 1 for t in unique)
    runs = _runs(tmp_path, "tiny")
    assert len(runs) == len(unique) and {r.info.status for r in runs} == {"FINISHED"}
    assert "trials finished" in out.stdout


def test_a_diverging_trial_is_failed_with_its_reason_and_the_study_goes_on(
    tmp_path: Path, tiny_mri: Path, study_runner: StudyRunner
) -> None:
    import shutil

    import h5py

    data = tmp_path / "nan-mri"
    shutil.copytree(tiny_mri, data)
    manifest = json.loads((data / "dataset.json").read_text())
    victim = manifest["split"]["train"][0]
    with h5py.File(data / "scans" / f"{victim}.h5", "r+") as f:
        f["image"][...] = 3e38  # finite, so it passes the data check, but every activation overflows
    spec = write_spec(
        tmp_path, datasets=[str(data)], label_fractions=[1.0], pretraining=None, finetuning={"lr": [0.001, 0.002]}
    )
    out = _run(tmp_path, spec, status=3, runner=study_runner)  # a study that lost trials never reports success
    study = tmp_path / "studies" / "tiny"
    results = _results(study)
    assert len(results) == 2
    assert all(r["status"] == "failed" and "diverged" in r["reason"] for r, _ in results.values())
    assert all(len(_attempts(study, t)) == 1 for t in results)  # a divergence is not retried
    assert "0 trials finished, 2 failed" in out.stdout and out.stdout.count("failed: ") == 2
    runs = _runs(tmp_path, "tiny")
    assert {r.info.status for r in runs} == {"FAILED"} and all("diverged" in r.data.tags["study.failure"] for r in runs)


def test_an_error_no_retry_can_fix_fails_once_and_the_exit_status_says_so(
    tmp_path: Path, tiny_mri: Path, study_runner: StudyRunner
) -> None:
    spec = write_spec(tmp_path, datasets=[str(tiny_mri)], label_fractions=[1.0], retries=2)
    out = _run(tmp_path, spec, env={"SSL_STUDY_FAULT": "data-error:1"}, status=3)
    study = tmp_path / "studies" / "tiny"
    results = _results(study)
    assert len(results) == 2 and all(r["status"] == "failed" for r, _ in results.values())
    assert all("injected data error" in r["reason"] for r, _ in results.values())
    assert all(len(_attempts(study, t)) == 1 for t in results)  # retries: 2, yet one attempt each
    assert "0 trials finished, 2 failed" in out.stdout and "exit status 3" in out.stdout
    runs = _runs(tmp_path, "tiny")
    assert {r.info.status for r in runs} == {"FAILED"}
    assert all("injected data error" in r.data.tags["study.failure"] for r in runs)
    parent = _runs(tmp_path, "tiny", kind="study")[0]
    assert parent.info.status == "FAILED" and parent.data.metrics["trials_failed"] == 2
    # the same command again keeps the failed results and still says the study is incomplete
    again = _run(tmp_path, spec, status=3, runner=study_runner)
    assert "0 trials finished, 2 failed" in again.stdout
    assert all(len(_attempts(study, t)) == 1 for t in results)


def test_a_trial_tune_gave_up_on_is_counted_errored_then_retried_by_the_next_run(
    tmp_path: Path, tiny_mri: Path, study_runner: StudyRunner
) -> None:
    spec = write_spec(tmp_path, datasets=[str(tiny_mri)], label_fractions=[0.25, 0.5], retries=0)
    out = _run(tmp_path, spec, env={"SSL_STUDY_FAULT": "raise:1"}, status=3)  # one trial raises, once
    study = tmp_path / "studies" / "tiny"
    (folder,) = [p for p in (study / "trials").iterdir() if p.is_dir() and not (p / "result.json").exists()]
    error = json.loads((folder / "error.json").read_text())
    assert error["status"] == "errored" and "injected fault after 1 fine-tuning epochs" in error["reason"]
    assert error["trial_id"] == folder.name and error["label_fraction"] in (0.25, 0.5) and error["seed"] is not None
    assert "3 trials finished, 0 failed, 1 errored" in out.stdout and "errored: " in out.stdout
    (run,) = [r for r in _runs(tmp_path, "tiny") if r.info.status != "FINISHED"]
    assert run.info.status == "FAILED" and "injected fault" in run.data.tags["study.failure"]
    report = (study / "report" / "report.html").read_text()
    assert "Errored trials" in report and "injected fault" in report
    # the fault fires once per study: the same command again retries the trial, which now finishes
    again = _run(tmp_path, spec, runner=study_runner)
    assert "4 trials finished, 0 failed" in again.stdout and "errored" not in again.stdout
    assert (folder / "result.json").exists() and not (folder / "error.json").exists()
