"""``python -m study.run SPACE.yaml``: plan a study, run it with Ray Tune + Optuna, log to MLflow.

Running the same command again resumes the study: finished trials are read back, interrupted ones
continue from their last checkpoint, and configurations added to the space since are the only new
work. ``--fresh`` starts over (the old study folder is kept, renamed).

    python -m study.run search_spaces/pretext.yaml --dry-run
    python -m study.run search_spaces/pretext.yaml --set label_fractions=0.05,1.0 --print-spec
    python -m study.run search_spaces/pretext.yaml --set datasets=/data/skm-tea --set scale=paper
    python -m study.run search_spaces/smoke.yaml --address 10.0.0.5:6379 --tracking-uri http://10.0.0.5:5000
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from study._cli import ArgumentParser, run_main
from study import faults
from study.data import (
    BUILTIN_KINDS,
    PhantomSettings,
    builtin_dataset,
    check_contents,
    check_selections,
    default_rounding,
    open_dataset,
    phantom_rounding,
    phantom_split,
    write_record,
)
from study.data.padding import NetworkPadding
from study.errors import DataError, SpecError, StorageError, StudyError
from study.footprint import dataset_channels, disk_lines, training_lines
from study.gpu import gpu_lines, gpu_to_check
from study.optuna_log import OptunaLog
from study.plan import Plan, make_plan
from study.progress import INCOMPLETE, Outcome, Progress, StudyCallback, print_summary
from study.provenance import invocation_record
from study.spec import StudySpec
from study.spec_loading import load_spec, spec_yaml
from study.store import StudyStore
from study.tracking import Tracker
from study.tracking_uri import absolute_uri, check_driver, check_reachable, redacted
from study.tune import (
    Context,
    check_resources,
    cluster_gpu,
    finetune_trainable,
    grid_search,
    new_halt,
    pruned_search,
    pretrain_trainable,
    sampled_search,
    slots,
    start_ray,
    tune_run,
)


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m study.run", doc=__doc__,
                       epilog=f"exit status: 0 every planned trial finished; 2 the spec, data or resources were "
                              f"refused (nothing ran); {INCOMPLETE} the study ran but some planned trial failed, "
                              "errored or did not run (the summary lists each with its reason)")
    p.add_argument("space", type=Path, help="a search space, e.g. search_spaces/pretext.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field with a YAML value, e.g. --set resources.cpus_per_trial=2; a scalar "
                        "where a list is expected is a list of one, a,b,c a list (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="check what a run checks (spec, data, resources, tracking store) and print the plan; "
                        "nothing is written")
    p.add_argument("--print-spec", action="store_true",
                   help="print the spec as resolved (overrides and defaults applied) as YAML and exit")
    p.add_argument("--address", help="join this Ray cluster (default: a local Ray on this machine)")
    p.add_argument("--tracking-uri", help="MLflow store (default: the spec's, sqlite:///mlflow.db here)")
    p.add_argument("--fresh", action="store_true", help="start the study over (the old folder is kept, renamed)")
    p.add_argument("--gpu-memory-gb", type=float, metavar="GIB",
                   help="check the trials packed on a GPU against a GPU of this much memory (default: ask this "
                        "machine's GPU, or on a cluster one of its GPU nodes)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = list(args.overrides) + ([f"tracking_uri={args.tracking_uri}"] if args.tracking_uri else [])
    spec = load_spec(args.space, overrides)
    if args.print_spec:
        print(spec_yaml(spec.model_copy(update={"tracking_uri": redacted(spec.tracking_uri)})), end="")
        return 0
    plan = make_plan(spec)
    store, uri = StudyStore(spec.storage_dir()), absolute_uri(spec.tracking_uri)
    check_driver(uri)
    unrecorded: dict = {}
    padding: list[str] = []
    data = _check_datasets(spec, store, unrecorded, padding)
    if args.dry_run:
        # What the run would refuse, the dry run refuses too: the store, then the resources.
        check_reachable(uri)
        # Before the resources: --gpu-memory-gb checks a packing on a machine without that GPU.
        gpu = gpu_lines(spec, plan, data, gpu_to_check(spec, memory_gb=args.gpu_memory_gb, address=args.address,
                                                       cluster=None))
        available = _dry_run_resources(args.address)
        check_resources(spec.resources.cpus_per_trial, spec.resources.gpus_per_trial, available)
        print("\n".join(_plan_lines(plan, store, uri, available, padding, data=data, address=args.address, gpu=gpu)))
        if (owner := store.driver_lock().holder()) is not None:  # a dry run looks, never takes
            print(f"  running now: {owner.describe()}")
        return 0
    check_reachable(uri)
    # One driver per study, taken before anything is written to the folder or --fresh renames it.
    lock = store.driver_lock()
    lock.acquire()
    try:
        try:
            available = start_ray(args.address)
            res = spec.resources
            ask = cluster_gpu if available["max_node_gpu"] > 0 else None  # no GPU: check_resources says so
            packing = gpu_lines(spec, plan, data, gpu_to_check(spec, memory_gb=args.gpu_memory_gb,
                                                               address=args.address, cluster=ask), time=False)
            check_resources(res.cpus_per_trial, res.gpus_per_trial, available)
            for line in packing:
                print(line.strip())
        except BaseException:
            lock.release(discard=True)  # refused before the study began: the lock leaves no trace
            raise
        if lock.took_over is not None:
            print(f"taking the study over from its driver {lock.took_over.describe()}, which is gone")
        if args.fresh and (kept := lock.set_aside(store.set_aside)) is not None:
            print(f"--fresh: the previous study folder is now {kept}")
        return _execute(spec, plan, store, space_file=args.space, uri=uri, data=data, available=available,
                        unrecorded=unrecorded, overrides=overrides)
    finally:
        lock.release()


def _check_datasets(spec: StudySpec, store: StudyStore, unrecorded: dict, padding: list[str]) -> dict[str, str | None]:
    """Real data sets are opened and their voxels checked now (bad data fail before anything is
    written); built-in phantoms are named here and generated when the study starts. What the
    network's padding will do to each data set's slices goes into ``padding``."""
    out: dict[str, str | None] = {}
    # What passed is recorded in the study folder, so a resumed study re-reads only changed files;
    # a study that has no folder yet records it when it makes one (a dry run never does).
    for name in spec.datasets:
        if name in BUILTIN_KINDS:
            out[name] = None
            settings = PhantomSettings.default(name, size=spec.scale.image_size)
            _check_selections(spec, name, phantom_split(settings), phantom_rounding(settings))
            padding.append(_padding(spec, name, {(settings.size, settings.size)}))
            continue
        try:
            path = Path(name).expanduser().resolve()
        except (RuntimeError, OSError) as exc:  # an unknown ~user, a symlink loop
            raise DataError(f"datasets: {name}: {exc}") from None
        if not path.exists():
            raise DataError(f"datasets: {name}: no such folder")
        dataset = open_dataset(path)
        padding.append(_padding(spec, name, {(i.height, i.width) for i in dataset.scans.values()}))
        check_contents(dataset, store.content_record, pending=unrecorded)
        _check_selections(spec, name, dataset.split, default_rounding(dataset))
        dataset.close()
        out[name] = str(path)
    return out


def _padding(spec: StudySpec, name: str, sizes: set[tuple[int, int]]) -> str:
    """One line saying how the network pads the data set's slices; a mode the slices cannot be
    padded with is refused here, before anything runs."""
    lines = []
    for height, width in sorted(sizes):
        padding = NetworkPadding(height, width, len(spec.scale.widths))
        try:
            padding.check(spec.scale.pad_mode)
        except SpecError as exc:
            raise SpecError(f"datasets: {name}: {exc}") from None
        lines.append(padding.describe(spec.scale.pad_mode))
    return f"  images of {name}: " + "; ".join(lines)


def _check_selections(spec: StudySpec, name: str, split, rounding: str) -> None:
    """Every pretraining subset and label subset the study asks of a data set, drawn now: a
    selection a trial would refuse stops the study before anything runs."""
    extents = spec.pretraining.extent if spec.pretraining is not None else []
    try:
        check_selections(split, rounding, extents, spec.label_fractions, seed=spec.split_seed)
    except StudyError as exc:
        raise type(exc)(f"datasets: {name}: {exc}") from None


SAMPLED_AT_ONCE = 4  # a sampled search's sampler learns only from trials that have finished


def concurrency(plan: Plan, available: dict[str, float]) -> tuple[int, str]:
    """How many trials run at once, and why that many."""
    res = plan.spec.resources
    fit = slots(res.cpus_per_trial, res.gpus_per_trial, available)
    if res.max_concurrent_trials is not None and res.max_concurrent_trials < fit:
        n, why = res.max_concurrent_trials, "resources.max_concurrent_trials"
    else:
        n, why = fit, "as many as fit"
    if not plan.enumerable and n > SAMPLED_AT_ONCE:
        return SAMPLED_AT_ONCE, (f"a sampled search runs at most {SAMPLED_AT_ONCE} at once, so its sampler learns "
                                 f"from finished trials; {fit} would fit")
    return n, why


def _dry_run_resources(address: str | None) -> dict[str, float]:
    """What the run would have: this machine, or the cluster at ``address`` (joined, then left)."""
    if address is None:
        return _local_resources()
    import ray

    try:
        return start_ray(address)
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _local_resources() -> dict[str, float]:
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:
        gpus = 0
    cpus = float(os.cpu_count() or 1)
    return {"cpu": cpus, "gpu": float(gpus), "nodes": 1.0, "max_node_cpu": cpus, "max_node_gpu": float(gpus)}


def _plan_lines(plan: Plan, store: StudyStore, uri: str, available: dict, padding: Sequence[str] = (),
                data: dict[str, str | None] | None = None, address: str | None = None,
                gpu: Sequence[str] = ()) -> list[str]:
    spec, res = plan.spec, plan.spec.resources
    lines = [f"study {spec.name}: search {spec.search.algorithm}, seed {spec.search.seed}, scale {spec.scale.profile}"]
    replicates = spec.replicates()
    lines.append(f"  replicates: {len(replicates)} (seed, split seed) " + ", ".join(f"({a}, {b})" for a, b in replicates))
    if plan.enumerable:
        done = len(plan.trials) - len(store.pending(plan.trials))
        for ds, (n, k) in plan.by_dataset().items():
            lines.append(f"  {ds}: {n} fine-tuning trials, {k} unique pretrainings")
        merged = plan.grid_points - len(plan.trials)
        lines.append(f"  total: {len(plan.trials)} trials ({done} finished, {len(plan.trials) - done} to run), "
                     f"{len(plan.pretrainings())} pretrainings"
                     + (f"; {plan.grid_points} grid points, {merged} merged (configurations that train alike: "
                        "no unfrozen lr under at_once, an unfrozen lr equal to the lr)" if merged else ""))
    else:
        lines.append(f"  {plan.num_samples()} sampled trials over {len(spec.axes()) + 2} axes; pretrainings run lazily, once per key")
    lines.extend(padding)
    if spec.pruning.enabled and plan.enumerable:
        lines.append(_pruning_line(plan))
    concurrent, why = concurrency(plan, available)
    if data is not None:
        lines += training_lines(spec) + disk_lines(
            plan, {name: dataset_channels(name, path) for name, path in data.items()}, concurrent=concurrent)
    lines.extend(gpu)
    where = f"the Ray cluster at {address}" if address else "this machine"
    lines.append(f"  resources: {res.cpus_per_trial:g} CPU, {res.gpus_per_trial:g} GPU per trial, at most {concurrent} "
                 f"at once ({why}); {where} has {available['cpu']:g} CPUs, {available['gpu']:g} GPUs")
    lines.append(f"  study folder: {store.root}")
    lines.append(f"  MLflow: {redacted(uri)} (experiment {spec.name!r})")
    return lines


def _pruning_line(plan: Plan) -> str:
    """The fine-tuning compute a pruned grid may take, in trial-epochs (x steps x batch in images
    when an epoch has a fixed number of steps): at most the full grid (nothing stopped), at least
    every stoppable strategy stopped at the first rung."""
    from study.pruning import rung_epochs

    spec, scale = plan.spec, plan.spec.scale
    epochs = rung_epochs(spec.pruning.rungs, scale.finetune_max_epochs)
    worst = len(plan.trials) * scale.finetune_max_epochs
    best = 0
    for ds in spec.datasets:
        trials = [t for t in plan.trials if t.dataset == ds]
        strategies = sorted({t.strategy for t in trials if t.pretraining is not None})
        keep = set(strategies[: spec.pruning.min_survivors])  # who survives does not change the count much
        for t in trials:
            full = t.pretraining is None or t.strategy in keep
            best += scale.finetune_max_epochs if full or not epochs else epochs[0]
    per = scale.steps_per_epoch * scale.batch_size if scale.steps_per_epoch else None
    size = (lambda e: f"{e:,} trial-epochs ({e * per:,} images)") if per else (lambda e: f"{e:,} trial-epochs")
    return (f"  pruning: rungs at fine-tuning epochs {', '.join(map(str, epochs)) or 'none'} of "
            f"{scale.finetune_max_epochs}, alpha {spec.pruning.alpha:g} (Holm), at least {spec.pruning.min_survivors} "
            f"strategies kept per data set; fine-tuning compute between {size(best)} and {size(worst)} (nothing stopped)")


def _execute(spec: StudySpec, plan: Plan, store: StudyStore, *, space_file: Path, uri: str, data: dict,
             available: dict, unrecorded: dict, overrides: Sequence[str] = ()) -> int:
    data_paths = {k: v or str(builtin_dataset(k, PhantomSettings.default(k, size=spec.scale.image_size))) for k, v in data.items()}
    store.root.mkdir(parents=True, exist_ok=True)
    if unrecorded:
        write_record(store.content_record, unrecorded)
    state = store.read_state() or {}
    tracker = Tracker(uri, spec.name, store)
    public = spec.model_copy(update={"tracking_uri": redacted(spec.tracking_uri)})
    tracker.open_parent(state.get("parent_run_id"), spec.name,
                        {"spec": public.model_dump_json(), "n_trials": len(plan.trials)}, Path(space_file))
    invocation = invocation_record(space_file, overrides)
    tracker.record_invocation(store.add_invocation(invocation), invocation, spec_yaml(public))
    store.write_state({
        "name": spec.name, "spec": json.loads(public.model_dump_json()), "parent_run_id": tracker.parent_id,
        "tracking_uri": redacted(uri), "data_paths": data_paths, "trials": [t.to_json() for t in plan.trials],
        "trial_ids": [t.id for t in plan.trials],
    })
    res = spec.resources
    run = _TuneRun(
        context=Context(store, data_paths, public, threads=max(1, int(res.cpus_per_trial)), use_gpu=res.gpus_per_trial > 0),
        resources={"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial},
        concurrent=concurrency(plan, available)[0],
        retries=spec.retries, stamp=time.strftime("%Y%m%d-%H%M%S"), halt=new_halt(), tracker=tracker,
        search_log=OptunaLog(store.optuna_storage, public),  # Tune pickles it: the spec without a password
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
        tracker.close_parent(status, {"trials_finished": len(outcome.finished), "trials_failed": len(outcome.failed),
                                      "trials_errored": len(outcome.errored), "wall_seconds": time.time() - started})
    print_summary(spec.name, outcome, store, uri=uri, seconds=time.time() - started)
    _refresh_report(store)
    return 0 if outcome.complete else INCOMPLETE


class _TuneRun:
    """The Tune experiments of one invocation: a grid's pretrainings then its trials, or a sampled
    search; each is a fresh experiment over the study folder, whose records say what is done."""

    def __init__(self, *, context: Context, resources: dict, concurrent: int, retries: int, stamp: str, halt,
                 tracker: Tracker, search_log: OptunaLog) -> None:
        self.context, self.resources, self.concurrent, self.retries = context, resources, concurrent, retries
        self.stamp, self.halt, self.tracker, self.search_log = stamp, halt, tracker, search_log

    def _tune(self, name: str, trainable, *, callback: StudyCallback, concurrent: int | None = None, **kwargs) -> None:
        tune_run(f"{name}-{self.stamp}", trainable, self.context, resources=self.resources,
                 max_concurrent=concurrent or self.concurrent, retries=self.retries, callbacks=[callback],
                 halt=self.halt, **kwargs)

    def grid(self, plan: Plan) -> None:
        store, name = self.context.store, plan.spec.name
        pending = store.pending(plan.trials)
        keys = store.pending_pretrainings(pending)
        if keys:
            from ray import tune

            progress = Progress(f"{name} pretraining", len(keys))
            self._tune("pretrain", pretrain_trainable, search=None, num_samples=1,
                       callback=StudyCallback(self.tracker, self.context, progress, kind="pretrain", halt=self.halt),
                       param_space={"point": tune.grid_search([p.to_json() for p in keys.values()])})
            _stop_if_halted(self.halt)
            faults.driver_point("between")
        if pending:
            pruning = plan.spec.pruning
            # A pruned grid hands out stretches (to a rung, or to the end) of every planned trial:
            # ended ones take part in the rungs' comparisons.
            self.context = replace(self.context, trials={t.id: t for t in (plan.trials if pruning.enabled else pending)})
            progress = Progress(name, len(pending), done_before=len(plan.trials) - len(pending))
            search = (pruned_search(plan.trials, store, plan.spec) if pruning.enabled else
                      grid_search([t.id for t in pending], plan.spec.search.seed, f"{name}-{self.stamp}"))
            self._tune("trials", finetune_trainable, search=search,
                       num_samples=len(pending) * (len(pruning.rungs) + 1) if pruning.enabled else len(pending),
                       callback=StudyCallback(self.tracker, self.context, progress, halt=self.halt,
                                              search_log=self.search_log))

    def sampled(self, plan: Plan) -> None:
        store, name = self.context.store, plan.spec.name
        done = [(d["params"], store.trial_result(d["trial_id"])) for d in store.draws()]
        done = [(params, r.val_loss) for params, r in done if r is not None]
        remaining = plan.num_samples() - len(done)
        if remaining > 0:
            progress = Progress(name, remaining, done_before=len(done))
            self._tune("trials", finetune_trainable, num_samples=remaining,
                       search=sampled_search(plan, f"{name}-{self.stamp}", done),
                       callback=StudyCallback(self.tracker, self.context, progress, sampled=True, halt=self.halt,
                                              search_log=self.search_log))


def _stop_if_halted(halt) -> None:
    if halt.reason:
        raise StorageError(f"{halt.reason}; the study stopped with every finished trial kept: free space, then run "
                           "the same command again to resume")


def _refresh_report(store: StudyStore) -> None:
    """The dashboard is part of a finished study; a study it cannot draw yet still ends well."""
    from study.analyze import load_study
    from study.report import build_report

    try:
        loaded = load_study(store)
        print(f"report: {build_report(store, loaded.state, loaded.table, store.results())}")
    except StudyError as exc:
        print(f"report: not written ({exc})")


def _sampled_trials(context: Context) -> list:
    seen: dict[str, object] = {}
    for draw in context.store.draws():
        if draw["trial_id"] not in seen:
            seen[draw["trial_id"]] = context.trial_of(draw["params"])
    return list(seen.values())


if __name__ == "__main__":
    run_main(main)
