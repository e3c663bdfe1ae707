"""What the CPU settings do to a trial's numbers and time: per-case Dice against fp32.

The trial of issue 24 (restoration K32, Poisson-disc, encoder fine-tuned at once) on both phantoms
at 5 % and 100 % of the labels, each run under every variant: fp32 (the default) twice, to show it
bit-identical run to run; ``scale.cpu_channels_last``; ``scale.cpu_bf16``. Each variant has its own
study folder, so its pretraining is its own too (the settings change the pretrained weights as well)
and is shared by its two label fractions, as in a study. The variants run in turn for each data set,
so load on the machine hits them alike. ``study.execution.trial.run_trial``, one thread, no Ray or MLflow.

Printed per variant and trial: whether the per-case table equals fp32's to the byte, the largest
per-case change of Dice (any class), the mean absolute change, the change of the trial's mean Dice
(the study's ``dice``), and the seconds of the fine-tuning and of the pretraining.

Run: ``python benchmarks/cpu_numbers.py [--data mri ct] [--fractions 0.05 1.0]``; the last line printed
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from study.constants import DEFAULT_SEED
from study.data import PhantomSettings, builtin_dataset
from study.design import axes as design_axes
from study.design.plan import TrialPoint, point
from study.design.scale import Scale
from study.execution.trial import ensure_pretrained, run_trial
from study.folder.store import StudyStore

VARIANTS = {"fp32": {}, "fp32 again": {}, "channels_last": {"cpu_channels_last": True}, "bf16": {"cpu_bf16": True}}


def trial(scale: Scale, dataset: str, fraction: float) -> TrialPoint:
    # the trial python -m study.train runs with no flags, at the seeds of a one-seed study: the same id
    return point(
        dataset=dataset,
        label_fraction=fraction,
        params=design_axes.default_params(scale),
        scale=scale,
        seed=DEFAULT_SEED,
        split_seed=0,
    )


def compare(table: pd.DataFrame, reference: pd.DataFrame, identical: bool) -> dict:
    keys = ["case_id", "class"]
    both = reference[keys + ["dice"]].merge(table[keys + ["dice"]], on=keys, suffixes=("_ref", ""))
    delta = (both["dice"] - both["dice_ref"]).dropna()
    per_case = lambda t: t.groupby("case_id")["dice"].mean().mean()  # noqa: E731 - the study's "dice"
    return {
        "identical": identical,
        "cells": int(len(delta)),
        "max_abs": float(delta.abs().max()),
        "mean_abs": float(delta.abs().mean()),
        "mean_dice": float(per_case(table)),
        "mean_dice_change": float(per_case(table) - per_case(reference)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["mri", "ct"], choices=("mri", "ct"))
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.05, 1.0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.data:
            path = str(builtin_dataset(dataset, PhantomSettings.default(dataset, size=64)))
            tables: dict[str, dict[float, tuple[pd.DataFrame, bytes]]] = {}
            for variant, fields in VARIANTS.items():
                scale = Scale.model_validate({"profile": "laptop", **fields})
                store = StudyStore(Path(tmp) / f"{dataset}-{variant.replace(' ', '-')}")
                start = time.perf_counter()
                ensure_pretrained(store, trial(scale, dataset, 1.0).pretraining, data_path=path, device="cpu")
                pretrain_s = time.perf_counter() - start
                tables[variant] = {}
                for fraction in args.fractions:
                    point = trial(scale, dataset, fraction)
                    record = run_trial(store, point, data_path=path, device="cpu", keep_weights="none")
                    table_path = store.per_case_path(point.id)
                    tables[variant][fraction] = (store.read_per_case(point.id), table_path.read_bytes())
                    reference, raw = tables["fp32"][fraction]
                    rows.append(
                        {
                            "data": dataset,
                            "fraction": fraction,
                            "variant": variant,
                            "trial_id": point.id,
                            "finetune_s": record.seconds,
                            "pretrain_s": pretrain_s,
                            **compare(tables[variant][fraction][0], reference, tables[variant][fraction][1] == raw),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    load_after = os.getloadavg()

    print(f"\nload average {load_before[0]:.2f} before, {load_after[0]:.2f} after; {args.threads} thread(s)")
    print(
        f"{'data':<5}{'labels':>7} {'variant':<14}{'same bytes':>11}{'max |dDice|':>12}{'mean |dDice|':>13}"
        f"{'mean Dice':>10}{'change':>9}{'fine-tune s':>12}{'pretrain s':>11}"
    )
    for r in rows:
        print(
            f"{r['data']:<5}{r['fraction']:>7g} {r['variant']:<14}{'yes' if r['identical'] else 'no':>11}"
            f"{r['max_abs']:12.4f}{r['mean_abs']:13.5f}{r['mean_dice']:10.4f}{r['mean_dice_change']:+9.4f}"
            f"{r['finetune_s']:12.1f}{r['pretrain_s']:11.1f}"
        )
    print(
        json.dumps(
            {
                "benchmark": "cpu_numbers",
                "rows": rows,
                "threads": args.threads,
                "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
