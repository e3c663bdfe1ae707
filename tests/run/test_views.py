"""What a researcher browses: the MLflow UI (a real ``mlflow server``) and the Optuna dashboard's storage."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import mlflow
import optuna
import pytest

from study.design.spec_loading import validate
from study.folder.records import Status, TrialRecord
from study.tracking.optuna_view import OptunaLog, study_name
from tests.run.conftest import write_spec
from tests.study_runner import StudyRunner


def _run(runner: StudyRunner, folder: Path, spec: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m study.run`` by the session's study runner (its ``main``, in a process that keeps its Ray)."""
    done = runner.run(folder, str(spec), *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _by_kind(client: mlflow.MlflowClient, experiment_id: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for run in client.search_runs([experiment_id], max_results=1000):
        out.setdefault(run.data.tags.get("study.kind"), []).append(run)
    return out


def _records(study: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (study / "trials").glob("*/result.json")}


def _optuna_trials(study: Path, dataset: str) -> list:
    """Every trial of the data set's Optuna studies (one per label fraction), each with its fraction."""
    storage = f"sqlite:///{study / 'optuna.db'}"
    out = []
    for name in optuna.get_all_study_names(storage):
        loaded = optuna.load_study(study_name=name, storage=storage)
        if loaded.user_attrs["data set"] == dataset:
            assert name == study_name("tiny", dataset, loaded.user_attrs["label fraction"])
            out += [(loaded.user_attrs["label fraction"], t) for t in loaded.get_trials(deepcopy=False)]
    return out


@pytest.mark.slow
def test_the_mlflow_ui_and_the_optuna_dashboard_see_the_study_and_its_resume(
    tmp_path: Path, tiny_mri: Path, mlflow_server: str, study_runner: StudyRunner
) -> None:
    spec = write_spec(
        tmp_path,
        datasets=[str(tiny_mri)],
        tracking_uri=mlflow_server,
        pretraining={"task": ["restoration", "prediction"], "patch_size": [64], "sampler": ["random"]},
    )
    study = tmp_path / "studies" / "tiny"
    _run(study_runner, tmp_path, spec)
    mlflow.set_tracking_uri(mlflow_server)  # artifacts are read through the server
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tiny")
    # MLflow 3 opens an untagged experiment on its GenAI view; this value opens it on training runs
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    runs = _by_kind(client, experiment.experiment_id)
    (parent,) = runs["study"]
    keys = {r["pretrain_key"] for r in _records(study).values() if r["pretrain_key"]}
    pretrainings = {r.data.tags["study.pretrain_key"]: r for r in runs["pretraining"]}
    assert len(runs["pretraining"]) == len(keys) == 2 and set(pretrainings) == keys  # one run per unique key
    for run in pretrainings.values():
        assert run.info.status == "FINISHED" and run.data.tags["study.study_run_id"] == parent.info.run_id
        assert len(client.get_metric_history(run.info.run_id, "pretrain/val_loss")) >= 1  # its curve
        assert math.isfinite(run.data.metrics["inpainting_l2"])
        assert {"inpainting.csv", "masks.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    trials = runs["trial"]
    assert len(trials) == 6
    for run in trials:
        key = run.data.tags.get("study.pretrain_key")
        if key is None:
            assert run.data.tags["study.strategy"] == "supervised"
            continue
        linked = pretrainings[key].info.run_id
        assert run.data.tags["study.pretrain_run_id"] == linked
        assert f"#/experiments/{experiment.experiment_id}/runs/{linked}" in run.data.tags["mlflow.note.content"]

    first = _records(study)
    optuna_first = _optuna_trials(study, str(tiny_mri))
    assert sorted(t.user_attrs["trial_id"] for _, t in optuna_first) == sorted(first)
    for fraction, t in optuna_first:
        record = first[t.user_attrs["trial_id"]]
        assert t.state == optuna.trial.TrialState.COMPLETE and t.value == pytest.approx(record["val_loss"])
        # the label fraction is the study's, not a parameter; only the task varies here
        assert fraction == record["label_fraction"] and t.params == {"task": record["task"]}
        assert (t.datetime_complete - t.datetime_start).total_seconds() == pytest.approx(record["seconds"], abs=1e-3)

    # resumed with another fraction, given the Hydra way: only the new points run, nothing is duplicated
    _run(study_runner, tmp_path, spec, "--set", "label_fractions=0.25,0.5,1.0")
    again = _by_kind(client, experiment.experiment_id)
    assert len(again["study"]) == 1 and len(again["trial"]) == 9
    assert sorted(r.data.tags["study.pretrain_key"] for r in again["pretraining"]) == sorted(keys)
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags["study.invocations"] == "2"
    history = [mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/invocations/{n:03d}.json") for n in (1, 2)]
    assert [h["overrides"] for h in history] == [[], ["label_fractions=0.25,0.5,1.0"]]
    assert all(h["code"]["package"] for h in history)
    spec_2 = mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/invocations/002-spec.yaml")
    assert "label_fractions: [0.25, 0.5, 1.0]" in spec_2
    assert [
        i["overrides"] for i in (json.loads(line) for line in (study / "invocations.jsonl").read_text().splitlines())
    ] == [[], ["label_fractions=0.25,0.5,1.0"]]

    # a new fraction is a new Optuna study: every trial once
    after = _records(study)
    optuna_after = _optuna_trials(study, str(tiny_mri))
    assert len(after) == 9 and sorted(t.user_attrs["trial_id"] for _, t in optuna_after) == sorted(after)
    assert {t.user_attrs["trial_id"]: t.value for _, t in optuna_after} == pytest.approx(
        {k: r["val_loss"] for k, r in after.items()}
    )


def _record(
    trial_id: str, task: str, fraction: float, val_loss: float, status: Status = Status.FINISHED
) -> TrialRecord:
    pretrained = task != "none"
    return TrialRecord(
        trial_id=trial_id,
        status=status,
        dataset="mri",
        strategy=task,
        label_fraction=fraction,
        task=task,
        patch_size=32 if pretrained else None,
        sampler="random" if pretrained else None,
        extent=1.0 if pretrained else None,
        pretrain_lr=0.01 if pretrained else None,
        scope="encoder" if pretrained else "none",
        lr=0.001,
        seed=0,
        reason="" if status is Status.FINISHED else "diverged",
        metrics={"val_loss": val_loss, "dice": 0.5} if status is Status.FINISHED else {},
    )


def test_the_optuna_view_adds_each_trial_once_and_rebuilds_when_the_space_changes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    spec = validate(
        {
            "name": "tiny",
            "datasets": ["mri"],
            "label_fractions": [0.5, 1.0],
            "pretraining": {"task": ["restoration", "prediction"], "sampler": ["random"]},
            "finetuning": {"lr": [0.001]},
        }
    )
    records = [
        _record("a", "restoration", 0.5, 0.4),
        _record("b", "none", 0.5, 0.5),
        _record("c", "prediction", 1.0, math.nan, Status.FAILED),
    ]
    assert OptunaLog(storage, spec).sync(records) == 3
    assert OptunaLog(storage, spec).sync(records) == 0  # a resumed driver adds no duplicate
    # one Optuna study per data set and label fraction: the fraction is never a tuned parameter
    assert sorted(optuna.get_all_study_names(storage)) == ["tiny/mri 100 % labels", "tiny/mri 50 % labels"]
    half = optuna.load_study(study_name="tiny/mri 50 % labels", storage=storage)
    trials = half.get_trials(deepcopy=False)
    assert [(t.user_attrs["trial_id"], t.state.name, t.value) for t in trials] == [
        ("a", "COMPLETE", 0.4),
        ("b", "COMPLETE", 0.5),
    ]
    # only what varies: the task (with the baseline's "none"); patch size, sampler, lr are one value each
    assert trials[0].params == {"task": "restoration"} and trials[1].params == {"task": "none"}
    assert half.metric_names == ["validation loss"]
    assert (
        half.user_attrs["label fraction"] == 0.5 and half.user_attrs["space"] == "task: restoration, prediction, none"
    )
    (failed,) = optuna.load_study(study_name="tiny/mri 100 % labels", storage=storage).get_trials(deepcopy=False)
    assert (failed.user_attrs["trial_id"], failed.state.name) == ("c", "FAIL")
    # an enlarged space changes the choices Optuna holds: the view is rebuilt, once per trial again
    wider = spec.model_copy(update={"finetuning": spec.finetuning.model_copy(update={"lr": [0.001, 0.01]})})
    assert OptunaLog(storage, wider).sync(records) == 3
    assert len(optuna.load_study(study_name="tiny/mri 50 % labels", storage=storage).trials) == 2
