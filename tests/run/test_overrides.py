"""Overrides the Hydra way, the resolved spec, every error at once, and a dry run that refuses what
the run refuses (issue 17, Found 4 and 5). Nothing here starts Ray or trains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from study.design.spec_loading import load_spec, validate
from study.errors import SpecError
from tests.conftest import assert_user_error, run_cli
from tests.run.conftest import write_spec


def _resolved(tmp_path: Path, *overrides: str) -> dict:
    spec = write_spec(tmp_path, datasets=["mri"])
    args = [a for o in overrides for a in ("--set", o)]
    result = run_cli("study.run", str(spec), "--print-spec", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]  # printing writes nothing
    return yaml.safe_load(result.stdout)


def test_a_scalar_where_a_list_is_expected_and_a_comma_list(tmp_path: Path) -> None:
    shown = _resolved(
        tmp_path,
        "label_fractions=0.05",
        "pretraining.task=restoration",
        "finetuning.lr=0.001,0.01",
        "datasets=mri,ct",
        "storage=" + str(tmp_path / "a,b"),
    )
    assert shown["label_fractions"] == [0.05]
    assert shown["pretraining"]["task"] == ["restoration"]
    assert shown["finetuning"]["lr"] == [0.001, 0.01]
    assert shown["datasets"] == ["mri", "ct"]
    assert shown["storage"] == str(tmp_path / "a,b")  # text is never split
    # the printed spec is the whole spec: every scale setting, and it validates back to the same
    assert shown["scale"]["finetune_lr"] == 0.01 and shown["scale"]["pad_mode"]
    asked = [
        "label_fractions=0.05",
        "pretraining.task=restoration",
        "finetuning.lr=0.001,0.01",
        "datasets=mri,ct",
        "storage=" + str(tmp_path / "a,b"),
    ]
    assert validate(shown).model_dump() == load_spec(tmp_path / "tiny.yaml", asked).model_dump()


def test_the_same_rule_holds_in_a_spec_file_and_the_python_api() -> None:
    spec = validate({"name": "x", "label_fractions": 0.5, "seeds": 3, "finetuning": {"lr": None}})
    assert spec.label_fractions == [0.5] and spec.seeds == [3] and spec.finetuning.lr is None


def test_every_error_is_named_at_once_with_the_closest_valid_name(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, datasets=["mri"])
    result = run_cli(
        "study.run",
        str(spec),
        "--set",
        "labels_fractions=0.5",
        "--set",
        "search.algorithm=tpf",
        "--set",
        "pretraining.sampler=poison_disc",
        "--set",
        "retries=many",
        cwd=tmp_path,
    )
    assert_user_error(
        result,
        "labels_fractions: unknown field; did you mean 'label_fractions'?",
        "search.algorithm: Input should be",
        "did you mean 'tpe'?",
        "pretraining.sampler: 'poison_disc' is not one of",
        "did you mean 'poisson_disc'?",
        "retries:",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]
    with pytest.raises(SpecError) as raised:  # one helper for the command line and the Python API
        validate({"name": "x", "labels_fractions": [0.5], "scale": {"profil": "paper"}})
    assert str(raised.value) == (
        "spec: scale.profil: unknown field; did you mean 'scale.profile'?; "
        "labels_fractions: unknown field; did you mean 'label_fractions'?"
    )


def test_checks_across_fields_are_all_named_too() -> None:
    with pytest.raises(SpecError) as raised:
        validate({"name": "x", "search": {"num_samples": 5}, "finetuning": {"lr": [2.0]}})
    assert "search.num_samples=5: a grid runs each of its points once" in str(raised.value)
    assert "finetuning.lr: 2.0 is not a learning rate" in str(raised.value)


GPU = pytest.mark.skipif(
    bool(os.environ.get("CUDA_VISIBLE_DEVICES")) or Path("/dev/nvidia0").exists(), reason="this machine has a GPU"
)
DRY_REFUSALS = [
    pytest.param(["--set", "resources.gpus_per_trial=0.25"], "resources.gpus_per_trial=0.25", marks=GPU, id="no-gpu"),
    pytest.param(["--set", f"resources.cpus_per_trial={(os.cpu_count() or 1) + 2}"], "that many CPUs", id="cpus"),
    pytest.param(
        ["--set", "search.num_samples=5"],
        "search.num_samples=5: a grid runs each of its points once",
        id="grid-num-samples",
    ),
    pytest.param(["--set", "finetuning.lr=abc"], "finetuning.lr: abc is not a learning rate", id="bad-lr"),
    pytest.param(["--tracking-uri", "http://127.0.0.1:9"], "no MLflow server answers", id="tracking"),
]


@pytest.mark.parametrize("args, fragment", DRY_REFUSALS)
def test_a_dry_run_refuses_what_the_run_refuses_and_writes_nothing(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    spec = write_spec(tmp_path, datasets=["mri"])
    assert_user_error(run_cli("study.run", str(spec), "--dry-run", *args, cwd=tmp_path), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]


def test_a_dry_run_says_how_many_run_at_once(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, datasets=["mri"])
    sampled = run_cli(
        "study.run",
        str(spec),
        "--dry-run",
        "--set",
        "search={algorithm: tpe, num_samples: 6}",
        "--set",
        "resources.cpus_per_trial=0.25",
        "--set",
        "resources.max_concurrent_trials=8",
        cwd=tmp_path,
    )
    assert sampled.returncode == 0, sampled.stderr
    assert "at most 4 at once (a sampled search runs at most 4 at once" in sampled.stdout
    grid = run_cli("study.run", str(spec), "--dry-run", "--set", "resources.max_concurrent_trials=1", cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr
    assert "at most 1 at once (resources.max_concurrent_trials)" in grid.stdout
    assert "as many as fit" not in grid.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]
