"""``python -m study.run SPACE.yaml``: plan a study, run it with Ray Tune + Optuna, log to MLflow.

Running the same command again resumes the study: finished trials are read back, interrupted ones
continue from their last checkpoint, and configurations added to the space since are the only new
work. ``--fresh`` starts over (the old study folder is kept, renamed).

    python -m study.run search_spaces/pretext.yaml --dry-run
    python -m study.run search_spaces/pretext.yaml --set datasets=[/data/skm-tea] --set scale=paper
    python -m study.run search_spaces/smoke.yaml --address 10.0.0.5:6379 --tracking-uri http://10.0.0.5:5000
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from study._cli import ArgumentParser, run_main
from study import faults
from study.data import (
    BUILTIN_KINDS,
    CONTENT_RECORD,
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
from study.errors import DataError, SpecError, StorageError, StudyError
from study.plan import Plan, make_plan
from study.progress import Progress, StudyCallback, summary_table
from study.spec import StudySpec, load_spec
from study.tracking import Tracker, absolute_uri, redacted
from study.trial import read_json, trial_error, write_json
from study.tune import (
    Context,
    check_resources,
    finetune_trainable,
    finished_result,
    grid_search,
    new_halt,
    pretrain_trainable,
    read_sampled,
    sampled_search,
    slots,
    start_ray,
    tune_run,
)


INCOMPLETE = 3  # exit status: the study ran, but some planned trial has no finished result


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m study.run", description=__doc__.splitlines()[0],
                       epilog=f"exit status: 0 every planned trial finished; 2 the spec, data or resources were "
                              f"refused (nothing ran); {INCOMPLETE} the study ran but some planned trial failed, "
                              "errored or did not run (the summary lists each with its reason)")
    p.add_argument("space", type=Path, help="a search space, e.g. search_spaces/pretext.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set resources.cpus_per_trial=2 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and run nothing")
    p.add_argument("--address", help="join this Ray cluster (default: a local Ray on this machine)")
    p.add_argument("--tracking-uri", help="MLflow store (default: the spec's, sqlite:///mlflow.db here)")
    p.add_argument("--fresh", action="store_true", help="start the study over (the old folder is kept, renamed)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = list(args.overrides) + ([f"tracking_uri={args.tracking_uri}"] if args.tracking_uri else [])
    spec = load_spec(args.space, overrides)
    plan = make_plan(spec)
    study_dir, uri = spec.storage_dir(), absolute_uri(spec.tracking_uri)
    unrecorded: dict = {}
    data = _check_datasets(spec, unrecorded)
    if args.dry_run:
        print("\n".join(_plan_lines(plan, study_dir, uri, _local_resources() if not args.address else None)))
        return 0
    Tracker.check(uri)
    available = start_ray(args.address)
    res = spec.resources
    check_resources(res.cpus_per_trial, res.gpus_per_trial, available)
    if args.fresh and study_dir.exists():
        kept = study_dir.with_name(f"{study_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        study_dir.rename(kept)
        print(f"--fresh: the previous study folder is now {kept}")
    return _execute(spec, plan, args.space, study_dir, uri, data, available, unrecorded)


def _check_datasets(spec: StudySpec, unrecorded: dict) -> dict[str, str | None]:
    """Real data sets are opened and their voxels checked now (bad data fail before anything is
    written); built-in phantoms are named here and generated when the study starts."""
    out: dict[str, str | None] = {}
    # What passed is recorded in the study folder, so a resumed study re-reads only changed files;
    # a study that has no folder yet records it when it makes one (a dry run never does).
    record = spec.storage_dir() / CONTENT_RECORD
    for name in spec.datasets:
        if name in BUILTIN_KINDS:
            out[name] = None
            settings = PhantomSettings.default(name, size=spec.scale.image_size)
            _check_selections(spec, name, phantom_split(settings), phantom_rounding(settings))
            continue
        try:
            path = Path(name).expanduser().resolve()
        except (RuntimeError, OSError) as exc:  # an unknown ~user, a symlink loop
            raise DataError(f"datasets: {name}: {exc}") from None
        if not path.exists():
            raise DataError(f"datasets: {name}: no such folder")
        dataset = open_dataset(path)
        step = 2 ** (len(spec.scale.widths) - 1)
        for height, width in sorted({(i.height, i.width) for i in dataset.scans.values()}):
            if height % step or width % step:
                raise SpecError(f"datasets: {name}: images of {height} x {width} px are not divisible by {step} "
                                f"for a U-Net of {len(spec.scale.widths)} levels (scale.widths)")
        _check_selections(spec, name, dataset.split, default_rounding(dataset))
        check_contents(dataset, record, pending=unrecorded)
        dataset.close()
        out[name] = str(path)
    return out


def _check_selections(spec: StudySpec, name: str, split, rounding: str) -> None:
    """Every pretraining subset and label subset the study asks of a data set, drawn now: a
    selection a trial would refuse stops the study before anything runs."""
    extents = spec.pretraining.extent if spec.pretraining is not None else []
    try:
        check_selections(split, rounding, extents, spec.label_fractions, seed=spec.split_seed)
    except StudyError as exc:
        raise type(exc)(f"datasets: {name}: {exc}") from None


def _local_resources() -> dict[str, float]:
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:
        gpus = 0
    cpus = float(os.cpu_count() or 1)
    return {"cpu": cpus, "gpu": float(gpus), "nodes": 1.0, "max_node_cpu": cpus, "max_node_gpu": float(gpus)}


def _plan_lines(plan: Plan, study_dir: Path, uri: str, available: dict | None) -> list[str]:
    spec, res = plan.spec, plan.spec.resources
    lines = [f"study {spec.name}: search {spec.search.algorithm}, seed {spec.search.seed}, scale {spec.scale.profile}"]
    if plan.enumerable:
        done = sum(finished_result(study_dir, t.id) is not None for t in plan.trials)
        for ds, (n, k) in plan.by_dataset().items():
            lines.append(f"  {ds}: {n} fine-tuning trials, {k} unique pretrainings")
        lines.append(f"  total: {len(plan.trials)} trials ({done} finished, {len(plan.trials) - done} to run), "
                     f"{len(plan.pretrainings())} pretrainings")
    else:
        lines.append(f"  {plan.num_samples()} sampled trials over {len(spec.axes()) + 2} axes; pretrainings run lazily, once per key")
    have = "" if available is None else f"; this machine has {available['cpu']:g} CPUs, {available['gpu']:g} GPUs"
    lines.append(f"  resources: {res.cpus_per_trial:g} CPU, {res.gpus_per_trial:g} GPU per trial"
                 f", at most {res.max_concurrent_trials or 'as many as fit'} at once{have}")
    lines.append(f"  study folder: {study_dir}")
    lines.append(f"  MLflow: {redacted(uri)} (experiment {spec.name!r})")
    return lines


def _execute(spec: StudySpec, plan: Plan, space_file: Path, study_dir: Path, uri: str, data: dict, available: dict,
             unrecorded: dict) -> int:
    data_paths = {k: v or str(builtin_dataset(k, PhantomSettings.default(k, size=spec.scale.image_size))) for k, v in data.items()}
    study_dir.mkdir(parents=True, exist_ok=True)
    if unrecorded:
        write_record(study_dir / CONTENT_RECORD, unrecorded)
    state = read_json(study_dir / "study.json") or {}
    tracker = Tracker(uri, spec.name, study_dir)
    public = spec.model_copy(update={"tracking_uri": redacted(spec.tracking_uri)}).model_dump_json()
    tracker.open_parent(state.get("parent_run_id"), spec.name, {"spec": public, "n_trials": len(plan.trials)}, Path(space_file))
    write_json(study_dir / "study.json", {
        "name": spec.name, "spec": json.loads(public), "parent_run_id": tracker.parent_id,
        "tracking_uri": redacted(uri), "data_paths": data_paths, "trials": [t.to_json() for t in plan.trials],
    })
    res = spec.resources
    resources = {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial}
    concurrent = res.max_concurrent_trials or slots(res.cpus_per_trial, res.gpus_per_trial, available)
    context = Context(str(study_dir), data_paths, public, threads=max(1, int(res.cpus_per_trial)),
                      use_gpu=res.gpus_per_trial > 0)
    tune_dir, stamp = study_dir / "tune", time.strftime("%Y%m%d-%H%M%S")
    tracker.reconcile(plan.trials if plan.enumerable else _sampled_trials(context, study_dir))
    started, status, halt = time.time(), "FAILED", new_halt()
    try:
        if plan.enumerable:
            pending = [t for t in plan.trials if finished_result(study_dir, t.id) is None]
            keys = {t.pretraining.key: t.pretraining for t in pending if t.pretraining is not None}
            keys = {k: p for k, p in keys.items() if read_json(study_dir / "pretrain" / k / "result.json") is None}
            if keys:
                from ray import tune

                progress = Progress(f"{spec.name} pretraining", len(keys))
                tune_run(f"pretrain-{stamp}", pretrain_trainable, context, None, 1, tune_dir, resources, concurrent,
                         spec.retries, [StudyCallback(None, context, progress, kind="pretrain", halt=halt)],
                         param_space={"point": tune.grid_search([asdict(p) for p in keys.values()])}, halt=halt)
                _stop_if_halted(halt)
                faults.driver_point("between")
            if pending:
                context = Context(**{**asdict(context), "trials": {t.id: t.to_json() for t in pending}})
                progress = Progress(spec.name, len(pending), done_before=len(plan.trials) - len(pending))
                tune_run(f"trials-{stamp}", finetune_trainable, context,
                         grid_search([t.id for t in pending], spec.search.seed, f"{spec.name}-{stamp}"),
                         len(pending), tune_dir, resources, concurrent, spec.retries,
                         [StudyCallback(tracker, context, progress, halt=halt)], halt=halt)
        else:
            sampled = read_sampled(study_dir)
            done = [(s["params"], finished_result(study_dir, s["trial_id"])) for s in sampled]
            done = [(p, r["val_loss"] if r.get("status") == "finished" else float("nan")) for p, r in done if r]
            remaining = plan.num_samples() - len(done)
            if remaining > 0:
                progress = Progress(spec.name, remaining, done_before=len(done))
                tune_run(f"trials-{stamp}", finetune_trainable, context,
                         sampled_search(plan, f"{spec.name}-{stamp}", done), remaining, tune_dir, resources,
                         min(concurrent, 4), spec.retries, [StudyCallback(tracker, context, progress, sampled=True, halt=halt)],
                         halt=halt)
        _stop_if_halted(halt)
        status = "ran"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        trials = plan.trials if plan.enumerable else _sampled_trials(context, study_dir)
        tracker.reconcile(trials)
        not_run = 0 if plan.enumerable else max(0, plan.num_samples() - len(read_sampled(study_dir)))
        outcome = Outcome.of(trials, study_dir, not_run)
        if status == "ran":
            status = "FINISHED" if outcome.complete else "FAILED"
        tracker.close_parent(status, {"trials_finished": len(outcome.finished), "trials_failed": len(outcome.failed),
                                      "trials_errored": len(outcome.errored), "wall_seconds": time.time() - started})
    _print_summary(spec, outcome, study_dir, uri, time.time() - started)
    _refresh_report(study_dir)
    return 0 if outcome.complete else INCOMPLETE


@dataclass
class Outcome:
    """What became of the planned trials: finished, failed (with a result saying why), errored
    (Tune gave up, no result) and not run at all (draws a sampled search did not make)."""

    finished: list[dict]
    failed: list[dict]
    errored: list[tuple[str, str]]  # (trial id, reason)
    not_run: int

    @property
    def complete(self) -> bool:
        return not (self.failed or self.errored or self.not_run)

    @classmethod
    def of(cls, trials: list, study_dir: Path, not_run: int) -> Outcome:
        results = {t.id: r for t in trials if (r := finished_result(study_dir, t.id)) is not None}
        finished = [r for r in results.values() if r.get("status") == "finished"]
        errored = [(t.id, trial_error(study_dir, t.id) or "no result") for t in trials if t.id not in results]
        return cls(finished, [r for r in results.values() if r.get("status") != "finished"], errored, not_run)


def _stop_if_halted(halt) -> None:
    if halt.reason:
        raise StorageError(f"{halt.reason}; the study stopped with every finished trial kept: free space, then run "
                           "the same command again to resume")


def _refresh_report(study_dir: Path) -> None:
    """The dashboard is part of a finished study; a study it cannot draw yet still ends well."""
    from study.analyze import load_study
    from study.errors import StudyError
    from study.report import build_report, results_of

    try:
        state, table, _ = load_study(study_dir)
        print(f"report: {build_report(study_dir, state, table, results_of(study_dir))}")
    except StudyError as exc:
        print(f"report: not written ({exc})")


def _sampled_trials(context: Context, study_dir: Path):
    seen: dict[str, object] = {}
    for s in read_sampled(study_dir):
        if s["trial_id"] not in seen:
            seen[s["trial_id"]] = context.trial_of(s["params"])
    return list(seen.values())


def _print_summary(spec: StudySpec, outcome: Outcome, study_dir: Path, uri: str, seconds: float) -> None:
    table = summary_table(outcome.finished)
    counts = [f"{len(outcome.finished)} trials finished", f"{len(outcome.failed)} failed"]
    counts += [f"{len(outcome.errored)} errored"] if outcome.errored else []
    counts += [f"{outcome.not_run} not run"] if outcome.not_run else []
    print(f"\n{spec.name}: {', '.join(counts)}, {seconds / 60:.1f} min")
    if not table.empty:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print("mean test Dice per strategy (columns: data set, label fraction):")
            print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    for r in outcome.failed:
        print(f"  failed: {r['trial_id']} {r.get('strategy')} {r.get('dataset')} {r.get('label_fraction')}: {r.get('reason')}")
    for trial_id, reason in outcome.errored:
        print(f"  errored: {trial_id}: {reason}")
    if not outcome.complete:
        print(f"the study is incomplete (exit status {INCOMPLETE}): failed trials keep their result; errored and "
              "unrun ones run again when the same command is repeated")
    print(f"study folder: {study_dir}")
    print(f"MLflow: {uri}  (run `mlflow ui` in {Path.cwd()} to browse)" if uri.startswith("sqlite") else f"MLflow: {redacted(uri)}")
    sys.stdout.flush()


if __name__ == "__main__":
    run_main(main)
