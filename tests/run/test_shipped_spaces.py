"""Every file in ``search_spaces/`` runs end to end, its scale shrunk to smoke size with ``--set``,
and its analysis answers the file's question.

The axes, data sets, label fractions, search and pruning of each file are kept as shipped (its
seeds cut to the first): only the scale (image size, widths, epochs) is made small, so what breaks
a shipped study at laptop scale (an axis the data layer refuses, a grid the analysis cannot fit)
breaks here too.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from study.design.plan import TrialPoint
from tests.conftest import REPO
from tests.run.conftest import TINY_SCALE
from tests.study_runner import StudyRunner

pytestmark = pytest.mark.slow

SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


def _ranking(analysis: Path, state: dict) -> None:
    ranking = pd.read_csv(analysis / "ranking.csv")
    for dataset in state["spec"]["datasets"]:
        rows = ranking[ranking["dataset"] == dataset]
        assert len(rows) > 0 and rows["p"].notna().all(), f"no ranking for {dataset}"
        assert sorted(rows["rank"]) == list(range(1, len(rows) + 1))


def _transfer(analysis: Path, state: dict) -> None:
    table = pd.read_csv(analysis / "transfer.csv")
    spec = state["spec"]["finetuning"]
    # every transfer scope x schedule of the space has a row, beside the baseline
    plans = {f"{scope}/{schedule}" for scope in spec["scope"] for schedule in spec["schedule"]}
    strategies = set(table["base_strategy"].astype(str))
    assert all(any(s.endswith(f"|{plan}") for s in strategies) for plan in plans), strategies
    assert "supervised" in strategies


def _scaling(analysis: Path, state: dict) -> None:
    fits = pd.read_csv(analysis / "scaling_fits.csv")
    spec = state["spec"]
    expected = {(d, f) for d in spec["datasets"] for f in spec["label_fractions"]}
    assert set(zip(fits["dataset"], fits["label_fraction"])) == expected
    for column in ("a", "k", "c", "rse"):
        assert fits[column].map(math.isfinite).all(), fits[["dataset", "label_fraction", column, "note"]]
    # extents below and above the training set, and the baseline at x = 0
    assert (fits["n_points"] == len(spec["pretraining"]["extent"]) + 1).all()


# What each shipped study exists to answer. A new file in search_spaces/ must be added here.
ANSWERS = {
    "pretext": _ranking,
    "bayes": _ranking,
    "smoke": _ranking,
    "transfer": _transfer,
    "scaling": _scaling,
    "gpu_smoke": _ranking,
}


def _on_this_machine(space: Path) -> list[str]:
    """A space that asks for GPUs runs here on CPUs, one core a trial, when this machine has no GPU:
    its axes are what this test checks (bash benchmarks/gpu_check.sh runs it on a GPU as shipped)."""
    import torch

    resources = yaml.safe_load(space.read_text()).get("resources") or {}
    if resources.get("gpus_per_trial", 0) > 0 and not torch.cuda.is_available():
        return ["--set", "resources.gpus_per_trial=0", "--set", "resources.cpus_per_trial=1"]
    return []


def _one_replicate(space: Path) -> list[str]:
    """A file's replicate seeds cut to its first: each would run the same code path again, at the
    cost of the whole study (tests/run/test_replicates.py runs seeds; pruning stays as shipped)."""
    seeds = yaml.safe_load(space.read_text()).get("seeds")
    return ["--set", f"seeds=[{seeds[0]}]"] if seeds and len(seeds) > 1 else []


def test_every_shipped_space_names_what_its_analysis_must_answer() -> None:
    assert {p.stem for p in SPACES} == set(ANSWERS)


@pytest.mark.parametrize("space", SPACES, ids=[p.stem for p in SPACES])
def test_shipped_space_runs_every_trial_and_answers_its_question(
    tmp_path: Path, space: Path, study_runner: StudyRunner
) -> None:
    scale = yaml.safe_dump(TINY_SCALE, default_flow_style=True).strip()
    # python -m study.run, by the session's study runner (its main, in a process that keeps its Ray)
    run = study_runner.run(
        tmp_path,
        str(space),
        "--set",
        f"scale={scale}",
        "--set",
        f"storage={tmp_path / 'studies'}",
        "--set",
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        *_on_this_machine(space),
        *_one_replicate(space),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    study = tmp_path / "studies" / space.stem
    state = json.loads((study / "study.json").read_text())
    results = {p.parent.name: json.loads(p.read_text()) for p in (study / "trials").glob("*/result.json")}
    if state["spec"]["search"]["algorithm"] == "grid":
        planned = {TrialPoint.from_json(t).id for t in state["trials"]}
        assert len(planned) == len(state["trials"]) and set(results) == planned
    else:  # every draw ran (a repeated draw reads back its earlier result)
        draws = (study / "sampled.jsonl").read_text().splitlines()
        assert len(draws) >= state["spec"]["search"]["num_samples"]
        assert {json.loads(d)["trial_id"] for d in draws} == set(results)
    # a pruned file's trials end finished or stopped at a rung (on purpose, with the test's reason)
    ended = {"finished", "stopped"} if state["spec"].get("pruning", {}).get("enabled") else {"finished"}
    assert all(r["status"] in ended for r in results.values())
    assert all(r.get("reason") for r in results.values() if r["status"] == "stopped")
    assert " 0 failed" in run.stdout and "errored" not in run.stdout

    analysis = subprocess.run(
        [sys.executable, "-m", "study.analyze", str(study), "--no-mlflow"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert analysis.returncode == 0, analysis.stdout[-3000:] + analysis.stderr[-3000:]
    ANSWERS[space.stem](study / "analysis", state)
