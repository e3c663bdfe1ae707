"""``python -m study.train``: one pipeline on one data set, printing per-class test Dice.

    python -m study.train --data mri --fraction 0.05 --task restoration --patch-size 32 --sampler poisson_disc
    python -m study.train --data ct --fraction 1.0 --task none          # supervised baseline
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from study._cli import ArgumentParser, run_main
from study.data import BUILTIN_KINDS, builtin_dataset, open_dataset
from study.errors import SpecError
from study.store import PER_CASE
from study.model import ARCHITECTURES, TransferPlan
from study.constants import DEFAULT_PAD_MODE, DEFAULT_SEED, LAPTOP_GROUPS, LAPTOP_WIDTHS, PAD_MODES
from study.train import FinetuneConfig, PretrainConfig, TrainSettings, run_pipeline


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m study.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mri", help="'mri' or 'ct' (built-in phantoms) or a data set folder")
    p.add_argument("--fraction", type=float, default=1.0, help="label fraction in (0, 1] (default 1.0)")
    p.add_argument("--task", default="restoration", help="none (supervised), prediction or restoration")
    p.add_argument("--patch-size", type=int, default=32, help="K in pixels of a 512-px image (8, 16, 32, 64)")
    p.add_argument("--sampler", default="poisson_disc", help="random, poisson_disc or poisson_disc_spread")
    p.add_argument("--extent", type=float, default=1.0, help="pretraining data, multiples of the training set")
    p.add_argument("--scope", default="encoder", help="transfer scope: encoder or encoder+decoder")
    p.add_argument("--schedule", default="at_once", help="at_once or freeze_then_unfreeze")
    p.add_argument("--lr", type=float, default=1e-3, help="initial fine-tuning learning rate")
    p.add_argument("--unfrozen-lr", type=float, help="initial learning rate after unfreezing")
    p.add_argument("--max-epochs", type=int, default=40, help="epoch budget per run (early stopping first)")
    p.add_argument("--steps-per-epoch", type=int, help="cap on batches per epoch")
    p.add_argument("--widths", default=",".join(map(str, LAPTOP_WIDTHS)), help="U-Net widths per level")
    p.add_argument("--groups", type=int, default=LAPTOP_GROUPS, help="GroupNorm groups")
    p.add_argument("--architecture", default="default", choices=ARCHITECTURES,
                   help="U-Net variant: default, or the authors' Keras U-Net (docs/science.md §3)")
    p.add_argument("--batch-size", type=int, default=9)
    p.add_argument("--pad-mode", choices=PAD_MODES, default=DEFAULT_PAD_MODE,
                   help="padding of slices whose size the U-Net cannot halve down to its bottleneck")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--out", type=Path, help=f"folder for {PER_CASE} and checkpoints (resumes if present)")
    p.add_argument("--quiet", action="store_true", help="print only the result table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        raise SpecError(f"--widths {args.widths!r} must be integers separated by commas") from None
    dataset = open_dataset(builtin_dataset(args.data) if args.data in BUILTIN_KINDS else args.data)
    supervised = args.task == "none"
    pretrain_config = None if supervised else PretrainConfig(
        task=args.task, sampler=args.sampler, patch_size=args.patch_size, extent=args.extent
    )
    plan = TransferPlan("none", "at_once") if supervised else TransferPlan(args.scope, args.schedule)
    finetune_config = FinetuneConfig(plan=plan, lr=args.lr, unfrozen_lr=args.unfrozen_lr)
    settings = TrainSettings(
        batch_size=args.batch_size, max_epochs=args.max_epochs, steps_per_epoch=args.steps_per_epoch,
        device=args.device, seed=args.seed, pad_mode=args.pad_mode,
    )
    result = run_pipeline(
        dataset, args.fraction, finetune_config=finetune_config, pretrain_config=pretrain_config, settings=settings,
        widths=widths, groups=args.groups, architecture=args.architecture,
        workdir=args.out, log=(lambda _: None) if args.quiet else print,
    )
    table = result.per_case
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / PER_CASE, index=False)
    summary = table.groupby("class", sort=False)["dice"].agg(["mean", "std", "count"])
    print(f"\ntest Dice on {dataset.name}, {table['case_id'].nunique()} cases, label fraction {args.fraction:g}:")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"mean over classes: {table.groupby('case_id')['dice'].mean().mean():.3f}")
    return 0


if __name__ == "__main__":
    run_main(main)
