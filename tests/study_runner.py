"""``python -m study.run`` for the test suite, without a new interpreter and a new Ray per study.

A tiny study costs about 27 CPU-seconds as a command and 16 as the same ``main`` in a process
that already runs Python, torch, MLflow and a local Ray (measured on the 2-core machine, issue
24). :class:`StudyRunner` is that process: one per test session (per pytest-xdist worker), started
on first use, which runs ``study.run``'s ``main`` through ``run_main`` (its exit status, its
one-line errors) once per request, one request at a time, in the working folder and environment
the test gives, its file descriptors 1 and 2 captured as a command's would be. The test process
itself never starts Ray, so nothing it forks later (a DataLoader worker) inherits Ray's threads.

What it cannot do: inject a fault. ``SSL_STUDY_FAULT`` reaches Ray's workers only from their
environment when Ray starts, so a test that injects one runs ``python -m study.run`` itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from study.faults import FAULT_ENV

REPO = Path(__file__).resolve().parents[1]


class StudyRunner:
    """The client side: ``run(cwd, *args)`` returns what ``subprocess.run`` would."""

    def __init__(self, folder: Path) -> None:
        self._folder = Path(folder)  # the session's: its phantom cache, the runner's own log
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        # a command of its own (not multiprocessing's spawn, which would import the test process's
        # main module again), talking over a socket pair; what it prints between studies goes to a log
        ours, theirs = socket.socketpair()
        self._folder.mkdir(parents=True, exist_ok=True)
        with open(self._folder / "study-runner.log", "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.study_runner", str(theirs.fileno()), str(self._folder / "data_cache")],
                pass_fds=[theirs.fileno()],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        theirs.close()
        self._conn = Connection(ours.detach())

    def run(self, cwd: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
        if os.environ.get(FAULT_ENV):
            raise RuntimeError(f"{FAULT_ENV} reaches Ray's workers only when Ray starts: run python -m study.run")
        if self._process is None or self._process.poll() is not None:
            self._start()
        self._conn.send((str(cwd), list(args), dict(os.environ)))
        try:
            code, out, err = self._conn.recv()
        except (EOFError, OSError):
            code = self._process.wait(timeout=60)
            raise RuntimeError(
                f"the study runner died (exit status {code}; {self._folder / 'study-runner.log'})"
            ) from None
        return subprocess.CompletedProcess(["python", "-m", "study.run", *args], code, out, err)

    def close(self) -> None:
        if self._process is None:
            return
        try:
            self._conn.send(None)
            self._process.wait(timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        self._conn.close()
        self._process = None


def _serve(conn, data_cache: str) -> None:
    """The runner process: a local Ray started as ``study.run`` starts its own, then one study
    per request until told to stop."""
    os.environ["SSL_STUDY_DATA_CACHE"] = data_cache  # what Ray's workers see: the session's phantom cache
    from study.preflight.cluster import start_ray

    start_ray(None)
    base = dict(os.environ)
    while (request := conn.recv()) is not None:
        cwd, args, environ = request
        os.environ.clear()
        os.environ.update({**base, **environ})  # the test's environment, as a command would inherit it
        try:
            conn.send(_run(cwd, args))
        finally:
            os.environ.clear()
            os.environ.update(base)
            close_pooled_connections()
    import ray

    ray.shutdown()


def _run(cwd: str, args: list[str]) -> tuple[int, str, str]:
    from study._cli import run_main
    from study.run import main

    here = os.getcwd()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            os.chdir(cwd)
            try:
                run_main(main, args)
            except SystemExit as exit_:
                code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:  # what an uncaught exception does to a command: a traceback, status 1
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            os.chdir(here)
        out.seek(0)
        err.seek(0)
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def close_pooled_connections() -> None:
    """A command's database connections end with it. Here MLflow (one engine per database and
    store kind, and its stores cached per URI) and Optuna keep SQLAlchemy engines, their pooled
    connections open on the files, for the life of the process: every engine is closed after each
    study, so the next one opens the file that is there then (a test may have put a study folder
    back in its place: a connection to the file it replaced would write to a deleted one)."""
    import gc

    engine_type = getattr(sys.modules.get("sqlalchemy.engine"), "Engine", None)
    if engine_type is None:
        return
    for engine in [o for o in gc.get_objects() if isinstance(o, engine_type)]:
        engine.dispose()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])), sys.argv[2])
