"""MLflow glue: one parent run per study, one child run per pretraining and per trial, reopened on resume.

Only the driver process writes to MLflow (trials report through Ray), so an SQLite store never has
two writers from one study; a short retry covers a second study writing to the same file. A trial's
run id is kept in the study folder (:meth:`StudyStore.run_id`): a resumed or retried trial continues
its own run, and :meth:`Tracker.reconcile` closes runs that a killed driver left RUNNING. A
pretraining's run holds its curves, its held-out L2 and its masks; each trial that transfers it
links to it. The parent run keeps every invocation (overrides, code version, the spec as run).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import pandas as pd

from study import faults
from study.errors import SpecError, StorageError
from study.plan import PretrainPoint, TrialPoint
from study.records import PretrainRecord, TrialRecord
from study.store import StudyStore

T = TypeVar("T")
PACKAGES = ("torch", "numpy", "scipy", "pandas", "ray", "optuna", "mlflow", "h5py", "pydantic")
# MLflow 3's UI opens an experiment on its GenAI (traces) view unless this tag says it holds model
# training runs; the value is the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def absolute_uri(uri: str, cwd: Path | None = None) -> str:
    """``sqlite:///mlflow.db`` -> ``sqlite:////abs/dir/mlflow.db``; a bare path becomes ``file:``."""
    cwd = cwd or Path.cwd()
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return f"sqlite:///{(cwd / path).resolve() if not path.is_absolute() else path}"
    if "://" not in uri:
        return (cwd / uri).resolve().as_uri()
    return uri


_PASSWORD = re.compile(r"(://[^/:@\s]+:)[^@\s/]+@")  # the password of any user:password@host


def redacted(text: str) -> str:
    """A URI, or a whole spec's text, as it may be printed or logged: every password in a
    ``scheme://user:secret@host`` is replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", text)


# The pip package of each database driver SQLAlchemy may ask for (a module's name is not always its
# package's); psycopg is what ``postgresql://`` means from SQLAlchemy 2.1 on, psycopg2 before it.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000", "mysqldb": "mysqlclient", "pymysql": "PyMySQL", "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb", "pyodbc": "pyodbc", "pymssql": "pymssql",
}
DATABASES = ("postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores besides sqlite


def check_driver(uri: str) -> None:
    """A database URI whose driver is not installed is refused now, in one line naming the package
    (MLflow would fail at its first query, deep in a traceback). SQLAlchemy is asked which module
    the scheme needs, so ``postgresql+pg8000://`` and a future default are named right."""
    if not uri.partition("://")[0].lower().startswith(DATABASES):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise SpecError(f"tracking_uri {redacted(uri)}: not a database URI SQLAlchemy can open ({exc})") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        package = _DRIVER_PACKAGES.get(dialect.driver, dialect.driver)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        extra = {"psycopg": ' (in a checkout: pip install -e ".[postgres]")',
                 "mysqldb": " (it builds against the MySQL client library; mysql+pymysql:// needs PyMySQL only)"}
        extra = extra.get(dialect.driver, "")
        raise SpecError(f"tracking_uri {redacted(uri)}: the {dialect.name} driver {dialect.driver!r} is not "
                        f'installed ({first}): pip install "{package}"{extra}') from None


def _health(uri: str) -> None:
    """GET the server's /health; credentials in the URI go in a header (urllib cannot parse them)."""
    import base64
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    host = parts.hostname or ""
    bare = urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))
    request = urllib.request.Request(bare.rstrip("/") + "/health")
    if parts.username is not None:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    urllib.request.urlopen(request, timeout=5).read()


def _retry(fn: Callable[..., T]) -> Callable[..., T]:
    """Retry on SQLite's "database is locked" (another writer on the same file), never lose a write."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> T:
        for attempt in range(30):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # MlflowException wraps the sqlalchemy OperationalError
                if "locked" not in str(exc) or attempt == 29:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapped


class Tracker:
    def __init__(self, uri: str, experiment: str, store: StudyStore) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # our summary prints the store
        import mlflow
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."

        self.uri, self.store = uri, store
        self._mlflow = mlflow
        with _creating(uri):  # the experiment too: two processes may make the same one
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = self._experiment(experiment)
        self.parent_id: str | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks, and so this tracker, into the study folder (tuner.pkl):
        # what it writes there must carry no credential. Nothing unpickles it to log again.
        return {"uri": redacted(self.uri), "store": self.store, "experiment_id": self.experiment_id,
                "parent_id": self.parent_id}

    @staticmethod
    def check(uri: str) -> None:
        """Fail at once, in one line, when the store cannot be reached or opened."""
        if uri.startswith("sqlite:///"):
            folder = Path(uri.removeprefix("sqlite:///")).parent
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                raise SpecError(f"tracking_uri {uri}: folder {folder} does not exist or is not writable")
        elif uri.startswith(("http://", "https://")):
            try:
                _health(uri)
            except Exception as exc:
                raise SpecError(f"tracking_uri {redacted(uri)}: no MLflow server answers ({exc.__class__.__name__}: {exc})") from None

    @_retry
    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:  # made before the tag was set
                self.client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):  # artifacts beside the database, where `mlflow ui` looks
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlruns").as_uri()
        return self.client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))

    @_retry
    def open_parent(self, previous: str | None, name: str, params: dict[str, Any], spec_file: Path) -> str:
        """Reopen the study's parent run, or start one with the spec, versions and environment."""
        if previous and self._exists(previous):
            self.client.update_run(previous, status="RUNNING")
            self.parent_id = previous
            return previous
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"study.kind": "study", "study.name": name})
        self.parent_id = run.info.run_id
        versions = {f"version.{p}": _version(p) for p in PACKAGES}
        self._params(self.parent_id, {**params, **versions, "python": platform.python_version()})
        self.client.log_text(self.parent_id, redacted(spec_file.read_text()), spec_file.name)
        return self.parent_id

    @_retry
    def record_invocation(self, number: int, invocation: dict[str, Any], spec_yaml: str) -> None:
        """One invocation on the parent run as it starts: its overrides and code version
        (``invocations/<n>.json``) and the spec it resolved to (``invocations/<n>-spec.yaml``), so a
        resumed study keeps what every invocation asked for, not only the first."""
        stem = f"invocations/{number:03d}"
        self.client.log_dict(self.parent_id, invocation, f"{stem}.json")
        self.client.log_text(self.parent_id, redacted(spec_yaml), f"{stem}-spec.yaml")
        overrides = " ".join(invocation.get("overrides") or []) or "(none)"
        self.client.set_tag(self.parent_id, "study.invocations", str(number))
        self.client.set_tag(self.parent_id, "study.last_overrides", redacted(overrides)[:5000])
        commit = (invocation.get("code") or {}).get("git_commit")
        if commit:
            self.client.set_tag(self.parent_id, "mlflow.source.git.commit", commit)

    def run_link(self, run_id: str) -> str:
        """Where the MLflow UI shows a run: relative to the UI of a file store, absolute for a server."""
        path = f"#/experiments/{self.experiment_id}/runs/{run_id}"
        return f"{redacted(self.uri).rstrip('/')}/{path}" if self.uri.startswith(("http://", "https://")) else path

    @_retry
    def start_pretraining(self, point: PretrainPoint) -> str:
        """The pretraining's own run, nested under the parent: reopened when its folder names one.
        A pretraining that already has a record gets its final logging at once."""
        run_id = self.store.pretrain_run_id(point.key)
        if run_id is None or not self._exists(run_id):
            tags = {"mlflow.parentRunId": self.parent_id, "study.kind": "pretraining", "study.pretrain_key": point.key,
                    "study.strategy": point.strategy, "study.dataset": point.dataset}
            run = self.client.create_run(self.experiment_id, run_name=f"{point.dataset}-pretrain-{point.strategy}",
                                         tags=tags)
            run_id = run.info.run_id
            self._params(run_id, {k: v for k, v in point.identity().items() if k != "key"}
                         | {f"scale.{k}": v for k, v in point.scale.model_dump(mode="json").items()})
            self.store.save_pretrain_run_id(point.key, run_id)
        elif self.client.get_run(run_id).info.status not in ("FINISHED", "FAILED"):
            self.client.update_run(run_id, status="RUNNING")
        record = self.store.pretrain_result(point.key)
        if record is not None:
            self.finish_pretraining(run_id, record)
        return run_id

    @_retry
    def finish_pretraining(self, run_id: str, record: PretrainRecord, examples: Callable[[], Any] | None = None) -> None:
        """Final metrics, the curves (from the record when none were logged live), the held-out L2
        per slice and, when ``examples`` draws them, the masks of the pretext task."""
        from mlflow.entities import Metric

        run = self.client.get_run(run_id)
        if run.info.status in ("FINISHED", "FAILED"):
            return
        now = int(time.time() * 1000)
        metrics = []
        if "pretrain/val_loss" not in run.data.metrics:  # a pretraining run inside a trial, or before this run
            for epoch in record.history:
                step = int(epoch.get("epoch", 0))
                metrics += [Metric(f"pretrain/{k}", float(v), now, step) for k, v in epoch.items()
                            if k not in ("epoch", "stage") and isinstance(v, (int, float)) and not isinstance(v, bool)]
        finals = {"best_val_loss": record.best_val_loss, "inpainting_l2": record.inpainting_l2,
                  "best_epoch": record.best_epoch, "n_scans": record.n_scans, "seconds": record.seconds}
        metrics += [Metric(k, float(v), now, 0) for k, v in finals.items() if v is not None and k not in run.data.metrics]
        for start in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[start:start + 500])
        table = self.store.inpainting_path(record.key)
        if table.exists():
            self.client.log_artifact(run_id, str(table))
        if examples is not None and record.finished:
            try:
                figure = examples()
            except Exception as exc:  # noqa: BLE001 - a picture never stops a study
                print(f"warning: no mask examples for pretraining {record.strategy} ({exc.__class__.__name__}: {exc})")
                figure = None
            if figure is not None:
                self.client.log_figure(run_id, figure, "masks.png")
                from matplotlib import pyplot as plt

                plt.close(figure)
        if not record.finished:
            self.client.set_tag(run_id, "study.failure", record.reason[:5000])
        self.client.set_terminated(run_id, "FINISHED" if record.finished else "FAILED")

    def _exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except Exception:
            return False

    @_retry
    def _params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items() if v is not None]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start:start + 100])

    @_retry
    def start_trial(self, trial: TrialPoint, pretrain_run: str | None = None) -> str:
        """The trial's child run: reopened when its folder names one, created otherwise; linked to
        its pretraining's run (a tag and, in the run's description, a link the UI follows)."""
        run_id = self.store.run_id(trial.id)
        if run_id is None or not self._exists(run_id):
            tags = {"mlflow.parentRunId": self.parent_id, "study.kind": "trial", "study.trial_id": trial.id,
                    "study.strategy": trial.strategy, "study.dataset": trial.dataset}
            if trial.pretraining is not None:
                tags["study.pretrain_key"] = trial.pretraining.key
            run = self.client.create_run(self.experiment_id, run_name=f"{trial.dataset}-{trial.strategy}-{trial.label_fraction:g}", tags=tags)
            run_id = run.info.run_id
            self._params(run_id, trial.params())
            self.store.save_run_id(trial.id, run_id)
        elif self.client.get_run(run_id).info.status != "FINISHED":
            self.client.update_run(run_id, status="RUNNING")
        if pretrain_run is not None and trial.pretraining is not None:
            self.client.set_tag(run_id, "study.pretrain_run_id", pretrain_run)
            self.client.set_tag(run_id, "mlflow.note.content",
                                f"Pretrained by [{trial.pretraining.strategy}]({self.run_link(pretrain_run)}) "
                                f"(key `{trial.pretraining.key}`).")
        return run_id

    @_retry
    def log_epoch(self, run_id: str, record: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        stage, now = record.get("stage", "finetune"), int(time.time() * 1000)
        metrics = [Metric(f"{stage}/{k}", float(v), now, step) for k, v in record.items()
                   if k not in ("stage", "epoch") and isinstance(v, (int, float))]
        self.client.log_batch(run_id, metrics=metrics)

    @_retry
    def finish_trial(self, run_id: str, result: TrialRecord) -> None:
        """Final metrics, the per-case table, and the run's end state (FAILED with the reason)."""
        from mlflow.entities import Metric

        run = self.client.get_run(run_id)
        if run.info.status == "FINISHED" or (result.stopped and "study.stopped" in run.data.tags):
            return
        now = int(time.time() * 1000)
        # A driver killed half-way through this method already logged some: never log a row twice.
        values = {**result.metrics, "seconds": result.seconds}
        metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and k not in run.data.metrics]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)
        faults.driver_point("logging")
        table = self.store.per_case_path(result.trial_id)
        if table.exists():
            self._mlflow.set_tracking_uri(self.uri)
            self._mlflow.log_table(pd.read_csv(table), artifact_file="per_case.json", run_id=run_id)
            self.client.log_artifact(run_id, str(table))
        if result.stopped:  # statistical early stopping: on purpose, not a failure
            self.client.set_tag(run_id, "study.stopped", result.reason[:5000])
            self.client.set_terminated(run_id, "KILLED")
            return
        if not result.finished:
            self.client.set_tag(run_id, "study.failure", result.reason[:5000])
        self.client.set_terminated(run_id, "FINISHED" if result.finished else "FAILED")

    @_retry
    def stop_trial(self, run_id: str, status: str = "KILLED", reason: str | None = None) -> None:
        if reason is not None:
            self.client.set_tag(run_id, "study.failure", reason[:5000])
        if self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, status)

    def reconcile(self, trials: list[TrialPoint]) -> int:
        """Close what a killed driver left open: finished trials and pretrainings get their final
        logging, the others are marked KILLED until they run again. Returns how many runs were touched."""
        touched = 0
        for key in dict.fromkeys(t.pretraining.key for t in trials if t.pretraining is not None):
            run_id = self.store.pretrain_run_id(key)
            if run_id is None or not self._exists(run_id):
                continue
            status, record = self.client.get_run(run_id).info.status, self.store.pretrain_result(key)
            if record is not None and status not in ("FINISHED", "FAILED"):
                self.finish_pretraining(run_id, record)
                touched += 1
            elif record is None and status == "RUNNING":
                self.stop_trial(run_id)
                touched += 1
        for trial in trials:
            run_id = self.store.run_id(trial.id)
            if run_id is None or not self._exists(run_id):
                continue
            status = self.client.get_run(run_id).info.status
            result = self.store.trial_result(trial.id)
            ended = {"FINISHED"} if result is None or result.finished else {"KILLED"} if result.stopped else {"FAILED"}
            if result is not None and status not in ended:
                self.finish_trial(run_id, result)
                touched += 1
            elif result is None and status == "RUNNING":
                self.stop_trial(run_id)
                touched += 1
        return touched

    @_retry
    def close_parent(self, status: str, summary: dict[str, float]) -> None:
        if self.parent_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in summary.items()])
        self.client.set_terminated(self.parent_id, status)


@contextlib.contextmanager
def _creating(uri: str) -> Iterator[None]:
    """Open an SQLite store with its first creation serialised and atomic (other stores: as is).

    MLflow creates a missing store by running its schema migrations in place: two drivers opening
    a fresh file at once both migrate it and one dies (``table _alembic_tmp_... already exists``),
    and a process killed half-way leaves a store no later run can open. So a file lock beside the
    database lets one process at a time create or open it (on every node that shares the folder),
    and a missing store is made whole under another name and renamed into place."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock, Timeout

    db = Path(uri.removeprefix("sqlite:///"))
    lock = FileLock(f"{db}.lock", timeout=300)
    try:
        lock.acquire()
    except Timeout:
        raise StorageError(f"tracking_uri sqlite:///{db}: {db}.lock has been held for 5 minutes by another "
                           "process creating the store") from None
    try:
        if not db.exists():
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            for left in db.parent.glob(f".{db.name}.*.creating"):  # a killed creator's, under this lock
                left.unlink(missing_ok=True)
            fresh = db.with_name(f".{db.name}.{os.getpid()}.creating")
            SqlAlchemyStore(f"sqlite:///{fresh}", (db.parent / "mlruns").as_uri()).engine.dispose()
            os.replace(fresh, db)
        yield
    finally:
        lock.release()


def code_version() -> dict[str, Any]:
    """The package version and, in a git checkout, its commit and whether it has local changes."""
    import subprocess

    from study import __version__

    out: dict[str, Any] = {"package": __version__}
    repo = Path(__file__).resolve().parents[1]
    if (repo / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10)
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return out
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            out["git_dirty"] = bool(dirty.stdout.strip())
    return out


def invocation_record(space_file: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """What one ``study.run`` invocation asked for, as the study folder and the parent run keep it."""
    import socket

    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "space": str(Path(space_file).resolve()),
            "overrides": [redacted(o) for o in overrides], "code": code_version(), "host": socket.gethostname(),
            "pid": os.getpid()}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
