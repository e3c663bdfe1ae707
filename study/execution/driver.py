"""A study's run once it is checked: the study folder's state, the MLflow parent run, the Tune
experiments (a grid's pretrainings then its trials, or a sampled search), the summary and the
dashboard. ``study.run`` checks everything first and comes here only to run."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from study import faults
from study.constants import INCOMPLETE
from study.data import LATEST_PHANTOM_VERSION, study_data_paths, write_record
from study.design.plan import Plan
from study.design.spec import StudySpec
from study.design.spec_loading import spec_yaml
from study.errors import StorageError, StudyError
from study.execution.progress import Outcome, Progress, StudyCallback, StudyClock, print_summary
from study.execution.tune import (
    Context,
    finetune_trainable,
    grid_search,
    new_halt,
    pretrain_trainable,
    pruned_search,
    sampled_search,
    tune_run,
)
from study.folder.store import StudyStore
from study.tracking.mlflow_runs import Tracker
from study.tracking.optuna_view import OptunaLog
from study.tracking.provenance import invocation_record
from study.tracking.uri import redacted


def execute(
    spec: StudySpec,
    plan: Plan,
    store: StudyStore,
    *,
    space_file: Path,
    uri: str,
    data: dict,
    concurrent: int,
    unrecorded: dict,
    overrides: Sequence[str] = (),
    phantom_version: int = LATEST_PHANTOM_VERSION,
) -> int:
    """Run the checked study (``data``: each data set's path, None for a phantom of
    ``phantom_version`` made now, or found in the cache) with at most ``concurrent`` trials at
    once; the exit status. The study folder records the phantom version and its folder, so a resumed
    study keeps its data (``study.data.study_phantom_version``, ``study_data_paths``)."""
    state = store.read_state() or {}
    data_paths = study_data_paths(data, spec.scale.image_size, phantom_version, state.get("data_paths"))
    store.root.mkdir(parents=True, exist_ok=True)
    if unrecorded:
        write_record(store.content_record, unrecorded)
    tracker = Tracker(uri, spec.name, store)
    public = spec.model_copy(update={"tracking_uri": redacted(spec.tracking_uri)})
    tracker.open_parent(
        state.get("parent_run_id"),
        spec.name,
        {"spec": public.model_dump_json(), "n_trials": len(plan.trials)},
        Path(space_file),
    )
    varied = [
        *spec.varied_axes(),
        *(["dataset"] if len(spec.datasets) > 1 else []),
        *(["label_fraction"] if len(spec.label_fractions) > 1 else []),
        *(["seed"] if len(spec.replicates()) > 1 else []),
    ]
    ui = tracker.show(varied)
    invocation = invocation_record(space_file, overrides)
    tracker.record_invocation(store.add_invocation(invocation), invocation, spec_yaml(public))
    store.write_state(
        {
            "name": spec.name,
            "spec": json.loads(public.model_dump_json()),
            "parent_run_id": tracker.parent_id,
            "tracking_uri": redacted(uri),
            "data_paths": data_paths,
            "phantom_version": phantom_version,
            "trials": [t.to_json() for t in plan.trials],
            "trial_ids": [t.id for t in plan.trials],
        }
    )
    res = spec.resources
    run = _TuneRun(
        context=Context(
            store, data_paths, public, threads=max(1, int(res.cpus_per_trial)), use_gpu=res.gpus_per_trial > 0
        ),
        resources={"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial},
        concurrent=concurrent,
        retries=spec.retries,
        stamp=time.strftime("%Y%m%d-%H%M%S"),
        halt=new_halt(),
        tracker=tracker,
        search_log=OptunaLog(store.optuna_storage, public, store.trial_ended),  # Tune pickles it: no password
    )
    known = plan.trials if plan.enumerable else _sampled_trials(run.context)
    tracker.reconcile(known)
    run.search_log.sync(r for t in known if (r := store.trial_result(t.id)) is not None)
    started, status = time.time(), "FAILED"
    try:
        (run.grid if plan.enumerable else run.sampled)(plan)
        _stop_if_halted(run.halt)
        status = "ran"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        trials = plan.trials if plan.enumerable else _sampled_trials(run.context)
        tracker.reconcile(trials)
        not_run = 0 if plan.enumerable else max(0, plan.num_samples() - len(store.draws()))
        outcome = Outcome.of(trials, store, not_run)
        run.search_log.sync([*outcome.finished, *outcome.failed])  # any a callback did not see
        if status == "ran":
            status = "FINISHED" if outcome.complete else "FAILED"
        tracker.close_parent(
            status,
            {
                "trials_finished": len(outcome.finished),
                "trials_failed": len(outcome.failed),
                "trials_errored": len(outcome.errored),
                "wall_seconds": time.time() - started,
            },
        )
    print_summary(spec.name, outcome, store, uri=uri, seconds=time.time() - started, ui=ui)
    _refresh_report(store)
    return 0 if outcome.complete else INCOMPLETE


class _TuneRun:
    """The Tune experiments of one invocation: a grid's pretrainings then its trials, or a sampled
    search; each is a fresh experiment over the study folder, whose records say what is done."""

    def __init__(
        self,
        *,
        context: Context,
        resources: dict,
        concurrent: int,
        retries: int,
        stamp: str,
        halt,
        tracker: Tracker,
        search_log: OptunaLog,
    ) -> None:
        self.context, self.resources, self.concurrent, self.retries = context, resources, concurrent, retries
        self.stamp, self.halt, self.tracker, self.search_log = stamp, halt, tracker, search_log

    def _tune(self, name: str, trainable, *, callback: StudyCallback, concurrent: int | None = None, **kwargs) -> None:
        tune_run(
            f"{name}-{self.stamp}",
            trainable,
            self.context,
            resources=self.resources,
            max_concurrent=concurrent or self.concurrent,
            retries=self.retries,
            callbacks=[callback],
            halt=self.halt,
            **kwargs,
        )

    def grid(self, plan: Plan) -> None:
        store, name = self.context.store, plan.spec.name
        pending = store.pending(plan.trials)
        keys = store.pending_pretrainings(pending)
        clock = StudyClock(trials=len(pending))  # one time left for the pretrainings and the trials
        if keys:
            from ray import tune

            progress = Progress(f"{name} pretraining", len(keys), clock=clock, phase="pretrain")
            self._tune(
                "pretrain",
                pretrain_trainable,
                search=None,
                num_samples=1,
                callback=StudyCallback(self.tracker, self.context, progress, kind="pretrain", halt=self.halt),
                param_space={"point": tune.grid_search([p.to_json() for p in keys.values()])},
            )
            _stop_if_halted(self.halt)
            faults.driver_point("between")
        if pending:
            pruning = plan.spec.pruning
            # A pruned grid hands out stretches (to a rung, or to the end) of every planned trial:
            # ended ones take part in the rungs' comparisons.
            self.context = replace(
                self.context, trials={t.id: t for t in (plan.trials if pruning.enabled else pending)}
            )
            progress = Progress(
                name,
                len(pending),
                done_before=len(plan.trials) - len(pending),
                clock=clock,
                epochs_per_trial=plan.spec.scale.finetune_max_epochs if pruning.enabled else None,
            )
            search = (
                pruned_search(plan.trials, store, plan.spec, on_stop=progress.stopped)
                if pruning.enabled
                else grid_search([t.id for t in pending], plan.spec.search.seed, f"{name}-{self.stamp}")
            )
            self._tune(
                "trials",
                finetune_trainable,
                search=search,
                num_samples=len(pending) * (len(pruning.rungs) + 1) if pruning.enabled else len(pending),
                callback=StudyCallback(
                    self.tracker, self.context, progress, halt=self.halt, search_log=self.search_log
                ),
            )

    def sampled(self, plan: Plan) -> None:
        store, name = self.context.store, plan.spec.name
        done = [(d["params"], store.trial_result(d["trial_id"])) for d in store.draws()]
        done = [(params, r.val_loss) for params, r in done if r is not None]
        remaining = plan.num_samples() - len(done)
        if remaining > 0:
            progress = Progress(name, remaining, done_before=len(done))
            self._tune(
                "trials",
                finetune_trainable,
                num_samples=remaining,
                search=sampled_search(plan, f"{name}-{self.stamp}", done),
                callback=StudyCallback(
                    self.tracker, self.context, progress, sampled=True, halt=self.halt, search_log=self.search_log
                ),
            )


def _stop_if_halted(halt) -> None:
    if halt.reason:
        raise StorageError(
            f"{halt.reason}; the study stopped with every finished trial kept: free space, then run "
            "the same command again to resume"
        )


def _refresh_report(store: StudyStore) -> None:
    """The dashboard is part of a finished study; a study it cannot draw yet still ends well. The
    run ends with the analysis's answer, per data set and label fraction."""
    from study.analyze import load_study
    from study.report import write_report

    try:
        loaded = load_study(store)
        path, analysis = write_report(store, loaded.state, loaded.table, store.results())
    except StudyError as exc:
        print(f"report: not written ({exc})")
        return
    print(f"report: {path}\n")
    print("\n".join(analysis.headline))


def _sampled_trials(context: Context) -> list:
    seen: dict[str, object] = {}
    for draw in context.store.draws():
        if draw["trial_id"] not in seen:
            seen[draw["trial_id"]] = context.trial_of(draw["params"])
    return list(seen.values())
