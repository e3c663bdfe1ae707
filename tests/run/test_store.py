"""The study folder's owner: records written and read back, what is pending, older files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from study.design.plan import make_plan
from study.design.spec_loading import validate
from study.folder.records import PretrainRecord, Status, TrialRecord
from study.folder.store import StudyStore


def _plan(tmp_path: Path):
    spec = validate(
        {
            "name": "s",
            "datasets": ["mri"],
            "label_fractions": [0.5, 1.0],
            "storage": str(tmp_path),
            "pretraining": {"task": ["restoration"]},
            "finetuning": {"lr": [0.01]},
        }
    )
    return make_plan(spec)


def test_records_round_trip_and_pending_follows_them(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    store = StudyStore(tmp_path / "s")
    assert store.pending(plan.trials) == plan.trials and len(plan.trials) == 4
    done, failed, gave_up = plan.trials[:3]
    store.trial_dir(done.id).mkdir(parents=True)
    table = pd.DataFrame({"case_id": ["a"], "class": ["c"], "dice": [0.5]})
    record = TrialRecord(
        trial_id=done.id, status=Status.FINISHED, metrics={"dice": 0.5, "val_loss": 0.2}, seconds=1.0, **done.identity()
    )
    store.save_trial_result(record, table)
    store.save_trial_result(
        TrialRecord(trial_id=failed.id, status=Status.FAILED, reason="diverged", **failed.identity())
    )
    store.save_trial_error(gave_up, "worker died")
    assert store.trial_result(done.id) == record
    assert store.read_per_case(done.id).equals(table)
    assert store.trial_result(failed.id).reason == "diverged" and store.trial_result(failed.id).val_loss != 0.2
    # a failed trial has a record (it is not retried); one Tune gave up on has none (it is)
    assert store.pending(plan.trials) == [gave_up, plan.trials[3]]
    statuses = {r.trial_id: r.status for r in store.results()}
    assert statuses == {done.id: Status.FINISHED, failed.id: Status.FAILED, gave_up.id: Status.ERRORED}
    # the record carries the trial's identity: no reader rebuilds it from the plan
    again = store.trial_result(done.id)
    assert (again.seed, again.split_seed, again.scale) == (
        done.seed,
        done.split_seed,
        done.scale.model_dump(mode="json"),
    )
    assert again.strategy == done.strategy and again.pretrain_key == done.pretraining.key
    # a result written later supersedes the give-up
    store.save_trial_result(TrialRecord(trial_id=gave_up.id, status=Status.FINISHED, **gave_up.identity()))
    assert store.trial_error(gave_up.id) is None
    assert len((store.trials_dir / "finished.log").read_text().splitlines()) == 3


def test_results_written_by_earlier_versions_read_as_records(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    old = {
        "trial_id": "t1",
        "dataset": "mri",
        "label_fraction": 0.05,
        "strategy": "supervised",
        "task": "none",
        "patch_size": None,
        "scope": "none",
        "schedule": "at_once",
        "lr": 0.01,
        "status": "finished",
        "dice": 0.7,
        "dice_muscle": 0.8,
        "val_loss": 0.3,
        "inpainting_l2": None,
        "seconds": 12.0,
        "widths": [8, 16],
    }
    (store.trial_dir("t1")).mkdir(parents=True)
    (store.trial_dir("t1") / "result.json").write_text(json.dumps(old))
    record = store.trial_result("t1")
    assert record.finished and record.dice == 0.7 and record.val_loss == 0.3 and record.seed is None
    assert record.metrics == {"dice": 0.7, "dice_muscle": 0.8, "val_loss": 0.3}
    (store.pretrain_dir("k")).mkdir(parents=True)
    (store.pretrain_dir("k") / "result.json").write_text(
        json.dumps({"key": "k", "strategy": "s", "best_val_loss": 2.0})
    )
    assert store.pretrain_result("k") == PretrainRecord(key="k", strategy="s", best_val_loss=2.0)


def test_the_ids_of_trials_and_pretrainings_survive_a_round_trip(tmp_path: Path) -> None:
    from study.design.plan import PretrainPoint, TrialPoint

    for trial in _plan(tmp_path).trials:
        assert TrialPoint.from_json(json.loads(json.dumps(trial.to_json()))).id == trial.id
        if trial.pretraining is not None:
            point = PretrainPoint.from_json(json.loads(json.dumps(trial.pretraining.to_json())))
            assert point.key == trial.pretraining.key


def test_resume_checkpoints_go_with_the_record_and_stay_without_one(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    store = StudyStore(tmp_path / "s")
    done, gave_up = plan.trials[:2]
    for trial in (done, gave_up):
        store.trial_work(trial.id).mkdir(parents=True)
        (store.trial_work(trial.id) / "finetune.pt").write_bytes(b"checkpoint")
    store.save_trial_error(gave_up, "worker died")  # retried by the next run: from its checkpoint
    store.save_trial_result(TrialRecord(trial_id=done.id, status=Status.FINISHED, **done.identity()))
    assert not store.trial_work(done.id).exists()
    assert (store.trial_work(gave_up.id) / "finetune.pt").exists()
    key = done.pretraining.key
    store.pretrain_work(key).mkdir(parents=True)
    store.weights_path(key).write_bytes(b"weights")
    store.save_pretrain_result(PretrainRecord(**done.pretraining.identity()))
    assert not store.pretrain_work(key).exists() and store.weights_path(key).exists()


def test_an_attempt_notes_the_epoch_its_latest_stage_resumes_from(tmp_path: Path) -> None:
    from study.execution.tune import _note_attempt
    from study.train import FINETUNE_CHECKPOINTS, save_checkpoint

    store = StudyStore(tmp_path / "s")
    trial, truncated = _plan(tmp_path).trials[:2]
    for t in (trial, truncated):
        store.trial_dir(t.id).mkdir(parents=True)
    _note_attempt(store, trial.id)  # no checkpoint: from scratch
    save_checkpoint(store.trial_work(trial.id) / FINETUNE_CHECKPOINTS["finetune"], {"epoch": 4})
    _note_attempt(store, trial.id)
    save_checkpoint(store.trial_work(trial.id) / FINETUNE_CHECKPOINTS["unfrozen"], {"epoch": 1})
    _note_attempt(store, trial.id)  # the unfrozen stage runs after the first: its checkpoint is the latest
    assert [a["resumed_from_epoch"] for a in store.attempts(trial.id)] == [-1, 4, 1]
    store.trial_work(truncated.id).mkdir(parents=True)
    (store.trial_work(truncated.id) / FINETUNE_CHECKPOINTS["finetune"]).write_bytes(b"trunc")
    _note_attempt(store, truncated.id)  # unreadable: the fit starts afresh, and says so
    assert [a["resumed_from_epoch"] for a in store.attempts(truncated.id)] == [-1]
