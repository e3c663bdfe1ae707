"""Safe defaults: checkpoints load as weights only and only from the study's own storage, local
servers listen on loopback, and no credential reaches the terminal, the study folder or MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from study.design.plan import make_plan
from study.design.spec_loading import load_spec
from study.execution.trial import run_trial
from study.folder.store import StudyStore
from tests.reliability.study_checks import SCALE
from tests.run.conftest import write_spec


class _Payload:
    """Unpickling this runs a shell command: what a planted checkpoint could do without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _trials(tmp_path: Path, data: Path):
    spec = load_spec(
        write_spec(tmp_path, datasets=[str(data)], scale=SCALE, label_fractions=[0.5, 1.0], baseline=False), []
    )
    return make_plan(spec).trials, spec.storage_dir()


def test_a_planted_checkpoint_is_never_unpickled(tmp_path: Path, tiny_mri: Path, tally) -> None:
    tally.trying("safe", "planted pickle checkpoint")
    (trial, *_), study = _trials(tmp_path, tiny_mri)
    marker = tmp_path / "pwned"
    work = study / "trials" / trial.id / "work"
    work.mkdir(parents=True)
    torch.save({"model": _Payload(marker)}, work / "finetune.pt")
    result = run_trial(StudyStore(study), trial, data_path=str(tiny_mri))
    assert result.finished
    assert not marker.exists(), "the checkpoint's pickle ran"
    tally.held_up("safe", "planted pickle checkpoint")


def test_pretrained_weights_outside_the_study_are_not_loaded(tmp_path: Path, tiny_mri: Path, tally) -> None:
    tally.trying("safe", "weights symlinked from outside the study")
    (first, second), study = _trials(tmp_path, tiny_mri)
    assert first.pretraining == second.pretraining
    run_trial(StudyStore(study), first, data_path=str(tiny_mri))
    weights = study / "pretrain" / first.pretraining.key / "weights.pt"
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(weights.read_bytes())
    weights.unlink()
    weights.symlink_to(outside)
    assert run_trial(StudyStore(study), second, data_path=str(tiny_mri)).finished
    assert not weights.is_symlink() and weights.is_file()  # made again inside the study
    assert len((study / "pretrain" / "executed.log").read_text().splitlines()) == 2
    tally.held_up("safe", "weights symlinked from outside the study")


_LISTENERS = """
import json, psutil
import ray.tune  # imported first, as the runner does
from study.preflight.cluster import start_ray
start_ray(None, 1)
import ray
procs = [psutil.Process()] + psutil.Process().children(recursive=True)
seen = set()
for proc in procs:
    try:
        for c in proc.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                seen.add((proc.name(), c.laddr.ip, c.laddr.port))
    except psutil.Error:
        pass
ray.shutdown()
print(json.dumps(sorted(seen)))
"""


def test_a_local_ray_listens_on_loopback_only(tmp_path: Path, tally) -> None:
    tally.trying("safe", "local Ray listens on loopback")
    out = subprocess.run([sys.executable, "-c", _LISTENERS], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    listeners = json.loads(out.stdout.strip().splitlines()[-1])
    assert listeners, "no listening socket found: the check saw nothing"
    exposed = [entry for entry in listeners if entry[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not exposed, exposed
    tally.held_up("safe", "local Ray listens on loopback")


@pytest.mark.slow
def test_credentials_are_never_printed_stored_or_logged(
    tmp_path: Path, tiny_mri: Path, tally, mlflow_server: str
) -> None:
    tally.trying("safe", "credentials kept out of output, files and runs")
    secret = "s3cret-Pa55"
    uri = mlflow_server.replace("http://", f"http://alice:{secret}@")
    spec = write_spec(tmp_path, datasets=[str(tiny_mri)], label_fractions=[1.0], pretraining=None, tracking_uri=uri)
    result = subprocess.run(
        [sys.executable, "-m", "study.run", str(spec)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RAY_AUTH_TOKEN": secret + "-ray"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    leaked = [p for p in (tmp_path / "studies").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked, leaked
    client, downloads = mlflow.MlflowClient(mlflow_server), tmp_path / "downloads"
    downloads.mkdir()
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert runs
    for run in runs:
        assert secret not in json.dumps({**run.data.params, **run.data.tags})
        for artifact in client.list_artifacts(run.info.run_id):
            if not artifact.is_dir:
                local = client.download_artifacts(run.info.run_id, artifact.path, str(downloads))
                assert secret.encode() not in Path(local).read_bytes()
    tally.held_up("safe", "credentials kept out of output, files and runs")
