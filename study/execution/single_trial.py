"""``python -m study.train``: one trial on one data set, exactly as a study runs it, printing per-class test Dice.

Its defaults are a laptop study trial's (``scale: laptop``: its U-Net, budgets, learning rates and
early stopping), and it runs the study's own trial code, so a strategy tried here trains as it
would in a study. ``--study NAME --trial ID`` runs one trial of a study again, as the study ran it,
in a scratch folder (the study's results are never touched).

    python -m study.train --data mri --fraction 0.05 --task restoration --patch-size 32 --sampler poisson_disc
    python -m study.train --data ct --fraction 1.0 --task none          # the supervised baseline
    python -m study.train --data /data/skm-tea --scale paper --device cuda --out runs/skm-tea
    python -m study.train --study pretext --trial 3f2a9c1b  # a trial of studies/pretext again (an id prefix will do)
"""

from __future__ import annotations

import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from study._cli import ArgumentParser
from study.constants import DEFAULT_SEED, PAD_MODES
from study.design import axes as design_axes
from study.design.plan import TrialPoint, point
from study.design.scale import Scale
from study.design.spec import Resources
from study.errors import DataError, SpecError
from study.folder.store import PER_CASE, StudyStore

ARCHITECTURES = typing.get_args(Scale.model_fields["architecture"].annotation)  # --help imports no torch
DEFAULT_THREADS = int(Resources.model_fields["cpus_per_trial"].default)


def parser() -> ArgumentParser:
    laptop = Scale()
    p = ArgumentParser(prog="python -m study.train", doc=__doc__)
    p.add_argument("--data", default="mri", help="'mri' or 'ct' (built-in phantoms) or a data set folder")
    p.add_argument("--fraction", type=float, default=1.0, help="label fraction in (0, 1] (default 1.0)")
    for axis in design_axes.AXES:  # a flag per design axis: --task, --patch-size, ..., --lr
        _axis_flag(p, axis, laptop)
    p.add_argument(
        "--scale",
        default="laptop",
        choices=("laptop", "paper"),
        help="the profile every setting below defaults to (docs/studies.md)",
    )
    p.add_argument(
        "--max-epochs",
        type=int,
        help=f"epoch budget of both stages (default: the scale's, laptop "
        f"{laptop.pretrain_max_epochs} pretraining, {laptop.finetune_max_epochs} fine-tuning)",
    )
    p.add_argument(
        "--steps-per-epoch", type=int, help=f"batches per epoch (default: the scale's, laptop {laptop.steps_per_epoch})"
    )
    p.add_argument(
        "--widths", help=f"U-Net widths per level (default: the scale's, laptop {','.join(map(str, laptop.widths))})"
    )
    p.add_argument("--groups", type=int, help=f"GroupNorm groups (default: the scale's, laptop {laptop.groups})")
    p.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        help="U-Net variant: default, or the authors' Keras U-Net (docs/science.md §3)",
    )
    p.add_argument("--batch-size", type=int, help=f"(default: the scale's, laptop {laptop.batch_size})")
    p.add_argument(
        "--pad-mode",
        choices=PAD_MODES,
        help="padding of slices whose size the U-Net cannot halve down to its bottleneck",
    )
    p.add_argument(
        "--cpu-channels-last",
        action="store_true",
        help="channels_last on a CPU: a faster step, other numbers (another trial id; BENCHMARKS.md)",
    )
    p.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="bf16 autocast on a CPU: other numbers, no faster without AMX (another trial id)",
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda when there is one)")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: a study trial's, its resources.cpus_per_trial, "
        "1 unless the study set it); the same count gives the same numbers a study trial gave",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"training seed (default {DEFAULT_SEED}, a study's)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the label and pretraining subsets (default 0)")
    p.add_argument(
        "--out",
        type=Path,
        help=f"folder for the run ({PER_CASE}, weights, checkpoints: it resumes if "
        "present; default: a temporary folder, removed at the end)",
    )
    p.add_argument(
        "--study", help="run a trial of this study again: a study folder, its spec file or a name under --storage"
    )
    p.add_argument("--storage", help="the folder of study folders --study is looked up in (default ./studies)")
    p.add_argument("--trial", help="the id (or an unambiguous prefix) of the study's trial to run again")
    p.add_argument("--quiet", action="store_true", help="print only the result table")
    return p


def _axis_flag(p: ArgumentParser, axis: design_axes.DesignAxis, laptop: Scale) -> None:
    help, default = axis.cli_help or axis.description, axis.default[0]
    choices = axis.choices
    if axis.path == design_axes.BASELINE_CHOICE[0]:
        choices = (design_axes.BASELINE_CHOICE[1], *choices)
    if axis.scale_default:
        help += f" (default: the scale's, laptop {getattr(laptop, axis.scale_default):g})"
    elif axis.choices is None and default is not None:
        help += f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
    p.add_argument(axis.flag, type=axis.type, default=default, choices=choices, help=help)


def _scale(args) -> Scale:
    given = {
        "widths": args.widths,
        "groups": args.groups,
        "batch_size": args.batch_size,
        "pretrain_max_epochs": args.max_epochs,
        "finetune_max_epochs": args.max_epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "architecture": args.architecture,
        "pad_mode": args.pad_mode,
        "cpu_channels_last": args.cpu_channels_last or None,
        "cpu_bf16": args.cpu_bf16 or None,
    }
    if args.widths is not None:
        try:
            given["widths"] = tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise SpecError(f"--widths {args.widths!r} must be integers separated by commas") from None
    try:
        return Scale.model_validate({"profile": args.scale, **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "--scale"
        raise SpecError(f"{flag}: {err['msg'].removeprefix('Value error, ')}") from None


def own_trial(args) -> TrialPoint:
    """The trial the flags describe: with no flags, the trial a laptop study makes of the same
    point (same id)."""
    if not 0 < args.fraction <= 1:
        raise SpecError(f"--fraction {args.fraction:g} is outside (0, 1]")
    scale = _scale(args)
    params = {a.path: getattr(args, a.flat) for a in design_axes.AXES}
    params |= {
        a.path: getattr(scale, a.scale_default) for a in design_axes.AXES if a.scale_default and params[a.path] is None
    }
    return point(
        dataset=args.data,
        label_fraction=args.fraction,
        params=params,
        scale=scale,
        seed=args.seed,
        split_seed=args.split_seed,
    )


def _data_path(name: str, scale: Scale) -> str:
    """A built-in phantom at the scale's image size (made once, cached), or a data set folder."""
    from study.data import BUILTIN_KINDS, PhantomSettings, builtin_dataset

    if name in BUILTIN_KINDS:
        return str(builtin_dataset(name, PhantomSettings.default(name, size=scale.image_size)))
    path = Path(name).expanduser()
    if not path.is_dir():
        raise DataError(f"--data {name}: no such folder")
    return str(path.resolve())


def _study_trial(args) -> tuple[TrialPoint, str, float | None, int]:
    """A study's trial as the study ran it, its data set's path, the mean Dice it recorded and the
    threads it ran with."""
    from study.analyze import find_study

    if args.trial is None:
        raise SpecError("--study needs --trial ID (the trial ids are the folders under <study>/trials)")
    store = find_study(args.study, args.storage)
    state = store.read_state() or {}
    entries = {TrialPoint.from_json(e).id: e for e in state.get("trials") or []}
    entries |= {tid: entry for tid in store.trial_ids() if (entry := store.trial_config(tid)) is not None}
    matches = sorted(tid for tid in entries if tid.startswith(args.trial))
    if len(matches) != 1:
        some = ", ".join(sorted(entries)[:5])
        raise SpecError(
            f"--trial {args.trial}: "
            + (
                f"matches {len(matches)} trials ({', '.join(matches[:5])})"
                if matches
                else f"no trial of {store.root} has that id (some: {some})"
            )
        )
    trial = TrialPoint.from_json(entries[matches[0]])
    path = (state.get("data_paths") or {}).get(trial.dataset)
    if path is None:
        raise DataError(f"{store.root}: the study names no data path for {trial.dataset!r}")
    record = store.trial_result(trial.id)
    threads = max(1, int(((state.get("spec") or {}).get("resources") or {}).get("cpus_per_trial", 1)))
    args.nsd_tolerance_mm = ((state.get("spec") or {}).get("analysis") or {}).get("nsd_tolerance_mm")
    return trial, path, None if record is None else record.dice, threads


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # A study trial's thread count, its spec's default where it names none: the numbers on a CPU
    # depend on it, and two threads per trial are no faster on a busy 2-core machine (BENCHMARKS.md).
    recorded, threads = None, args.threads or DEFAULT_THREADS
    if args.study is not None:
        trial, data_path, recorded, study_threads = _study_trial(args)
        threads = args.threads or study_threads
    elif args.trial is not None:
        raise SpecError("--trial needs --study NAME, the study it belongs to")
    else:
        trial = own_trial(args)
        data_path = _data_path(args.data, trial.scale)

    import torch

    from study.execution.trial import run_trial

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(threads)
    if not args.quiet:
        print(
            f"trial {trial.id}: {trial.strategy} on {trial.dataset} at label fraction {trial.label_fraction:g}, "
            f"scale {trial.scale.profile}, seed {trial.seed}, {device}"
        )

    def report(record: dict) -> None:
        if not args.quiet and "epoch" in record:
            print(
                f"  {record.get('stage', 'finetune')} epoch {int(record['epoch'])}: "
                f"train {record.get('train_loss', float('nan')):.4g} val {record.get('val_loss', float('nan')):.4g}"
            )

    with tempfile.TemporaryDirectory(prefix="study-train-") as scratch:
        store = StudyStore(args.out or scratch)
        result = run_trial(
            store,
            trial,
            data_path=data_path,
            device=device,
            keep_weights="best" if args.out else "none",
            report=report,
            nsd_tolerance_mm=getattr(args, "nsd_tolerance_mm", None),
        )
        if not result.finished:
            print(f"failed: {result.reason}")
            return 3
        table = store.read_per_case(trial.id)
    summary = table.groupby("class", sort=False)["dice"].agg(["mean", "std", "count"])
    print(
        f"\ntest Dice on {table['dataset'].iloc[0]}, {table['case_id'].nunique()} cases, label fraction "
        f"{trial.label_fraction:g}:"
    )
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    same = (
        ""
        if recorded is None
        else (" (the study recorded the same)" if recorded == result.dice else f" (the study recorded {recorded:.6f})")
    )
    print(f"mean over classes: {result.dice:.6f}{same}")
    if args.out:
        print(f"per-case table: {store.per_case_path(trial.id)}")
    return 0
