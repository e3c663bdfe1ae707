from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from study.data import PhantomSettings, make_phantom_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The built-in phantom cache is shared by the whole test session, never the user's ./data_cache.
    monkeypatch.setenv("SSL_STUDY_DATA_CACHE", str(tmp_path_factory.getbasetemp() / "data_cache"))


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ...`` as a user would and capture what they would see."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 2, one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_url(url: str, seconds: float = 60, alive: subprocess.Popen | None = None) -> bool:
    """Wait until ``url`` answers (True); False as soon as the process ``alive`` that should answer
    has exited."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if alive is not None and alive.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return alive is None or alive.poll() is None
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray for the session's in-process drivers (``study_here``), started as
    ``python -m study.run`` starts its own (``study.cluster.start_ray``, on 127.0.0.1, every CPU),
    and stopped when the session ends. Its workers see the session's phantom cache."""
    import ray

    from study.cluster import start_ray

    saved = dict(os.environ)
    os.environ["SSL_STUDY_DATA_CACHE"] = str(tmp_path_factory.getbasetemp() / "data_cache")
    try:
        start_ray(None)
    finally:  # what start_ray set for Ray's processes stays theirs: subprocesses started later see none of it
        os.environ.clear()
        os.environ.update(saved)
    yield
    ray.shutdown()


def run_here(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m study.run ARGS`` in ``cwd``, in this process, on the session's local Ray (the
    ``study_here`` fixture): the same ``main`` through the same ``run_main`` (its exit status, its
    one-line errors), without a new interpreter and a new Ray. Returns what ``subprocess.run`` would.
    Faults (``SSL_STUDY_FAULT``) reach Ray's workers only from their environment at start: a test
    that injects one runs ``python -m study.run`` itself."""
    import ray

    from study._cli import run_main
    from study.run import main

    assert ray.is_initialized(), "run_here needs the session's Ray: request the local_ray (or study_here) fixture"
    saved, here = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_main(main, list(args))
            except SystemExit as exit_:
                code = exit_.code
    finally:  # what a driver sets for itself (MLflow's HTTP retries) does not leak into later tests
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["study.run", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def study_here(local_ray) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_here`` with the session's local Ray started."""
    return run_here


@pytest.fixture(scope="session")
def tiny_mri(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MRI phantom in the platform format, written once per test session."""
    out = tmp_path_factory.getbasetemp() / "tiny-mri"
    settings = PhantomSettings(kind="mri", size=32, n_train=4, n_val=1, n_test=2, n_unlabeled=2, n_slices=4)
    make_phantom_dataset(settings, out)
    return out


def _listens_on(proc: subprocess.Popen, port: int) -> bool:
    """Whether ``proc`` or a process it started listens on ``port`` (and not some other program
    that took the port between free_port() and the bind: another pytest-xdist worker's server)."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for member in tree:
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in member.net_connections("inet")):
                return True
        except psutil.Error:
            pass
    return False


def start_mlflow_server(folder: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """An ``mlflow server`` on 127.0.0.1 with its SQLite store and artifacts in ``folder``: the
    process and its URI, once it answers and the port is its own."""
    for _ in range(3):
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "art"),
             *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        # a loaded 2-core machine starts it slowly; one that lost its port exits
        if wait_for_url(f"http://127.0.0.1:{port}/health", seconds=300, alive=server) and _listens_on(server, port):
            return server, f"http://127.0.0.1:{port}"
        stop_process(server)
    raise RuntimeError("no MLflow server could be started on a free port")


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """An MLflow tracking server on 127.0.0.1 with its own SQLite store; yields its URI."""
    # one worker: a test is one client, and four start four times slower
    server, uri = start_mlflow_server(tmp_path, "--workers", "1")
    try:
        yield uri
    finally:
        stop_process(server)


# The reliability suite's summary (tests/reliability/tally.py). These hooks live here, in the root
# conftest, because under pytest-xdist only the controller prints and it never loads the conftest
# files of test folders: the workers' records reach it in each test's report.
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests.reliability.tally import TALLY

    TALLY.add_report(report)


def pytest_terminal_summary(terminalreporter) -> None:
    from tests.reliability.tally import TALLY

    TALLY.write(terminalreporter)
