from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.analyze import load_study, log_to_mlflow
from study.errors import DataError
from tests.conftest import assert_user_error, run_cli

STRATEGIES = {
    "supervised": 0.0,
    "restoration/K32/poisson_disc|encoder/at_once": 0.04,
    "prediction/K8/random|encoder/at_once": 0.01,
}


def trial_files(
    folder: Path,
    trial_id: str,
    strategy: str,
    fraction: float,
    dice: dict[str, float],
    status: str = "finished",
    seed: int | None = 0,
) -> None:
    """trials/<id>/result.json and per_case.csv as the runner writes them (the table names the data
    set itself, phantom-mri; result.json names the spec's key, mri)."""
    out = folder / "trials" / trial_id
    out.mkdir(parents=True)
    result = {
        "trial_id": trial_id,
        "dataset": "mri",
        "label_fraction": fraction,
        "strategy": strategy,
        "task": "none" if strategy == "supervised" else strategy.split("/")[0],
        "extent": None,
        "scope": "encoder",
        "schedule": "at_once",
        "lr": 0.01,
        "unfrozen_lr": None,
        "status": status,
        "val_loss": 0.3,
        "dice": float(np.mean(list(dice.values()))),
        "seed": seed,
    }
    (out / "result.json").write_text(json.dumps(result))
    rows = [
        {
            "dataset": "phantom-mri",
            "label_fraction": fraction,
            "strategy": strategy,
            "case_id": case,
            "subject_id": case,
            "class": cls,
            "dice": v if cls == "femoral_cartilage" else v - 0.1,
            "t2_ms_pct_err": 10 * (1 - v),
            "volume_ml_pct_err": -5 * (1 - v),
        }
        for case, v in dice.items()
        for cls in ("femoral_cartilage", "meniscus")
    ]
    pd.DataFrame(rows).to_csv(out / "per_case.csv", index=False)


def write_study(
    root: Path,
    name: str = "tiny",
    strategies: dict[str, float] = STRATEGIES,
    n_cases: int = 6,
    fractions: tuple[float, ...] = (0.05, 0.25, 1.0),
    drop: tuple[str, float, str] | None = None,
    entries: list[dict] | None = None,
) -> Path:
    folder = root / "studies" / name
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(
        json.dumps(
            {
                "name": name,
                "spec": {"name": name},
                "parent_run_id": "0123abcd",
                "tracking_uri": f"sqlite:///{root / 'absent.db'}",
                "trials": entries or [],
            }
        )
    )
    rng = np.random.default_rng(0)
    for i, f in enumerate(fractions):
        base = rng.uniform(0.5, 0.8, n_cases)
        for j, (strategy, shift) in enumerate(strategies.items()):
            dice = {f"case{c}": float(v + shift + rng.uniform(0, 0.01)) for c, v in enumerate(base)}
            if drop and drop[:2] == (strategy, f):
                dice.pop(drop[2])
            trial_files(folder, f"t{i}{j}", strategy, f, dice)
    return folder


def test_cli_prints_the_ranking_writes_the_files_and_warns_when_mlflow_is_unreachable(tmp_path: Path) -> None:
    folder = write_study(tmp_path)
    result = run_cli("study.analyze", "tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mri: 2 strategies vs 'supervised'" in result.stdout
    lines = result.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "rank  strategy" in line)
    assert "restoration/K32/poisson_disc|encoder/at_once" in lines[first + 2]
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: not logged to MLflow")
    out = folder / "analysis"
    assert {p.name for p in out.iterdir()} >= {
        "ranking.csv",
        "analysis.json",
        "summary.json",
        "ranking.txt",
        "transfer.csv",
        "clinical_summary.csv",
        "clinical_cases.csv",
    }
    ranking = pd.read_csv(out / "ranking.csv")
    # per_case: one pair per case, its differences averaged over the pooled fractions
    assert ranking["n"].tolist() == [6, 6] and ranking["fractions"].tolist() == ["0.25,0.05"] * 2
    assert json.loads((out / "analysis.json").read_text())["chosen"] == {
        "mri": "restoration/K32/poisson_disc|encoder/at_once"
    }
    assert lines[0].startswith("mri (6 cases, pairing per_case, Holm p <= 0.05 over 2 strategies):")  # headline first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairing"] == "per_case" and summary["seeds"] == [0] and summary["trials_used"] == 9
    assert set(summary["datasets"]["mri"]) == {
        "verdict",
        "beats_baseline",
        "best_set",
        "practically_equivalent",
        "underpowered",
        "fractions",
        "by_fraction",
    }
    pooled = run_cli("study.analyze", "tiny", "--pairing", "pooled", "--no-mlflow", cwd=tmp_path)
    assert pooled.returncode == 0 and "the paper's protocol" in pooled.stdout
    assert pd.read_csv(out / "ranking.csv")["n"].tolist() == [12, 12]


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing", ["study 'nowhere' not found"]),
        ("no_baseline", ["data set mri: no baseline 'supervised'"]),
        (
            "missing_cases",
            ["strategy 'prediction/K8/random|encoder/at_once' lacks 1", "at fraction 0.05 seed 0: case3"],
        ),
        ("too_few_pairs", ["has 1 pair", "at least 2"]),
        ("bad_fractions", ["--fractions 'a,b'"]),
        ("absent_fraction", ["label fraction(s) 0.5 not in the study"]),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, case: str, fragments: list[str]) -> None:
    args = ["tiny", "--no-mlflow"]
    if case == "missing":
        args = ["nowhere"]
    elif case == "no_baseline":
        write_study(tmp_path, strategies={k: v for k, v in STRATEGIES.items() if k != "supervised"})
    elif case == "missing_cases":
        write_study(tmp_path, drop=("prediction/K8/random|encoder/at_once", 0.05, "case3"))
    elif case == "too_few_pairs":
        write_study(tmp_path, n_cases=1, fractions=(0.05,))
    elif case == "bad_fractions":
        write_study(tmp_path)
        args += ["--fractions", "a,b"]
    else:
        write_study(tmp_path)
        args += ["--fractions", "0.5"]
    result = run_cli("study.analyze", *args, cwd=tmp_path)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "studies" / "tiny" / "analysis").exists()


def test_load_study_joins_seeds_by_trial_id_and_uses_the_result_design(tmp_path: Path) -> None:
    from study.design.plan import TrialPoint
    from study.design.spec import Scale

    point = TrialPoint(
        dataset="mri",
        label_fraction=0.05,
        scope="none",
        schedule="at_once",
        lr=0.01,
        unfrozen_lr=None,
        pretraining=None,
        scale=Scale(),
        seed=7,
    )
    folder = write_study(tmp_path, strategies={"supervised": 0.0}, fractions=(0.25,), entries=[point.to_json()])
    trial_files(folder, point.id, "supervised", 0.05, {"case0": 0.5}, seed=None)
    trial_files(folder, "unseeded", "supervised", 0.05, {"case0": 0.5}, seed=None)
    trial_files(folder, "failedtrial1", "supervised", 0.05, {"case0": 0.5}, status="failed")
    (folder / "trials" / "pendingtrial").mkdir()
    (folder / "trials" / "t00.lock").write_text("")
    loaded = load_study(folder)
    seeds = loaded.table.drop_duplicates("trial_id").set_index("trial_id")["seed"]
    assert seeds[point.id] == 7 and seeds["t00"] == 0  # the plan's seed, then the record's own
    assert "unseeded" not in seeds  # a record without a seed and not in the plan gets none made up
    assert set(loaded.table["dataset"]) == {"mri"} and "failedtrial1" not in set(loaded.table["trial_id"])
    assert loaded.notes == [
        "1 trial(s) have no result yet and are not analysed",
        "1 trial(s) failed and are not analysed: failedtrial1",
        "1 trial(s) name no seed (neither their record nor the plan) and are left out",
    ]
    assert loaded.left_out == {"no_result": 1, "failed": 1, "no_seed": 1}


def test_load_study_refuses_a_study_without_finished_trials(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    (folder / "trials").mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({"name": "empty", "trials": []}))
    with pytest.raises(DataError, match="no finished trial of its current plan yet"):
        load_study(folder)


def test_log_to_mlflow_logs_every_file_under_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    class Client:
        def __init__(self, tracking_uri: str) -> None:
            calls.append(("client", tracking_uri))

        def get_run(self, run_id: str) -> None:
            calls.append(("get_run", run_id))

        def log_artifact(self, run_id: str, path: str, artifact_path: str) -> None:
            calls.append(("log", run_id, Path(path).name, artifact_path))

    monkeypatch.setitem(sys.modules, "mlflow", types.SimpleNamespace(MlflowClient=Client))
    db = tmp_path / "mlflow.db"
    db.write_text("")
    state = {"tracking_uri": f"sqlite:///{db}", "parent_run_id": "run1"}
    assert log_to_mlflow(state, [tmp_path / "ranking.csv", tmp_path / "analysis.json"]) is None
    assert calls[1:] == [
        ("get_run", "run1"),
        ("log", "run1", "ranking.csv", "analysis"),
        ("log", "run1", "analysis.json", "analysis"),
    ]
    assert "redacted" in log_to_mlflow({"tracking_uri": "http://u:***@host", "parent_run_id": "r"}, [])
    assert "does not exist" in log_to_mlflow({"tracking_uri": "sqlite:////nowhere/m.db", "parent_run_id": "r"}, [])
