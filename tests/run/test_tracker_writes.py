"""What the driver writes to MLflow. A trial's per-epoch curves are written by a thread of the driver
(Tune holds the trial until the driver has handled each report): every row lands, in order, before a
run is read or ended, and a write that fails is raised in the driver's thread, not lost. A run whose
id a killed driver did not save is continued, not made twice."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from study.design.plan import make_plan
from study.design.spec_loading import load_spec
from study.folder.store import StudyStore
from study.tracking.mlflow_runs import Tracker, _EpochWriter
from tests.run.conftest import write_spec


def test_rows_are_written_before_the_run_ends(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "rows", StudyStore(tmp_path / "study"))
    run = tracker.client.create_run(tracker.experiment_id).info.run_id
    for step in range(40):
        tracker.log_epoch(run, {"stage": "finetune", "val_loss": step / 10, "lr": 0.01, "epoch": step}, step)
    tracker.stop_trial(run, "FINISHED")  # ends the run: the queued rows first
    client = mlflow.MlflowClient(uri)
    assert client.get_run(run).info.status == "FINISHED"
    history = client.get_metric_history(run, "finetune/val_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(s, s / 10) for s in range(40)]
    assert len(client.get_metric_history(run, "finetune/lr")) == 40
    assert "finetune/epoch" not in client.get_run(run).data.metrics


def test_a_failed_write_is_raised_in_the_drivers_thread_once() -> None:
    written: list[tuple[str, list]] = []

    def write(run_id: str, metrics: list) -> None:
        if run_id == "broken":
            raise OSError("database is full")
        written.append((run_id, metrics))

    writer = _EpochWriter(write)
    writer.put("a", [1])
    writer.put("broken", [2])
    with pytest.raises(OSError, match="database is full"):
        writer.flush()
    writer.flush()  # raised once, then the writer goes on
    writer.put("b", [3])
    writer.flush()
    assert written == [("a", [1]), ("b", [3])]


def test_a_run_created_before_a_kill_is_continued_not_made_twice(tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path)
    plan = make_plan(load_spec(spec_file))
    trial = next(t for t in plan.trials if t.pretraining is not None)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = StudyStore(tmp_path / "study")
    tracker = Tracker(uri, "tiny", store)
    tracker.open_parent(None, "tiny", {}, spec_file)
    pretraining, run = tracker.start_pretraining(trial.pretraining), tracker.start_trial(trial)
    # the driver was killed after MLflow made the runs and before the study folder named them
    (store.trial_dir(trial.id) / "mlflow_run_id").unlink()
    (store.pretrain_dir(trial.pretraining.key) / "mlflow_run_id").unlink()
    again = Tracker(uri, "tiny", store)
    again.open_parent(tracker.parent_id, "tiny", {}, spec_file)
    assert again.start_pretraining(trial.pretraining) == pretraining
    assert again.start_trial(trial) == run
    assert store.run_id(trial.id) == run and store.pretrain_run_id(trial.pretraining.key) == pretraining
    client = mlflow.MlflowClient(uri)
    kinds = [r.data.tags["study.kind"] for r in client.search_runs([tracker.experiment_id])]
    assert sorted(kinds) == ["pretraining", "study", "trial"]
