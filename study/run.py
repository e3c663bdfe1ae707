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

import os
from collections.abc import Sequence
from pathlib import Path

from study._cli import ArgumentParser, run_main
from study._suggest import did_you_mean
from study.constants import INCOMPLETE
from study.data import (
    BUILTIN_KINDS,
    LATEST_PHANTOM_VERSION,
    Dataset,
    PhantomSettings,
    check_contents,
    check_selections,
    default_rounding,
    describe_phantom,
    open_dataset,
    phantom_rounding,
    phantom_split,
    study_phantom_path,
    study_phantom_version,
)
from study.data.padding import NetworkPadding
from study.design.plan import Plan, make_plan
from study.design.spec import StudySpec
from study.design.spec_loading import load_spec, spec_yaml
from study.errors import DataError, SpecError, StudyError
from study.folder.store import StudyStore
from study.preflight.cluster import check_resources, cluster_gpu, slots, start_ray
from study.preflight.footprint import dataset_channels, disk_lines, training_lines
from study.preflight.gpu import gpu_lines, gpu_to_check
from study.preflight.power_check import power_warnings
from study.tracking.uri import absolute_uri, check_driver, check_reachable, redacted

# Torch, Ray Tune and MLflow load only once a study runs (study.execution.driver): a refused spec, data set
# or store is said in well under a second.


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m study.run",
        doc=__doc__,
        epilog=f"exit status: 0 every planned trial finished; 2 the spec, data or resources were "
        f"refused (nothing ran); {INCOMPLETE} the study ran but some planned trial failed, "
        "errored or did not run (the summary lists each with its reason)",
    )
    p.add_argument("space", type=Path, help="a search space, e.g. search_spaces/pretext.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field with a YAML value, e.g. --set resources.cpus_per_trial=2; a scalar "
        "where a list is expected is a list of one, a,b,c a list (repeatable)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check what a run checks (spec, data, resources, tracking store) and print the plan; nothing is written",
    )
    p.add_argument(
        "--print-spec",
        action="store_true",
        help="print the spec as resolved (overrides and defaults applied) as YAML and exit",
    )
    p.add_argument("--address", help="join this Ray cluster (default: a local Ray on this machine)")
    p.add_argument("--tracking-uri", help="MLflow store (default: the spec's, sqlite:///mlflow.db here)")
    p.add_argument("--fresh", action="store_true", help="start the study over (the old folder is kept, renamed)")
    p.add_argument(
        "--gpu-memory-gb",
        type=float,
        metavar="GIB",
        help="check the trials packed on a GPU against a GPU of this much memory (default: ask this "
        "machine's GPU, or on a cluster one of its GPU nodes)",
    )
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
    units: dict[str, tuple[int, int, str]] = {}
    # A study keeps the built-in data it started with; a new one (or --fresh) gets the latest.
    state = None if args.fresh else store.read_state()
    version = study_phantom_version(state, str(store.state_path))
    data = _check_datasets(spec, store, unrecorded, padding, units, version)
    phantoms = _phantom_lines(spec, version, (state or {}).get("data_paths"))
    warnings = power_warnings(plan, units)
    if args.dry_run:
        # What the run would refuse, the dry run refuses too: the store, then the resources.
        check_reachable(uri)
        # Before the resources: --gpu-memory-gb checks a packing on a machine without that GPU.
        gpu = gpu_lines(
            spec,
            plan,
            data,
            gpu_to_check(spec, memory_gb=args.gpu_memory_gb, address=args.address, cluster=None),
            phantom_version=version,
        )
        available = _dry_run_resources(args.address)
        check_resources(spec.resources.cpus_per_trial, spec.resources.gpus_per_trial, available)
        print(
            "\n".join(
                _plan_lines(plan, store, uri, available, phantoms + padding, data=data, address=args.address, gpu=gpu)
            )
        )
        for line in warnings:
            print(line)
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
            packing = gpu_lines(
                spec,
                plan,
                data,
                gpu_to_check(spec, memory_gb=args.gpu_memory_gb, address=args.address, cluster=ask),
                time=False,
                phantom_version=version,
            )
            check_resources(res.cpus_per_trial, res.gpus_per_trial, available)
            older = phantoms if version != LATEST_PHANTOM_VERSION else []  # a resumed study on older data says so
            for line in older + packing + warnings:
                print(line.strip())
        except BaseException:
            lock.release(discard=True)  # refused before the study began: the lock leaves no trace
            raise
        if lock.took_over is not None:
            print(f"taking the study over from its driver {lock.took_over.describe()}, which is gone")
        if args.fresh and (kept := lock.set_aside(store.set_aside)) is not None:
            print(f"--fresh: the previous study folder is now {kept}")
        from study.execution.driver import execute

        return execute(
            spec,
            plan,
            store,
            space_file=args.space,
            uri=uri,
            data=data,
            concurrent=concurrency(plan, available)[0],
            unrecorded=unrecorded,
            overrides=overrides,
            phantom_version=version,
        )
    finally:
        lock.release()


def _check_datasets(
    spec: StudySpec,
    store: StudyStore,
    unrecorded: dict,
    padding: list[str],
    units: dict[str, tuple[int, int, str]],
    phantom_version: int = LATEST_PHANTOM_VERSION,
) -> dict[str, str | None]:
    """Real data sets are opened and their voxels checked now (bad data fail before anything is
    written); built-in phantoms (of ``phantom_version``) are named here and generated when the
    study starts. What the network's padding will do to each data set's slices goes into
    ``padding``; each data set's test and validation patients (the analysis's and pruning's units)
    into ``units``."""
    out: dict[str, str | None] = {}
    # What passed is recorded in the study folder, so a resumed study re-reads only changed files;
    # a study that has no folder yet records it when it makes one (a dry run never does).
    for name in spec.datasets:
        if name in BUILTIN_KINDS:
            out[name] = None
            settings = PhantomSettings.default(name, version=phantom_version, size=spec.scale.image_size)
            split = phantom_split(settings)
            _check_selections(spec, name, split, phantom_rounding(settings))
            padding.append(_padding(spec, name, {(settings.size, settings.size)}))
            units[name] = (len(split.test), len(split.val), "volume" if settings.n_slices > 1 else "patient")
            continue
        try:
            path = Path(name).expanduser().resolve()
        except (RuntimeError, OSError) as exc:  # an unknown ~user, a symlink loop
            raise DataError(f"datasets: {name}: {exc}") from None
        if not path.exists():
            raise DataError(f"datasets: {name}: no such folder{did_you_mean(name, BUILTIN_KINDS)}")
        dataset = open_dataset(path)
        padding.append(_padding(spec, name, {(i.height, i.width) for i in dataset.scans.values()}))
        check_contents(dataset, store.content_record, pending=unrecorded)
        _check_selections(spec, name, dataset.split, default_rounding(dataset))

        def subjects(ids: Sequence[str], dataset: Dataset = dataset) -> int:
            return len({dataset.scans[i].subject_id for i in ids})

        units[name] = (subjects(dataset.split.test), subjects(dataset.split.val), "patient")
        dataset.close()
        out[name] = str(path)
    return out


def _phantom_lines(spec: StudySpec, version: int, recorded: dict | None = None) -> list[str]:
    """One line per built-in data set of the spec: which phantom version the study uses (an older
    one only for a study folder made with it), what it holds and its folder (``recorded``: the
    study's ``data_paths``)."""
    lines = []
    for name in (n for n in spec.datasets if n in BUILTIN_KINDS):
        settings = PhantomSettings.default(name, version=version, size=spec.scale.image_size)
        path = study_phantom_path(settings, (recorded or {}).get(name))
        whose = (
            "the latest"
            if version == LATEST_PHANTOM_VERSION
            else f"this study folder's (the latest is {LATEST_PHANTOM_VERSION}: --fresh starts the study over on it)"
        )
        made = "present" if (path / "dataset.json").exists() else "made when the study starts"
        lines.append(
            f"  data {name}: built-in phantom version {version}, {whose}: {describe_phantom(settings)}; "
            f"cache {path} ({made})"
        )
    return lines


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
        return SAMPLED_AT_ONCE, (
            f"a sampled search runs at most {SAMPLED_AT_ONCE} at once, so its sampler learns "
            f"from finished trials; {fit} would fit"
        )
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


def _plan_lines(
    plan: Plan,
    store: StudyStore,
    uri: str,
    available: dict,
    padding: Sequence[str] = (),
    data: dict[str, str | None] | None = None,
    address: str | None = None,
    gpu: Sequence[str] = (),
) -> list[str]:
    spec, res = plan.spec, plan.spec.resources
    lines = [f"study {spec.name}: search {spec.search.algorithm}, seed {spec.search.seed}, scale {spec.scale.profile}"]
    replicates = spec.replicates()
    lines.append(
        f"  replicates: {len(replicates)} (seed, split seed) " + ", ".join(f"({a}, {b})" for a, b in replicates)
    )
    if plan.enumerable:
        done = len(plan.trials) - len(store.pending(plan.trials))
        for ds, (n, k) in plan.by_dataset().items():
            lines.append(f"  {ds}: {n} fine-tuning trials, {k} unique pretraining{'s' if k != 1 else ''}")
        merged = plan.grid_points - len(plan.trials)
        lines.append(
            f"  total: {len(plan.trials)} trials ({done} finished, {len(plan.trials) - done} to run), "
            f"{len(plan.pretrainings())} pretrainings"
            + (
                f"; {plan.grid_points} grid points, {merged} merged (configurations that train alike: "
                "no unfrozen lr under at_once, an unfrozen lr equal to the lr)"
                if merged
                else ""
            )
        )
    else:
        varied = list(spec.varied_axes())
        lines.append(
            f"  {plan.num_samples()} sampled trials over {len(varied)} varied axes ({', '.join(varied)}); "
            "pretrainings run lazily, once per key"
        )
    lines.extend(padding)
    if spec.pruning.enabled and plan.enumerable:
        lines.append(_pruning_line(plan))
    concurrent, why = concurrency(plan, available)
    if data is not None:
        lines += training_lines(spec) + disk_lines(
            plan, {name: dataset_channels(name, path) for name, path in data.items()}, concurrent=concurrent
        )
    lines.extend(gpu)
    where = f"the Ray cluster at {address}" if address else "this machine"
    lines.append(
        f"  resources: {res.cpus_per_trial:g} CPU, {res.gpus_per_trial:g} GPU per trial, at most {concurrent} "
        f"at once ({why}); {where} has {available['cpu']:g} CPUs, {available['gpu']:g} GPUs"
    )
    lines.append(f"  study folder: {store.root}")
    lines.append(f"  MLflow: {redacted(uri)} (experiment {spec.name!r})")
    return lines


def _pruning_line(plan: Plan) -> str:
    """The fine-tuning compute a pruned grid may take, in trial-epochs (x steps x batch in images
    when an epoch has a fixed number of steps): at most the full grid (nothing stopped), at least
    every stoppable strategy stopped at the first rung."""
    from study.execution.pruning import rung_epochs

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
    return (
        f"  pruning: rungs at fine-tuning epochs {', '.join(map(str, epochs)) or 'none'} of "
        f"{scale.finetune_max_epochs}, alpha {spec.pruning.alpha:g} (Holm), at least {spec.pruning.min_survivors} "
        f"strategies kept per data set; fine-tuning compute between {size(best)} and {size(worst)} (nothing stopped)"
    )


if __name__ == "__main__":
    run_main(main)
