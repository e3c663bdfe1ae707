"""The dry run checks what the run will hit: a storage folder that cannot be made, and data sets
too small to answer (issue 27, Found 5). Nothing here starts Ray or trains."""

from __future__ import annotations

from pathlib import Path

from study.data import PhantomSettings, phantom_split
from study.design.plan import make_plan
from study.design.spec_loading import load_spec
from study.preflight.power_check import needed, power_warnings
from tests.conftest import REPO, assert_user_error, run_cli

PRETEXT = str(REPO / "search_spaces" / "pretext.yaml")


def test_a_storage_folder_that_cannot_be_made_is_refused_by_the_dry_run(tmp_path: Path) -> None:
    result = run_cli("study.run", PRETEXT, "--set", "storage=/proc/nope", "--dry-run", cwd=tmp_path)
    assert_user_error(result, "storage: /proc", "virtual file system", "cannot be made")
    assert list(tmp_path.iterdir()) == []


def test_the_dry_run_warns_when_a_data_set_cannot_reach_alpha(tmp_path: Path) -> None:
    spec = load_spec(PRETEXT, ["pruning.enabled=true"])
    plan = make_plan(spec)
    # 16 strategies under Holm need 9 pairs (16 / 2^9 < 0.05); pruning 16 x 16 tests, 13 patients
    assert needed(16, 0.05) == 9 and needed(16 * 16, 0.05) == 13
    lines = power_warnings(plan, {"mri": (8, 4, "volume"), "ct": (40, 20, "patient")})
    assert len(lines) == 2 and all(line.startswith("warning: mri: ") for line in lines)
    assert "8 test volumes cannot show any of 16 strategies" in lines[0] and lines[0].endswith("9 would")
    assert "pruning can stop nothing with 4 validation volumes" in lines[1] and lines[1].endswith("13 would")
    assert power_warnings(plan, {"mri": (9, 13, "volume")}) == []
    # the command prints what the phantoms it would generate give
    result = run_cli("study.run", PRETEXT, "--dry-run", "--set", "pruning.enabled=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    splits = {name: phantom_split(PhantomSettings.default(name, size=spec.scale.image_size)) for name in spec.datasets}
    phantoms = {name: (len(s.test), len(s.val), "volume" if name == "mri" else "patient") for name, s in splits.items()}
    assert printed == power_warnings(plan, phantoms)
