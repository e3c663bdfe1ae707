from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
def study_runner(tmp_path_factory: pytest.TempPathFactory):
    """``python -m study.run`` by its ``main`` in one process of the session's own, on one local Ray
    (tests/study_runner.py): ``study_runner.run(cwd, *args)`` returns what ``subprocess.run`` would.
    For every study a test runs without injecting a fault."""
    from tests.study_runner import StudyRunner

    runner = StudyRunner(tmp_path_factory.getbasetemp())
    yield runner
    runner.close()


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
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                f"sqlite:///{folder / 'server.db'}",
                "--artifacts-destination",
                str(folder / "art"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
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


# pytest-xdist (pyproject: -n 2 --dist loadgroup): the tests that start from one session-scoped study
# go to one worker, so the study is made once; every other test is a unit of its own, the largest
# groups first. xdist's own grouping (@pytest.mark.xdist_group) does not group under pytest 9: it
# renames each test through an attribute pytest no longer reads. A test id's prefix -> its group:
XDIST_GROUPS = {
    "tests/run/test_study.py::test_grid_runs_each_point_once_then_resumes_and_extends": "tiny_grid",
    "tests/run/test_replicates.py::test_a_changed_plan_leaves_old_trials_out_and_seeds_replicate_every_trial": (
        "tiny_grid"
    ),
    "tests/report/test_report.py::": "report",
    "tests/design/test_extra_axis.py::": "extra_axis",  # one study, read by each of its tests
}


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((group for prefix, group in XDIST_GROUPS.items() if nodeid.startswith(prefix)), nodeid)

    return GroupScheduling(config, log)


# The reliability suite's summary (tests/reliability/tally.py). These hooks live here, in the root
# conftest, because under pytest-xdist only the controller prints and it never loads the conftest
# files of test folders: the workers' records reach it in each test's report.
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests.reliability.tally import TALLY

    TALLY.add_report(report)


def pytest_terminal_summary(terminalreporter) -> None:
    from tests.reliability.tally import TALLY

    TALLY.write(terminalreporter)
