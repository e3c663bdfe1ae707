"""MLflow glue: one parent run per study, one child run per trial, reopened on resume.

Only the driver process writes to MLflow (trials report through Ray), so an SQLite store never has
two writers from one study; a short retry covers a second study writing to the same file. A trial's
run id is kept in the study folder (:meth:`StudyStore.run_id`): a resumed or retried trial continues
its own run, and :meth:`Tracker.reconcile` closes runs that a killed driver left RUNNING.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, TypeVar

import pandas as pd

from study import faults
from study.errors import SpecError
from study.plan import TrialPoint
from study.records import TrialRecord
from study.store import StudyStore

T = TypeVar("T")
PACKAGES = ("torch", "numpy", "scipy", "pandas", "ray", "optuna", "mlflow", "h5py", "pydantic")


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
        self.client = MlflowClient(tracking_uri=uri)
        self._mlflow = mlflow
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
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):  # artifacts beside the database, where `mlflow ui` looks
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlruns").as_uri()
        return self.client.create_experiment(name, artifact_location=location)

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
    def start_trial(self, trial: TrialPoint) -> str:
        """The trial's child run: reopened when its folder names one, created otherwise."""
        run_id = self.store.run_id(trial.id)
        if run_id is not None:
            if self._exists(run_id):
                if self.client.get_run(run_id).info.status != "FINISHED":
                    self.client.update_run(run_id, status="RUNNING")
                return run_id
        tags = {"mlflow.parentRunId": self.parent_id, "study.kind": "trial", "study.trial_id": trial.id,
                "study.strategy": trial.strategy, "study.dataset": trial.dataset}
        if trial.pretraining is not None:
            tags["study.pretrain_key"] = trial.pretraining.key
        run = self.client.create_run(self.experiment_id, run_name=f"{trial.dataset}-{trial.strategy}-{trial.label_fraction:g}", tags=tags)
        self._params(run.info.run_id, trial.params())
        self.store.save_run_id(trial.id, run.info.run_id)
        return run.info.run_id

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
        if run.info.status == "FINISHED":
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
        """Close what a killed driver left open: finished trials get their final logging, the others
        are marked KILLED until they run again. Returns how many runs were touched."""
        touched = 0
        for trial in trials:
            run_id = self.store.run_id(trial.id)
            if run_id is None or not self._exists(run_id):
                continue
            status = self.client.get_run(run_id).info.status
            result = self.store.trial_result(trial.id)
            if result is not None and status != "FINISHED" and not (status == "FAILED" and not result.finished):
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


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"
