"""An axis declared in the test alone (tests/design/extra_axis.py, the fine-tuning's early-stopping
margin) runs through the whole platform: spec, plan and ids, the trial's config, its record, its
MLflow params, the Optuna view and the analysis's effects table, with nothing else changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from study.design.plan import make_plan
from study.design.spec_loading import validate
from tests.conftest import REPO
from tests.run.conftest import write_spec

AXIS_ENV = {"SSL_STUDY_AXES": "tests.design.extra_axis", "PYTHONPATH": str(REPO)}
MARGINS = [0.001, 0.5]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **AXIS_ENV}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("extra-axis")
    spec = write_spec(
        folder,
        name="margin",
        datasets=["mri"],
        label_fractions=[0.5],
        finetuning={"scope": ["encoder"], "schedule": ["at_once"], "lr": [0.001], "min_delta": MARGINS},
    )
    done = _run("-m", "study.run", str(spec), cwd=folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder, spec


def _results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "studies" / "margin" / "trials").glob("*/result.json"))]


def test_without_the_declaration_the_spec_refuses_the_axis(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="finetuning.min_delta: unknown field"):
        validate({"name": "x", "finetuning": {"min_delta": MARGINS}})


def test_the_axis_reaches_plan_records_and_its_default_keeps_the_ids(study: tuple[Path, Path]) -> None:
    folder, spec = study
    results = _results(folder)
    assert len(results) == 3 and {r["status"] for r in results} == {"finished"}
    by_margin = {r["finetune_min_delta"]: r for r in results if r["task"] != "none"}
    assert sorted(by_margin) == MARGINS
    assert by_margin[0.5]["strategy"].endswith("|encoder/at_once/md0.5")
    assert "md" not in by_margin[0.001]["strategy"]
    # the same spec without the axis (this process has not declared it): the default's trials and the
    # baseline keep the ids a study run before the declaration gave them
    raw = yaml.safe_load(spec.read_text())
    raw["finetuning"].pop("min_delta")
    before = {t.id for t in make_plan(validate(raw)).trials}
    assert {r["trial_id"] for r in results if r.get("finetune_min_delta") != 0.5} == before
    assert by_margin[0.5]["trial_id"] not in before


def test_the_trial_trains_with_the_axis_value(study: tuple[Path, Path]) -> None:
    folder, spec = study
    code = (
        "import sys; from study.design.spec_loading import load_spec; from study.design.plan import make_plan; "
        "from study.execution.configs import finetune_config; spec = load_spec(sys.argv[1]); "
        "print(sorted((t.id, finetune_config(t.scale, t.values()).min_delta) for t in make_plan(spec).trials))"
    )
    out = _run("-c", code, str(spec), cwd=folder)
    assert out.returncode == 0, out.stderr
    margins = dict(eval(out.stdout))  # noqa: S307 - our own subprocess's repr of (id, float) pairs
    results = {r["trial_id"]: r for r in _results(folder)}
    assert {tid: results[tid]["finetune_min_delta"] for tid in margins} == margins


def test_mlflow_and_the_optuna_view_show_the_axis(study: tuple[Path, Path]) -> None:
    folder, _ = study
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("margin").experiment_id])
    trials = [r.data.params for r in runs if "label_fraction" in r.data.params]  # not the pretraining's, the study's
    logged = {p.get("finetune_min_delta") for p in trials if p["task"] != "none"}
    assert logged == {"0.001", "0.5"}
    storage = f"sqlite:///{folder / 'studies' / 'margin' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    viewed = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert {t.params.get("finetune_min_delta") for t in viewed if t.params.get("task") != "none"} == set(MARGINS)


def test_the_effects_table_has_the_axis(study: tuple[Path, Path]) -> None:
    folder, _ = study
    done = _run("-m", "study.analyze", str(folder / "studies" / "margin"), "--no-mlflow", cwd=folder)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    effects = pd.read_csv(folder / "studies" / "margin" / "analysis" / "effects.csv")
    rows = effects[effects["axis"] == "finetune_min_delta"]
    assert sorted(rows["level"].astype(float)) == MARGINS, effects.to_string()
