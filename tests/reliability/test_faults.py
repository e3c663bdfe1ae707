"""Faults injected into real studies (local Ray, MLflow SQLite store): after each, the study
resumes to exactly the results of an uninterrupted run, with nothing lost or duplicated."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from study.faults import FAULT_ENV
from tests.reliability.study_checks import SCALE, assert_complete, per_case, ranking, run_study, run_study_here
from tests.run.conftest import write_spec
from tests.study_runner import StudyRunner

pytestmark = pytest.mark.slow


def _spec(folder: Path, data: Path, **fields) -> Path:
    return write_spec(folder, datasets=[str(data)], scale=SCALE, label_fractions=[0.5, 1.0], retries=2, **fields)


def _ok(result) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# Session-scoped: a module fixture would be made again when a pytest-xdist worker runs another
# module's test in between, or finds its queue empty for a moment. Each worker makes its own.
@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_mri: Path, study_runner: StudyRunner) -> dict:
    """The same study run once without a fault."""
    folder = tmp_path_factory.mktemp("reference")
    _ok(run_study_here(study_runner, folder, _spec(folder, tiny_mri)))
    study = folder / "studies" / "tiny"
    return {"per_case": per_case(study), "ranking": ranking(study), "study": study}


def _survives(tally, name: str, folder: Path, reference: dict) -> None:
    lost = assert_complete(folder / "studies" / "tiny", folder / "mlflow.db", reference)
    tally.results_lost(lost)
    tally.held_up("fault", name)


@pytest.mark.parametrize("point", ["pretrain", "between", "finetune", "logging"])
def test_driver_sigkill_then_resume(
    tmp_path: Path, tiny_mri: Path, reference: dict, study_runner: StudyRunner, tally, point: str
) -> None:
    name = f"driver SIGKILL at {point}"
    tally.trying("fault", name)
    spec = _spec(tmp_path, tiny_mri)
    killed = run_study(tmp_path, spec, fault=f"kill-driver:{point}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _ok(run_study_here(study_runner, tmp_path, spec))  # the same command again
    _survives(tally, name, tmp_path, reference)


@pytest.mark.parametrize(
    "fault, name",
    [("kill-worker:2", "worker SIGKILL after 2 epochs"), ("raise:2", "exception in a trial after 2 epochs")],
)
def test_a_trial_fault_is_retried_from_its_checkpoint(
    tmp_path: Path, tiny_mri: Path, reference: dict, tally, fault: str, name: str
) -> None:
    tally.trying("fault", name)
    _ok(run_study(tmp_path, _spec(tmp_path, tiny_mri), fault=fault))
    study = tmp_path / "studies" / "tiny"
    assert (study / "faults" / fault.split(":")[0]).exists(), "the fault never fired"
    resumed = [
        line
        for p in study.glob("trials/*/attempts.jsonl")
        for line in p.read_text().splitlines()
        if '"resumed_from_epoch": -1' not in line
    ]
    assert len(resumed) == 1, "exactly one attempt resumed from a checkpoint"
    _survives(tally, name, tmp_path, reference)


def test_truncated_checkpoints_are_remade_not_fatal(
    tmp_path: Path, tiny_mri: Path, reference: dict, study_runner: StudyRunner, tally
) -> None:
    name = "checkpoints and pretrained weights truncated on disk"
    tally.trying("fault", name)
    spec = _spec(tmp_path, tiny_mri)
    assert run_study(tmp_path, spec, fault="kill-driver:finetune").returncode == -signal.SIGKILL
    study = tmp_path / "studies" / "tiny"
    truncated = sorted(study.glob("trials/*/work/*.pt")) + sorted(study.glob("pretrain/*/weights.pt"))
    assert any("work" in str(p) for p in truncated) and any(p.name == "weights.pt" for p in truncated)
    for path in truncated:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    _ok(run_study_here(study_runner, tmp_path, spec))  # the same command again
    assert len((study / "pretrain" / "executed.log").read_text().splitlines()) == 2  # the weights were made again
    _survives(tally, name, tmp_path, reference)


def test_a_full_disk_stops_the_study_clearly_and_a_later_resume_completes(
    tmp_path: Path, tiny_mri: Path, reference: dict, study_runner: StudyRunner, tally
) -> None:
    name = "storage full (ENOSPC) mid-study"
    tally.trying("fault", name)
    spec = _spec(tmp_path, tiny_mri)
    full = run_study(tmp_path, spec, fault="enospc:6")
    assert full.returncode == 2, full.stdout[-2000:] + full.stderr[-2000:]
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in full.stderr, full.stderr[-2000:]
    assert "no space left on device" in lines[0] and "run the same command again to resume" in lines[0]
    _ok(run_study_here(study_runner, tmp_path, spec))  # the same command again
    _survives(tally, name, tmp_path, reference)


def test_same_seed_gives_identical_tables_and_another_seed_does_not(
    tmp_path: Path, tiny_mri: Path, reference: dict, study_runner: StudyRunner, tally
) -> None:
    tally.trying("determinism", "same spec and seed, run twice on CPU")
    tally.trying("determinism", "another seed changes the per-case table")
    again, other = tmp_path / "again", tmp_path / "other"
    again.mkdir(), other.mkdir()
    # a new process (its own hash seed, its own Ray) against the reference made in this one
    _ok(run_study(again, _spec(again, tiny_mri)))
    table = per_case(again / "studies" / "tiny")
    assert not table.empty
    pd.testing.assert_frame_equal(table, reference["per_case"])
    tally.held_up("determinism", "same spec and seed, run twice on CPU")
    _ok(run_study_here(study_runner, other, _spec(other, tiny_mri, seed=7)))
    changed = per_case(other / "studies" / "tiny")
    assert len(changed) == len(table)
    assert not changed["dice"].reset_index(drop=True).equals(table["dice"].reset_index(drop=True))
    tally.held_up("determinism", "another seed changes the per-case table")


def _start(folder: Path, spec: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    return subprocess.Popen(
        [sys.executable, "-m", "study.run", str(spec)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _refused_naming(code: int, stderr: str, runner: subprocess.Popen) -> None:
    """Exit 2, one line naming the running driver: its pid, host and start time."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, (code, stderr[-3000:])
    assert f"already being run by pid {runner.pid} on host {socket.gethostname()} since " in lines[0], lines[0]


def test_two_drivers_started_together_one_runs_the_other_refuses(
    tmp_path: Path, tiny_mri: Path, reference: dict, tally
) -> None:
    name = "two drivers of one study started together"
    tally.trying("fault", name)
    spec = _spec(tmp_path, tiny_mri)
    drivers = [_start(tmp_path, spec) for _ in range(2)]
    outputs = [d.communicate(timeout=900) for d in drivers]
    assert sorted(d.returncode for d in drivers) == [0, 2], [err[-2000:] for _, err in outputs]
    (runner,), (refused,) = ([i for i, d in enumerate(drivers) if d.returncode == code] for code in (0, 2))
    _refused_naming(2, outputs[refused][1], drivers[runner])
    study = tmp_path / "studies" / "tiny"
    assert len((study / "pretrain" / "executed.log").read_text().splitlines()) == 1, "the pretraining ran twice"
    _survives(tally, name, tmp_path, reference)


def test_a_second_driver_refuses_and_a_sigkilled_drivers_study_is_taken_over(
    tmp_path: Path, tiny_mri: Path, reference: dict, study_runner: StudyRunner, tally
) -> None:
    name = "a second driver 6 s later, then the running one SIGKILLed and taken over"
    tally.trying("fault", name)
    spec = _spec(tmp_path, tiny_mri)
    first = _start(tmp_path, spec)
    time.sleep(6)
    second, started = _start(tmp_path, spec), time.monotonic()
    while first.poll() is None and second.poll() is None:  # the refusal comes long before the study ends
        time.sleep(0.2)
    refused, runner = (second, first) if second.poll() is not None else (first, second)
    waited = time.monotonic() - started
    _refused_naming(refused.wait(), refused.communicate()[1], runner)
    study = tmp_path / "studies" / "tiny"
    deadline = time.monotonic() + 600
    while not list(study.glob("trials/*/attempts.jsonl")) and runner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # kill it mid-study: once fine-tuning has begun
    assert runner.poll() is None, (
        "the running driver ended before it could be killed: " + runner.communicate()[1][-2000:]
    )
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=60)
    again = run_study_here(study_runner, tmp_path, spec)  # the same command again
    _ok(again)
    assert f"taking the study over from its driver pid {runner.pid} on host {socket.gethostname()}" in again.stdout
    tally.note(
        f"drivers: a second driver refused after {waited:.1f} s (Python start-up and the checks, no Ray); "
        "the SIGKILLed driver's study taken over at once"
    )
    _survives(tally, name, tmp_path, reference)
