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


def wait_for_url(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture(scope="session")
def tiny_mri(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MRI phantom in the platform format, written once per test session."""
    out = tmp_path_factory.getbasetemp() / "tiny-mri"
    settings = PhantomSettings(kind="mri", size=32, n_train=4, n_val=1, n_test=2, n_unlabeled=2, n_slices=4)
    make_phantom_dataset(settings, out)
    return out


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """An MLflow tracking server on 127.0.0.1 with its own SQLite store; yields its URI."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "art"),
         "--workers", "1"],  # one worker: a test is one client, and four start four times slower
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_url(f"http://127.0.0.1:{port}/health", seconds=300)  # a loaded 2-core machine starts it slowly
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
