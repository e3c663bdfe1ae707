"""A misspelt data set or study name gets the closest real one (issue 27, Found 6). Nothing here
starts Ray or trains."""

from __future__ import annotations

from pathlib import Path

from study.folder.store import StudyStore
from tests.conftest import REPO, assert_user_error, run_cli


def test_a_misspelt_builtin_data_set_is_named(tmp_path: Path) -> None:
    result = run_cli(
        "study.run", str(REPO / "search_spaces" / "smoke.yaml"), "--set", "datasets=mir", "--dry-run", cwd=tmp_path
    )
    assert_user_error(result, "datasets: mir: no such folder; did you mean 'mri'?")


def test_a_misspelt_study_name_is_named(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "studies" / "pretext")
    store.state_path.parent.mkdir(parents=True)
    store.state_path.write_text("{}")  # a study folder is one that holds its plan
    result = run_cli("study.analyze", "pretxt", cwd=tmp_path)
    assert_user_error(result, "study 'pretxt' not found", "did you mean 'pretext'?")
