"""Load: many trials logging every step at once, to an SQLite store and to an MLflow server; and
many processes writing one SQLite store. No metric row may be lost, no "database is locked" escape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from tests.reliability.study_checks import run_study
from tests.run.conftest import write_spec

pytestmark = pytest.mark.slow
CONCURRENT = 8
EPOCHS = 30
# One step per epoch, so the per-epoch metrics are per-step metrics: EPOCHS rows of each of three
# metrics per trial, from CONCURRENT trials at once (cpus_per_trial 2/CONCURRENT on this machine).
SCALE = {
    "profile": "laptop",
    "image_size": 32,
    "widths": [8, 16, 32],
    "groups": 4,
    "batch_size": 4,
    "finetune_max_epochs": EPOCHS,
    "finetune_patience": EPOCHS,
    "steps_per_epoch": 1,
}
LRS = [0.001 * (i + 1) for i in range(CONCURRENT)]


def _load_study(folder: Path, data: Path, tracking_uri: str) -> Path:
    cpus = (os.cpu_count() or 2) / CONCURRENT
    spec = write_spec(
        folder,
        name="load",
        datasets=[str(data)],
        scale=SCALE,
        label_fractions=[1.0],
        pretraining=None,
        finetuning={"lr": LRS},
        resources={"cpus_per_trial": cpus, "max_concurrent_trials": CONCURRENT},
        tracking_uri=tracking_uri,
    )
    result = run_study(folder, spec)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "locked" not in result.stdout + result.stderr
    return folder / "studies" / "load"


def _max_overlap(study: Path) -> int:
    """Most trials running at one moment: from each first attempt's start to its result."""
    events = []
    for folder in (study / "trials").iterdir():
        if folder.is_dir():
            start = json.loads((folder / "attempts.jsonl").read_text().splitlines()[0])["time"]
            events += [(start, 1), ((folder / "result.json").stat().st_mtime, -1)]
    running = peak = 0
    for _, step in sorted(events):
        running += step
        peak = max(peak, running)
    return peak


def _check_rows(study: Path, uri: str, tally, store: str) -> None:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("load")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("study.kind") == "trial"]
    assert len(runs) == CONCURRENT and {r.info.status for r in runs} == {"FINISHED"}
    rows = 0
    for run in runs:
        result = json.loads((study / "trials" / run.data.tags["study.trial_id"] / "result.json").read_text())
        for metric in ("finetune/val_loss", "finetune/train_loss", "finetune/lr"):
            history = client.get_metric_history(run.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(result["epochs"])), (metric, len(history))
            rows += len(history)
    assert rows == CONCURRENT * 3 * EPOCHS
    tally.logged(store, rows)


def test_concurrent_trials_logging_every_step_to_sqlite(tmp_path: Path, tiny_mri: Path, tally) -> None:
    tally.trying("load", "sqlite")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = _load_study(tmp_path, tiny_mri, uri)
    peak = _max_overlap(study)
    assert peak >= CONCURRENT // 2, "the trials did not run side by side"
    tally.note(f"load: {CONCURRENT} trials, at most {peak} running at once, logging every step to SQLite")
    _check_rows(study, uri, tally, "sqlite")
    tally.held_up("load", "sqlite")


def test_concurrent_trials_logging_every_step_to_a_tracking_server(
    tmp_path: Path, tiny_mri: Path, tally, mlflow_server: str
) -> None:
    tally.trying("load", "mlflow server")
    study = _load_study(tmp_path, tiny_mri, mlflow_server)
    _check_rows(study, mlflow_server, tally, "mlflow server")
    tally.held_up("load", "mlflow server")


_WRITER = """
import sys
from pathlib import Path
from study.folder.store import StudyStore
from study.tracking.mlflow_runs import Tracker
tracker = Tracker(sys.argv[1], "shared", StudyStore(sys.argv[2]))
run = tracker.client.create_run(tracker.experiment_id).info.run_id
for step in range(int(sys.argv[3])):
    tracker.log_epoch(run, {"stage": "finetune", "val_loss": step / 10, "train_loss": step / 20}, step)
tracker.flush()  # the rows are queued; a driver writes them before it reads or ends a run
print(run)
"""


def test_many_processes_writing_one_sqlite_store_lose_nothing(tmp_path: Path, tally) -> None:
    """Two studies sharing one mlflow.db is the only way to get concurrent writers: retries absorb
    SQLite's lock, every row lands."""
    tally.trying("load", "8 processes on one SQLite file")
    uri, steps = f"sqlite:///{tmp_path / 'shared.db'}", 150
    # create the schema once, as the first study to use the file would
    subprocess.run(
        [sys.executable, "-c", _WRITER, uri, str(tmp_path), "1"], check=True, capture_output=True, timeout=300
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, uri, str(tmp_path), str(steps)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CONCURRENT)
    ]
    outputs = [w.communicate(timeout=600) for w in writers]
    assert all(w.returncode == 0 for w in writers), [err[-2000:] for _, err in outputs]
    client = mlflow.MlflowClient(uri)
    rows = 0
    for out, _ in outputs:
        run_id = out.strip().splitlines()[-1]
        for metric in ("finetune/val_loss", "finetune/train_loss"):
            history = client.get_metric_history(run_id, metric)
            assert sorted(m.step for m in history) == list(range(steps))
            rows += len(history)
    assert rows == CONCURRENT * 2 * steps
    tally.logged("sqlite, 8 writer processes", rows)
    tally.held_up("load", "8 processes on one SQLite file")


_OPENER = """
import sys
from study.folder.store import StudyStore
from study.tracking.mlflow_runs import Tracker
print("ready", flush=True)
sys.stdin.readline()  # every opener has imported MLflow: open the store at once
tracker = Tracker(sys.argv[1], "fresh", StudyStore(sys.argv[2]))
print(tracker.client.create_run(tracker.experiment_id).info.run_id)
"""


def test_processes_opening_a_fresh_sqlite_store_at_once_all_open_it(tmp_path: Path, tally) -> None:
    """Two drivers started together in a fresh folder: without the lock beside the database both
    run MLflow's schema migration on the same file and one dies (``_alembic_tmp_... already exists``)."""
    name, count = "4 processes creating one fresh SQLite store at once", 4
    tally.trying("load", name)
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, uri, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    assert [o.stdout.readline().strip() for o in openers] == ["ready"] * count
    for opener in openers:
        opener.stdin.write("go\n")
        opener.stdin.flush()
    outputs = [o.communicate(timeout=600) for o in openers]
    assert all(o.returncode == 0 for o in openers), [err[-2000:] for _, err in outputs]
    client = mlflow.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "fresh"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert not list(tmp_path.glob(".fresh.db.*")), "a half-made store was left beside the database"
    tally.held_up("load", name)
