"""A two-node Ray cluster on loopback and an MLflow tracking server: the cluster path end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest

from tests.conftest import free_port as _free_port
from tests.conftest import start_mlflow_server, stop_process
from tests.run.conftest import write_spec

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _stop(temp_dir: str) -> None:
    """Stop this cluster's processes only. ``ray stop`` would stop every Ray on the machine: the
    local Ray of a study running beside this test (pytest-xdist, another user's suite) too."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or ()):
                mine += [proc, *proc.children(recursive=True)]  # workers and agents rename themselves
        except psutil.Error:
            pass
    for proc in mine:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    for proc in psutil.wait_procs(mine, timeout=30)[1]:
        proc.kill()


@pytest.fixture
def cluster(tmp_path: Path):
    # Ray 2.60 makes new clusters require a token; every process of this test shares ~/.ray/auth_token.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    # Its own temp folder (short: Ray's socket paths must stay under 108 bytes): `ray start` records
    # its address in the temp folder, and a local Ray started meanwhile from /tmp/ray must not join it.
    temp_dir = tempfile.mkdtemp(prefix="ray-cluster-", dir="/tmp")
    run = lambda *a: subprocess.run([str(BIN / "ray"), *a], env=env, capture_output=True, text=True, timeout=180)  # noqa: E731
    server = None
    try:
        # a fresh machine has no token yet; the output (the token itself) is captured, never shown
        assert run("get-auth-token", "--generate").returncode == 0
        for _ in range(3):  # a free port may be taken before Ray binds it (a study beside this test)
            ray_port = _free_port()
            started = run(
                "start",
                "--head",
                "--port",
                str(ray_port),
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                "1",
                "--include-dashboard",
                "false",
                "--temp-dir",
                temp_dir,
            )
            if started.returncode == 0:
                break
            _stop(temp_dir)
        assert started.returncode == 0, started.stderr[-2000:]
        address = f"127.0.0.1:{ray_port}"
        joined = run(
            "start", "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir", temp_dir
        )
        assert joined.returncode == 0, joined.stderr[-2000:]
        server, uri = start_mlflow_server(tmp_path, "--workers", "1", env=env)  # one client: one worker
        yield address, uri, env
    finally:
        if server is not None:
            stop_process(server)
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_smoke_study_on_a_two_node_cluster_logs_to_a_tracking_server(tmp_path: Path, tiny_mri: Path, cluster) -> None:
    address, uri, env = cluster
    spec = write_spec(tmp_path, datasets=[str(tiny_mri)])
    result = subprocess.run(
        [sys.executable, "-m", "study.run", str(spec), "--address", address, "--tracking-uri", uri],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tiny: 4 trials finished, 0 failed" in result.stdout
    attempts = [
        json.loads(line)
        for path in (tmp_path / "studies" / "tiny" / "trials").glob("*/attempts.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len({a["node"] for a in attempts}) == 2  # two 1-CPU nodes, two trials at a time: both used
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("study.kind") == "trial"]
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}
    assert {a.path for a in client.list_artifacts(trials[0].info.run_id)} >= {"per_case.json", "per_case.csv"}
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server
