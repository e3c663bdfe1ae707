"""What the dry run counts reads right (issue 27, Found 8): axes that vary, one pretraining in the
singular. Nothing here starts Ray or trains."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, run_cli
from tests.run.conftest import write_spec


def test_the_dry_run_of_a_sampled_search_counts_the_axes_that_vary(tmp_path: Path) -> None:
    """``python -m study.run search_spaces/bayes.yaml --dry-run``: 6 axes vary, not 11."""
    result = run_cli("study.run", str(REPO / "search_spaces" / "bayes.yaml"), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "sampled trials over" in line)
    assert (
        "24 sampled trials over 6 varied axes (pretraining.task, pretraining.patch_size, pretraining.sampler, "
        "finetuning.scope, finetuning.schedule, finetuning.lr)"
    ) in line


def test_one_pretraining_is_one_pretraining(tmp_path: Path, tiny_mri: Path) -> None:
    """``python -m study.run tiny.yaml --dry-run`` of a study with one pretraining per data set."""
    spec = write_spec(tmp_path, datasets=[str(tiny_mri)])
    result = run_cli("study.run", str(spec), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"  {tiny_mri}: 4 fine-tuning trials, 1 unique pretraining" in result.stdout
    assert "1 unique pretrainings" not in result.stdout
