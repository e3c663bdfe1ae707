"""One driver per study: what a driver holds on its study folder while it runs.

Two mechanisms, because neither is enough alone:

- An OS lock (``flock``) on a file in the study folder. The kernel drops it when the process ends,
  however it ends (SIGKILL, the OOM killer), so on one host a dead driver's lock is never taken for
  a live one and the same command takes the study over at once: the resume promise holds.
- An owner record beside it (host, pid, start, heartbeat), rewritten every ``HEARTBEAT`` seconds.
  On a shared file system ``flock`` does not always reach across nodes (NFS mounted ``nolock`` or
  ``local_lock=flock``, some parallel file systems), and a lost node's lock can outlive it until
  the server's lease runs out. So a record from another host whose heartbeat is fresh refuses even
  when the OS lock was free, and one older than ``STALE`` is taken over: a lost node's study is
  resumed after a few minutes. ``STALE`` is many heartbeats long, so clock skew between nodes and
  NFS attribute caching (up to a minute) do not make a live driver look dead.

``fcntl`` is used directly, not ``filelock``: the read-only probe of ``--dry-run`` (which must write
nothing), the inode check after locking and the descriptor the heartbeat keeps need the descriptor
that ``filelock`` hides. What is left unguarded: two drivers started in the same second on two
nodes of a file system where ``flock`` is local both see no record; the heartbeat catches a
second driver started later than that.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from study.errors import BusyError

HEARTBEAT = 30.0  # seconds between two refreshes of the owner record
STALE = 300.0  # an owner record from another host not refreshed for this long is a dead driver's
_PROBE_WAIT = 2.0  # a probe (a dry run, a driver starting) holds the OS lock for microseconds


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: float
    heartbeat: float

    def describe(self) -> str:
        if self.pid == 0:
            return "another driver that has not recorded itself yet"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return (
            f"pid {self.pid} on host {self.host} since {since} (heartbeat "
            f"{max(0, time.time() - self.heartbeat):.0f} s ago)"
        )

    def stale(self, stale: float) -> bool:
        return time.time() - self.heartbeat > stale


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class DriverLock:
    """Held by the one driver of a study; ``label`` names the study in messages."""

    def __init__(
        self, lock_path: Path, owner_path: Path, label: str, *, heartbeat: float = HEARTBEAT, stale: float = STALE
    ) -> None:
        self.lock_path, self.owner_path, self.label = lock_path, owner_path, label
        self.interval, self.stale = heartbeat, stale
        self.host = socket.gethostname()
        self._fd: int | None = None
        self._me: Owner | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._created: list[Path] = []  # what acquire made, removed again by release(discard=True)
        self.took_over: Owner | None = None

    # -- reading -----------------------------------------------------------------------------------

    def owner(self) -> Owner | None:
        try:
            data = json.loads(self.owner_path.read_text())
            return Owner(str(data["host"]), int(data["pid"]), float(data["started"]), float(data["heartbeat"]))
        except (OSError, ValueError, KeyError, TypeError):  # absent, half-written by hand, unreadable
            return None

    def holder(self) -> Owner | None:
        """Who runs the study now, or ``None``; takes nothing and writes nothing."""
        held = self._probe()
        owner = self.owner()
        if held:
            return owner or Owner("", 0, time.time(), time.time())
        if owner is not None and owner.host != self.host and not owner.stale(self.stale):
            return owner  # the OS lock may not reach across nodes: trust a fresh heartbeat
        return None

    def _probe(self) -> bool:
        """Whether another process holds the OS lock: a shared lock, tried and dropped at once."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        except OSError:  # no OS locks on this file system: the record alone tells
            return False
        finally:
            os.close(fd)

    # -- holding -----------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the study or raise :class:`BusyError` naming the driver that runs it."""
        folder = self.lock_path.parent
        self._created = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
        folder.mkdir(parents=True, exist_ok=True)
        if not self.lock_path.exists():
            self._created.append(self.lock_path)
        deadline = time.monotonic() + _PROBE_WAIT
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            locked = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                self._created = []  # the holder's, not ours
                raise BusyError(self._busy(self.owner())) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    os.close(fd)
                    raise
                locked = False  # a file system without OS locks: the heartbeat has to do
            if self._same_file(fd):
                break
            os.close(fd)  # renamed away (--fresh) or replaced while we waited: lock what is there now
        owner = self.owner()
        if owner is not None and not self._dead(owner, locked):
            self._fd = fd
            self.release(discard=True)
            raise BusyError(self._busy(owner))
        self.took_over, self._fd = owner, fd
        now = time.time()
        self._me = Owner(self.host, os.getpid(), now, now)
        self._write(self._me)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="study-driver-heartbeat", daemon=True)
        self._beat.start()

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
        except FileNotFoundError:
            return False

    def _dead(self, owner: Owner, locked: bool) -> bool:
        if owner.host == self.host:
            # Holding the OS lock on this host proves the recorded driver gone; without OS locks,
            # its pid tells (a reused pid keeps it alive until the heartbeat goes stale).
            return locked or not _pid_alive(owner.pid) or owner.stale(self.stale)
        return owner.stale(self.stale)

    def _busy(self, owner: Owner | None) -> str:
        running = (owner or Owner("", 0, 0, 0)).describe()
        return (
            f"{self.label}: this study is already being run by {running}; a second driver would run "
            "its trials twice: wait for it, or stop it, and the same command then resumes the study"
        )

    def _write(self, owner: Owner) -> None:
        # Not store.write_json: a heartbeat is not one of the study's writes that faults count.
        tmp = self.owner_path.with_name(f".{self.owner_path.name}.{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps({"host": owner.host, "pid": owner.pid, "started": owner.started, "heartbeat": owner.heartbeat})
        )
        os.replace(tmp, self.owner_path)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval):
            me = self._me
            if me is None:
                return
            try:
                self._write(Owner(me.host, me.pid, me.started, time.time()))
            except OSError:
                pass  # a full disk: the study reports it; a missed beat matters only after STALE

    def release(self, *, discard: bool = False) -> None:
        """Give the study up. ``discard``: nothing else was written yet, so the folders and the
        lock file that :meth:`acquire` made go too (a study refused after it leaves no trace)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        mine = self.owner()
        if self._me is not None and mine is not None and (mine.host, mine.pid) == (self._me.host, self._me.pid):
            self.owner_path.unlink(missing_ok=True)
        if discard:
            for path in reversed(self._created):
                try:
                    path.rmdir() if path.is_dir() else path.unlink()
                except OSError:
                    break  # something else appeared there: it stays
        if self._fd is not None:
            os.close(self._fd)  # the lock file stays: unlinking it would race a driver opening it
            self._fd = None
        self._me, self._created = None, []

    def set_aside(self, rename: Callable[[], Path | None]) -> Path | None:
        """``--fresh`` while holding the study: ``rename()`` moves the folder aside, this lock with
        it; the new folder is locked before anything is written to it."""
        kept = rename()
        if kept is not None:
            self.release()
            (kept / self.owner_path.name).unlink(missing_ok=True)
            self.acquire()
        return kept

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
