"""What every command line owes its user: examples in --help, fixed values as choices, study.train
equal to a study's trial, and analyze/report finding a study where its spec keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from study.design.plan import make_plan
from study.design.spec_loading import validate
from study.execution.single_trial import own_trial, parser
from tests.conftest import REPO, assert_user_error, run_cli

COMMANDS = ["study.run", "study.analyze", "study.report", "study.train", "study.data", "study.pretext", "study.predict"]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_shows_examples_and_no_rest_markup(module: str) -> None:
    result = run_cli(module, "--help")
    assert result.returncode == 0, result.stderr
    assert "examples:\n  python -m " + module in result.stdout
    assert "``" not in result.stdout and ":class:" not in result.stdout


def test_fixed_values_are_choices() -> None:
    assert_user_error(run_cli("study.analyze", "x", "--aggregate", "patients"), "--aggregate", "invalid choice")
    assert_user_error(run_cli("study.train", "--sampler", "poison_disc"), "--sampler", "invalid choice")
    assert_user_error(run_cli("study.train", "--trial", "abc"), "--trial needs --study")


def test_study_train_defaults_are_a_laptop_study_trial() -> None:
    spec = validate(
        {
            "name": "x",
            "datasets": ["mri"],
            "label_fractions": [1.0],
            "baseline": True,
            "pretraining": {"task": ["restoration"], "patch_size": [32], "sampler": ["poisson_disc"]},
        }
    )
    planned = {t.strategy: t for t in make_plan(spec).trials}
    assert own_trial(parser().parse_args([])) == planned["restoration/K32/poisson_disc|encoder/at_once"]
    assert own_trial(parser().parse_args([])).id == planned["restoration/K32/poisson_disc|encoder/at_once"].id
    assert own_trial(parser().parse_args(["--task", "none"])).id == planned["supervised"].id


def _a_study(storage: Path, name: str) -> None:
    (storage / name / "trials").mkdir(parents=True)
    (storage / name / "study.json").write_text(json.dumps({"name": name, "trials": []}))


@pytest.mark.parametrize("module", ["study.analyze", "study.report"])
def test_a_study_is_found_through_its_spec_or_storage(tmp_path: Path, module: str) -> None:
    storage = tmp_path / "elsewhere"
    _a_study(storage, "far")
    spec = tmp_path / "far.yaml"
    spec.write_text(yaml.safe_dump({"name": "far", "storage": str(storage), "datasets": ["mri"]}))
    # found (it has no finished trial yet: that is the refusal, not "not found")
    assert_user_error(run_cli(module, str(spec), cwd=tmp_path), "no finished trial")
    assert_user_error(run_cli(module, "far", "--storage", str(storage), cwd=tmp_path), "no finished trial")
    assert_user_error(run_cli(module, "far", cwd=tmp_path), "study 'far' not found", "--storage DIR")


def test_readme_examples_survive_zsh() -> None:
    """zsh expands an unquoted ``[...]`` as a glob and refuses the command when nothing matches."""
    text = "\n".join((REPO / name).read_text() for name in ("README.md", "docs/studies.md", "docs/analysis.md"))
    blocks = text.split("```")[1::2] + [line for line in text.splitlines() if "`python -m" in line or "`--set" in line]
    for block in blocks:
        for word in " ".join(block.split("\n")).split():
            if "[" in word and "=" in word:
                assert word.startswith("'") or word.startswith('"') or word.startswith("`'"), word
