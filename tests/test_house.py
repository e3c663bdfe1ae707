"""The house rules a restructuring must keep: one owner of the study folder, light imports."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

# Every file of the study folder's layout (study/folder/store.py's docstring lists them).
LAYOUT_FILES = (
    "study.json",
    "data_checked.json",
    "result.json",
    "error.json",
    "trial.json",
    "per_case.csv",
    "attempts.jsonl",
    "mlflow_run_id",
    "finished.log",
    "executed.log",
    "sampled.jsonl",
    "weights.pt",
    "inpainting.csv",
    "driver.lock",
    "driver.json",
    "optuna.db",
    "invocations.jsonl",
)


def test_only_the_store_names_the_study_folders_files() -> None:
    store = REPO / "study" / "folder" / "store.py"
    text = store.read_text()
    assert all(name in text for name in LAYOUT_FILES), "the store's layout lost a file"
    pattern = re.compile("|".join(re.escape(n) for n in LAYOUT_FILES))
    found = {
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in (REPO / "study").rglob("*.py")
        if path != store
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    }
    assert not found, "\n".join(sorted(found))


@pytest.mark.parametrize(
    "module",
    [
        "study.design.spec",
        "study.design.spec_loading",
        "study.design.plan",
        "study.folder.store",
        "study.folder.records",
        "study.constants",
    ],
)
def test_parsing_a_spec_or_reading_a_study_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; heavy = {{'torch', 'numpy', 'pandas'}} & set(sys.modules); print(sorted(heavy))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "torch" not in out, out


def test_study_run_refuses_a_spec_before_it_loads_torch_ray_or_mlflow() -> None:
    code = (
        "import sys, study.run; heavy = {'torch', 'ray', 'mlflow', 'pandas', 'optuna'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]", out
