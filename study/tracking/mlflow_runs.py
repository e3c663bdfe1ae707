"""MLflow glue: one run per study, one run per pretraining and per trial naming it, reopened on resume.

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
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from study import faults
from study.design import axes as design_axes
from study.design.plan import PretrainPoint, TrialPoint
from study.errors import StorageError
from study.folder.records import PretrainRecord, TrialRecord
from study.folder.store import StudyStore
from study.tracking.provenance import package_versions
from study.tracking.uri import redacted

T = TypeVar("T")
# Earlier MLflow 3 UIs open an experiment on its GenAI (traces) view unless this tag says it holds
# model training runs; the value is the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT. MLflow 3.18's
# UI reads the workflow type from the page address (``workflowType``) or the browser's last choice
# only (``mlflow.workflowType_v1`` in its local storage, GenAI when none): hence :func:`ui_link`.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# The runs table as the study's view: MLflow's shared view state ("Share" in its UI) is an
# experiment tag ``mlflow.sharedViewState.<key>`` that an address with ``viewStateShareKey=<key>``
# opens: the columns, the sort and the parent run expanded.
VIEW_KEY = "study"
# Trials and pretrainings name the study's run with this tag, not MLflow's mlflow.parentRunId: a
# child run is a row folded under its parent, and no view MLflow lets a study set unfolds it, so
# the runs table would open on one folded row.
STUDY_RUN_TAG = "study.study_run_id"


def dataset_label(dataset: str) -> str:
    """A data set as a name shows it: a folder by its last component."""
    return Path(dataset).name if "/" in dataset else dataset


def pretraining_name(point: PretrainPoint) -> str:
    """``restoration K32 poisson`` (``x2`` for twice the unlabeled data): each axis's run label."""
    return design_axes.run_name(point.values(), "pretraining")


def trial_name(trial: TrialPoint, *, varied: Iterable[str] = ()) -> str:
    """A trial's run name, leading with its design: ``restoration K32 poisson | 5 % | mri``; the
    transfer plan when not the encoder at once; a fine-tuning axis without a run label (the
    learning rate: ``lr 0.01``) when the study varies it (``varied``: dotted axis names)."""
    design = "supervised" if trial.pretraining is None else pretraining_name(trial.pretraining)
    plan = "" if trial.pretraining is None else design_axes.run_name(trial.values(), "finetuning")
    design += f" {plan}" if plan else ""
    for a in design_axes.of("finetuning"):
        value = getattr(trial, a.key)
        if a.run_label is None and a.path in set(varied) and value is not None:
            design += f" {a.flat} {value:g}" if isinstance(value, float) else f" {a.flat} {value}"
    return f"{design} | {trial.label_fraction * 100:g} % | {dataset_label(trial.dataset)}"


def view_state(varied: Iterable[str]) -> dict[str, Any]:
    """The runs table's columns: the design values the study varies, then test Dice and the
    validation loss (trials and pretrainings are rows of their own: :data:`STUDY_RUN_TAG`)."""
    params = [a.flat for a in design_axes.AXES if a.path in set(varied)]
    extra = [k for k in ("dataset", "label_fraction", "seed") if k in set(varied)]
    columns = [f"params.`{k}`" for k in (*params, *extra)] + ["metrics.`dice`", "metrics.`val_loss`"]
    return {"selectedColumns": columns}


def ui_link(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """Where ``mlflow ui`` shows the study: its training runs with the study's columns."""
    runs = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return f"{runs}?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


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


class _EpochWriter:
    """Per-epoch curves written in order by a thread of their own. Tune holds a trial until the
    driver has handled its report, so a write to the store in that handler (20-30 ms on SQLite) was
    paid by every epoch of every trial. ``flush`` waits for the rows queued so far and raises the
    first write that failed; a driver killed before then loses the last epochs' rows, not the trial."""

    def __init__(self, write: Callable[[str, list], None]) -> None:
        self._write, self._rows = write, queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def put(self, run_id: str, metrics: list) -> None:
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="mlflow-epochs", daemon=True)
            self._thread.start()
        self._rows.put((run_id, metrics))

    def flush(self) -> None:
        if self._thread is not None:
            self._rows.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _drain(self) -> None:
        while True:
            run_id, metrics = self._rows.get()
            try:
                if self._error is None:
                    self._write(run_id, metrics)
            except BaseException as exc:  # handed to the driver's thread at its next put or flush
                self._error = exc
            finally:
                self._rows.task_done()


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
        self.named_axes: tuple[str, ...] = ()  # set by show(): varied axes a trial's name then carries
        self._epochs = _EpochWriter(self._log_batch)

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks, and so this tracker, into the study folder (tuner.pkl):
        # what it writes there must carry no credential. Nothing unpickles it to log again.
        return {
            "uri": redacted(self.uri),
            "store": self.store,
            "experiment_id": self.experiment_id,
            "parent_id": self.parent_id,
            "named_axes": self.named_axes,
        }

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
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={"study.kind": "study", "study.name": name}
        )
        self.parent_id = run.info.run_id
        self._params(self.parent_id, {**params, **package_versions()})
        self.client.log_text(self.parent_id, redacted(spec_file.read_text()), spec_file.name)
        return self.parent_id

    @_retry
    def show(self, varied: Iterable[str]) -> str:
        """Set the study's view of its runs (:func:`view_state`, as MLflow's shared view) for the
        axes the study varies; returns where ``mlflow ui`` shows it (:func:`ui_link`)."""
        varied = list(varied)
        self.named_axes = tuple(varied)
        state = view_state(varied)
        self.client.set_experiment_tag(self.experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(state))
        return ui_link(
            self.experiment_id,
            redacted(self.uri) if self.uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000",
        )

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
        self.flush()
        saved = self.store.pretrain_run_id(point.key)
        run_id = saved or self._unsaved_run("pretraining", "study.pretrain_key", point.key)
        if run_id is None or not self._exists(run_id):
            tags = {
                STUDY_RUN_TAG: self.parent_id,
                "study.kind": "pretraining",
                "study.pretrain_key": point.key,
                "study.strategy": point.strategy,
                "study.dataset": point.dataset,
            }
            run = self.client.create_run(
                self.experiment_id,
                tags=tags,
                run_name=f"pretraining {pretraining_name(point)} | {dataset_label(point.dataset)}",
            )
            run_id = run.info.run_id
        elif self.client.get_run(run_id).info.status not in ("FINISHED", "FAILED"):
            self.client.update_run(run_id, status="RUNNING")
        if run_id != saved:  # new, or made by a driver killed before it saved the id
            params = {k: v for k, v in point.identity().items() if k != "key"}
            self._params(run_id, params | {f"scale.{k}": v for k, v in point.scale.model_dump(mode="json").items()})
            self.store.save_pretrain_run_id(point.key, run_id)
        record = self.store.pretrain_result(point.key)
        if record is not None:
            self.finish_pretraining(run_id, record)
        return run_id

    @_retry
    def finish_pretraining(
        self, run_id: str, record: PretrainRecord, examples: Callable[[], Any] | None = None
    ) -> None:
        """Final metrics, the curves (from the record when none were logged live), the held-out L2
        per slice and, when ``examples`` draws them, the masks of the pretext task."""
        from mlflow.entities import Metric

        self.flush()
        run = self.client.get_run(run_id)
        if run.info.status in ("FINISHED", "FAILED"):
            return
        now = int(time.time() * 1000)
        metrics = []
        if "pretrain/val_loss" not in run.data.metrics:  # a pretraining run inside a trial, or before this run
            for epoch in record.history:
                step = int(epoch.get("epoch", 0))
                metrics += [
                    Metric(f"pretrain/{k}", float(v), now, step)
                    for k, v in epoch.items()
                    if k not in ("epoch", "stage") and isinstance(v, (int, float)) and not isinstance(v, bool)
                ]
        finals = {
            "best_val_loss": record.best_val_loss,
            "inpainting_l2": record.inpainting_l2,
            "best_epoch": record.best_epoch,
            "n_scans": record.n_scans,
            "seconds": record.seconds,
        }
        metrics += [
            Metric(k, float(v), now, 0) for k, v in finals.items() if v is not None and k not in run.data.metrics
        ]
        for start in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[start : start + 500])
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

    def _unsaved_run(self, kind: str, tag: str, value: str) -> str | None:
        """This study's run of ``kind`` for ``value`` that a driver created and was killed before it
        saved the run's id in the study folder: continued, not made twice."""
        if self.parent_id is None:
            return None
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`study.kind` = '{kind}' and tags.`{tag}` = '{value}' "
                f"and tags.`{STUDY_RUN_TAG}` = '{self.parent_id}'"
            ),
            max_results=1,
        )
        return found[0].info.run_id if found else None

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
            self.client.log_batch(run_id, params=items[start : start + 100])

    @_retry
    def start_trial(self, trial: TrialPoint, pretrain_run: str | None = None) -> str:
        """The trial's child run: reopened when its folder names one, created otherwise; linked to
        its pretraining's run (a tag and, in the run's description, a link the UI follows)."""
        self.flush()
        saved = self.store.run_id(trial.id)
        run_id = saved or self._unsaved_run("trial", "study.trial_id", trial.id)
        if run_id is None or not self._exists(run_id):
            tags = {
                STUDY_RUN_TAG: self.parent_id,
                "study.kind": "trial",
                "study.trial_id": trial.id,
                "study.strategy": trial.strategy,
                "study.dataset": trial.dataset,
            }
            if trial.pretraining is not None:
                tags["study.pretrain_key"] = trial.pretraining.key
            run = self.client.create_run(
                self.experiment_id, run_name=trial_name(trial, varied=self.named_axes), tags=tags
            )
            run_id = run.info.run_id
        elif self.client.get_run(run_id).info.status != "FINISHED":
            self.client.update_run(run_id, status="RUNNING")
        if run_id != saved:  # new, or made by a driver killed before it saved the id
            self._params(run_id, trial.params())
            self.store.save_run_id(trial.id, run_id)
        if pretrain_run is not None and trial.pretraining is not None:
            self.client.set_tag(run_id, "study.pretrain_run_id", pretrain_run)
            self.client.set_tag(
                run_id,
                "mlflow.note.content",
                f"Pretrained by [{trial.pretraining.strategy}]({self.run_link(pretrain_run)}) "
                f"(key `{trial.pretraining.key}`).",
            )
        return run_id

    def log_epoch(self, run_id: str, record: dict[str, Any], step: int) -> None:
        """Queues one epoch's curves (see :class:`_EpochWriter`); every method that reads or ends a
        run writes the queued rows first."""
        from mlflow.entities import Metric

        stage, now = record.get("stage", "finetune"), int(time.time() * 1000)
        metrics = [
            Metric(f"{stage}/{k}", float(v), now, step)
            for k, v in record.items()
            if k not in ("stage", "epoch") and isinstance(v, (int, float))
        ]
        self._epochs.put(run_id, metrics)

    @_retry
    def _log_batch(self, run_id: str, metrics: list) -> None:
        self.client.log_batch(run_id, metrics=metrics)

    def flush(self) -> None:
        """Writes the epochs' rows queued so far."""
        self._epochs.flush()

    @_retry
    def finish_trial(self, run_id: str, result: TrialRecord) -> None:
        """Final metrics, the per-case table, and the run's end state (FAILED with the reason)."""
        from mlflow.entities import Metric

        self.flush()
        run = self.client.get_run(run_id)
        if run.info.status == "FINISHED" or (result.stopped and "study.stopped" in run.data.tags):
            return
        now = int(time.time() * 1000)
        # A driver killed half-way through this method already logged some: never log a row twice.
        values = {**result.metrics, "seconds": result.seconds}
        metrics = [
            Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and k not in run.data.metrics
        ]
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
        self.flush()
        if reason is not None:
            self.client.set_tag(run_id, "study.failure", reason[:5000])
        if self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, status)

    def reconcile(self, trials: list[TrialPoint]) -> int:
        """Close what a killed driver left open: finished trials and pretrainings get their final
        logging, the others are marked KILLED until they run again. Returns how many runs were touched."""
        self.flush()
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
        self.flush()
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
    # In the artifact folder MLflow keeps beside the database (mlruns/), not as a file of its own
    # in the user's working folder; every node that shares the folder sees it.
    (db.parent / "mlruns").mkdir(parents=True, exist_ok=True)
    path = db.parent / "mlruns" / f".{db.name}.lock"
    lock = FileLock(str(path), timeout=300)
    try:
        lock.acquire()
    except Timeout:
        raise StorageError(
            f"tracking_uri sqlite:///{db}: {path} has been held for 5 minutes by another process creating the store"
        ) from None
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
