from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.study_runner import StudyRunner, close_pooled_connections

TINY_SCALE = {
    "profile": "laptop",
    "image_size": 32,
    "widths": [8, 16, 32],
    "groups": 4,
    "batch_size": 4,
    "pretrain_max_epochs": 2,
    "finetune_max_epochs": 2,
    "steps_per_epoch": 2,
    "n_masks": 4,
}


def write_spec(folder: Path, name: str = "tiny", **fields) -> Path:
    """A spec for a study that trains in seconds; ``fields`` replace top-level entries."""
    spec = {
        "name": name,
        "scale": TINY_SCALE,
        "pretraining": {"task": ["restoration"], "patch_size": [64], "sampler": ["random"]},
        "finetuning": {"scope": ["encoder"], "schedule": ["at_once"], "lr": [0.001]},
        "label_fractions": [0.5, 1.0],
        "baseline": True,
        "search": {"algorithm": "grid"},
        "storage": str(folder / "studies"),
        "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
        "resources": {"cpus_per_trial": 1},
        "retries": 1,
    }
    spec.update(fields)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@dataclass(frozen=True)
class FinishedStudy:
    """A study run once by ``python -m study.run`` in ``folder`` (its spec, ``studies/``, ``mlflow.db``)."""

    folder: Path
    spec: Path
    first: subprocess.CompletedProcess  # what the command printed when it ran the study


class SharedStudy:
    """A study that several tests start from, run once per session (per pytest-xdist worker) by the
    session's study runner (``tests/study_runner.py``).

    Each test gets it back as it was when it finished, at the same absolute path: the spec, the
    study's state and MLflow's artifact locations name that path, so a copy elsewhere would still
    point here. ``checkout()`` puts the pristine copy back, so a test may resume or extend it."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, runner: StudyRunner, label: str, **fields) -> None:
        self.folder = tmp_path_factory.mktemp(label)
        self.spec = write_spec(self.folder, **fields)
        self.first = runner.run(self.folder, str(self.spec))
        assert self.first.returncode == 0, self.first.stdout[-3000:] + self.first.stderr[-3000:]
        self._pristine = tmp_path_factory.mktemp(f"{label}-pristine") / label
        shutil.copytree(self.folder, self._pristine, symlinks=True)  # copy2: mtimes kept to the nanosecond

    def checkout(self) -> FinishedStudy:
        close_pooled_connections()  # this process's MLflow client would write to the replaced file
        shutil.rmtree(self.folder)
        shutil.copytree(self._pristine, self.folder, symlinks=True)
        return FinishedStudy(self.folder, self.spec, self.first)


@pytest.fixture(scope="session")
def _tiny_grid(tmp_path_factory: pytest.TempPathFactory, tiny_mri: Path, study_runner: StudyRunner) -> SharedStudy:
    return SharedStudy(tmp_path_factory, study_runner, "tiny-grid", datasets=[str(tiny_mri)])


@pytest.fixture
def tiny_grid(_tiny_grid: SharedStudy) -> FinishedStudy:
    """``write_spec(folder, datasets=[tiny_mri])`` run to the end: 4 trials (the baseline and one
    pretrained strategy at 50 % and 100 % labels), one pretraining. Tests that use it are one
    pytest-xdist group (``tests/conftest.py``: ``XDIST_GROUPS``): one worker makes it once."""
    return _tiny_grid.checkout()
