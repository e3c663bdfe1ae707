"""One driver per study (study/folder/driver_lock.py): real files, real flock, real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.errors import BusyError
from study.folder.store import StudyStore
from tests.conftest import REPO, assert_user_error, run_cli
from tests.run.conftest import write_spec

_HOLD = """
import sys, time
from study.folder.store import StudyStore
lock = StudyStore(sys.argv[1]).driver_lock()
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def _owner_file(store: StudyStore) -> Path:
    (record,) = [p for p in store.root.iterdir() if p.suffix == ".json"]
    return record


def test_a_second_lock_is_refused_naming_the_holder_and_released_cleanly(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "studies" / "s")
    first = store.driver_lock()
    first.acquire()
    try:
        holder = store.driver_lock().holder()
        assert holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname()
        with pytest.raises(BusyError) as refused:
            store.driver_lock().acquire()
        message = str(refused.value)
        assert str(store.root) in message and f"pid {os.getpid()} on host {socket.gethostname()} since" in message
        assert "\n" not in message
    finally:
        first.release()
    assert store.driver_lock().holder() is None
    assert [p.suffix for p in store.root.iterdir()] == [".lock"]  # the record goes, the lock file stays
    again = store.driver_lock()
    again.acquire()
    again.release()


def test_a_sigkilled_holder_is_taken_over_at_once(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "s")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(store.root)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=f"pid {holder.pid} on host"):
            store.driver_lock().acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    lock = store.driver_lock()
    started = time.monotonic()
    lock.acquire()
    try:
        assert time.monotonic() - started < 1.5, "the kernel released the lock: no wait for a heartbeat"
        assert lock.took_over is not None and lock.took_over.pid == holder.pid
        assert json.loads(_owner_file(store).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def _plant(store: StudyStore, *, host: str, age: float) -> None:
    """A record as a driver on another node would have left it (its flock not seen here)."""
    store.root.mkdir(parents=True)
    lock = store.driver_lock()
    then = time.time() - age
    lock.owner_path.write_text(json.dumps({"host": host, "pid": 4242, "started": then - 60, "heartbeat": then}))


def test_another_hosts_fresh_heartbeat_refuses_even_when_the_os_lock_is_free(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "s")
    _plant(store, host="node-elsewhere", age=20)
    assert store.driver_lock().holder().host == "node-elsewhere"  # what --dry-run reports
    before = sorted(p.name for p in store.root.iterdir())
    with pytest.raises(BusyError, match=r"pid 4242 on host node-elsewhere since .* \(heartbeat 2\d s ago\)"):
        store.driver_lock().acquire()
    assert sorted(p.name for p in store.root.iterdir()) == before, "a refusal leaves nothing"
    assert json.loads(_owner_file(store).read_text())["host"] == "node-elsewhere"


def test_another_hosts_stale_heartbeat_is_a_lost_node_and_is_taken_over(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "s")
    _plant(store, host="node-lost", age=600)
    assert store.driver_lock().holder() is None
    lock = store.driver_lock()
    lock.acquire()
    try:
        assert lock.took_over is not None and lock.took_over.host == "node-lost"
        assert json.loads(_owner_file(store).read_text())["host"] == socket.gethostname()
    finally:
        lock.release()


def test_the_heartbeat_is_refreshed_while_held(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "s")
    lock = store.driver_lock()
    lock.interval = 0.2
    lock.acquire()
    try:
        first = lock.owner().heartbeat
        time.sleep(1.0)
        assert lock.owner().heartbeat > first
        assert lock.owner().started == lock._me.started
    finally:
        lock.release()


def test_fresh_renames_the_held_study_and_locks_the_new_folder(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "s")
    store.root.mkdir()
    (store.root / "study.json").write_text("{}")
    lock = store.driver_lock()
    lock.acquire()
    try:
        kept = lock.set_aside(store.set_aside)
        assert kept is not None and (kept / "study.json").exists()
        assert not any(p.suffix == ".json" and p.name != "study.json" for p in kept.iterdir()), "no record left behind"
        assert store.driver_lock().holder().pid == os.getpid(), "the new folder is held"
    finally:
        lock.release()


def test_fresh_on_a_study_with_nothing_but_the_lock_renames_nothing(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "s")
    lock = store.driver_lock()
    lock.acquire()
    try:
        assert lock.set_aside(store.set_aside) is None
        assert [p.name for p in tmp_path.iterdir()] == ["s"]
    finally:
        lock.release()


def test_a_discarded_lock_leaves_no_folder_it_made(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "studies" / "s")
    lock = store.driver_lock()
    lock.acquire()
    lock.release(discard=True)
    assert list(tmp_path.iterdir()) == []


def test_fresh_is_refused_and_a_dry_run_names_the_driver_while_the_study_runs(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, datasets=["mri"])
    store = StudyStore(tmp_path / "studies" / "tiny")
    store.root.mkdir(parents=True)
    (store.root / "study.json").write_text("{}")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(store.root)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in store.root.iterdir())
        fresh = run_cli("study.run", str(spec), "--fresh", cwd=tmp_path)
        assert_user_error(fresh, f"{store.root}: this study is already being run by pid {holder.pid} on host")
        assert [p.name for p in store.root.parent.iterdir()] == ["tiny"], "a running study was renamed away"
        assert sorted(p.name for p in store.root.iterdir()) == before
        dry = run_cli("study.run", str(spec), "--dry-run", cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert f"running now: pid {holder.pid} on host {socket.gethostname()} since" in dry.stdout
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
