"""Bad input to ``python -m study.run``: one line naming the problem, exit status 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_user_error, run_cli
from tests.run.conftest import write_spec

CASES = [
    # (spec fields, extra CLI args, fragment the message must contain)
    ({"epochs": 3}, [], "epochs: unknown field"),
    ({"retries": "many"}, [], "retries"),
    ({"pretraining": {"task": []}}, [], "pretraining.task is empty"),
    ({"pretraining": {"patch_size": [1024]}}, [], "pretraining.patch_size"),
    ({"label_fractions": [0.0, 0.5]}, [], "label_fractions"),
    ({"label_fractions": [1.5]}, [], "outside (0, 1]"),
    ({"pretraining": {"sampler": ["hexagonal"]}}, [], "'hexagonal' is not one of"),
    ({"finetuning": {"scope": ["everything"]}}, [], "finetuning.scope"),
    ({"finetuning": {"lr": {"loguniform": [1e-4, 1e-2]}}}, [], "search.algorithm 'grid' needs a list"),
    ({"finetuning": {"lr": [2.0]}}, [], "not a learning rate"),
    ({"search": {"algorithm": "annealing"}}, [], "search.algorithm"),
    ({"scale": {"widths": [8, 12]}}, [], "divisible by groups"),
    ({"name": "my study"}, [], "name"),
    ({"datasets": ["/nonexistent/data"]}, [], "/nonexistent/data"),
    ({"tracking_uri": "http://127.0.0.1:9"}, [], "no MLflow server answers"),
    ({}, ["--set", "resources"], "--set 'resources': expected key=value"),
    ({}, ["--set", "resources.gpus_per_trial=1"], "has no GPU"),
    ({}, ["--set", "resources.cpus_per_trial=64"], "cpus_per_trial=64"),
    ({"baseline": False, "pretraining": None}, [], "nothing to run"),
    (
        {"pretraining": {"patch_size": list(range(1, 201)), "extent": [0.1 * i for i in range(1, 201)]}},
        [],
        "the grid has 160,000 trials",
    ),
]


@pytest.mark.parametrize("fields, args, fragment", CASES, ids=[c[2][:30] for c in CASES])
def test_bad_spec(tmp_path: Path, fields: dict, args: list[str], fragment: str) -> None:
    spec = write_spec(tmp_path, **fields)
    result = run_cli("study.run", str(spec), *args, cwd=tmp_path)
    assert_user_error(result, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]


def test_not_yaml(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: x\npretraining: [unclosed\n")
    assert_user_error(run_cli("study.run", str(spec), cwd=tmp_path), "broken.yaml line", "not valid YAML")


def test_yaml_python_tags_are_refused_not_run(tmp_path: Path) -> None:
    spec = tmp_path / "evil.yaml"
    spec.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    assert_user_error(run_cli("study.run", str(spec), cwd=tmp_path), "evil.yaml", "not valid YAML")
    assert not (tmp_path / "pwned").exists()


def test_missing_spec_file(tmp_path: Path) -> None:
    assert_user_error(run_cli("study.run", "nope.yaml", cwd=tmp_path), "nope.yaml: no such spec file")


def test_a_corrupt_data_set_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text("{not json")
    spec = write_spec(tmp_path, datasets=[str(data)])
    assert_user_error(run_cli("study.run", str(spec), cwd=tmp_path), "dataset.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", spec.name]


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, datasets=["mri"])
    result = run_cli("study.run", str(spec), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "total: 4 trials (0 finished, 4 to run), 1 pretrainings" in result.stdout
    assert str(tmp_path / "studies" / "tiny") in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]
    assert yaml.safe_load(spec.read_text())["name"] == "tiny"
