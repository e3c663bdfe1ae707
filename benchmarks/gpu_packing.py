"""Trials packed on one GPU through the real runner: total training img/s with 1, 2 and 4 at once.

Four identical supervised trials (the paper's U-Net at 512 x 512 on the built-in CT phantom, replicate
seeds 1-4, a fixed number of steps per epoch, no early stopping within the budget) run through
``python -m study.run`` three times: one at a time (``resources.gpus_per_trial=1``), two (0.5) and
four (0.25) at once, each a fresh study. A trial's rate is read from Tune's per-epoch reports (the
``time_total_s`` between its first and its last fine-tuning epoch, validation included), so Ray's
start and each trial's first epoch (its CUDA context, cuDNN's choice of algorithms) are left out;
the total is the concurrency times the median trial's rate, and each invocation's wall time is
printed beside it. Goal: four packed give at least 1.5x the total img/s of one.

    python benchmarks/gpu_packing.py [--epochs 4] [--steps 25] [--concurrency 1,2,4] [--out DIR]

Without CUDA it says so and prints a JSON line with "skipped": true. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from study.data import PhantomSettings, builtin_dataset  # noqa: E402

BATCH = 9


def spec(name: str, per_gpu: int, epochs: int, steps: int, storage: Path) -> dict:
    return {
        "name": name,
        "datasets": ["ct"],
        "scale": {
            "profile": "paper",
            "finetune_max_epochs": epochs,
            "steps_per_epoch": steps,
            "finetune_patience": epochs + 1,
            "batch_size": BATCH,
        },
        "pretraining": None,
        "baseline": True,
        "label_fractions": [1.0],
        "seeds": [1, 2, 3, 4],
        "search": {"algorithm": "grid"},
        "resources": {"cpus_per_trial": 2, "gpus_per_trial": 1 / per_gpu, "max_concurrent_trials": per_gpu},
        "storage": str(storage),
        "tracking_uri": f"sqlite:///{storage / 'mlflow.db'}",
    }


def trial_rates(study: Path, steps: int) -> list[float]:
    """Training images a second of each trial, between its first and its last fine-tuning epoch."""
    rates = []
    for results in (study / "tune").glob("**/result.json"):
        epochs = [
            r
            for r in map(json.loads, results.read_text().splitlines())
            if r.get("stage") == "finetune" and "epoch" in r
        ]
        if len(epochs) < 2:
            continue
        first, last = epochs[0], epochs[-1]
        images = (last["epoch"] - first["epoch"]) * steps * BATCH
        rates.append(images / (last["time_total_s"] - first["time_total_s"]))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--out", type=Path, default=None, help="folder for the studies (default: a temporary one)")
    parser.add_argument("--json-out", type=Path, help="also write the JSON line to this file")
    args = parser.parse_args()

    def finish(result: dict) -> None:
        line = json.dumps({"benchmark": "gpu_packing", **result})
        print(line)
        if args.json_out:
            args.json_out.write_text(line + "\n")

    if not torch.cuda.is_available():
        print("CUDA is not available: nothing to measure (run this on a GPU machine).")
        finish({"skipped": True, "reason": "CUDA not available"})
        return
    # One phantom folder for this process and the runner's (the cache is relative to the working folder)
    os.environ.setdefault("SSL_STUDY_DATA_CACHE", str(REPO / "data_cache"))
    builtin_dataset("ct", PhantomSettings.default("ct", size=512))  # made once, before any timing
    levels = [int(n) for n in args.concurrency.split(",")]
    totals, walls, medians, runs = {}, {}, {}, {}
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        for n in levels:
            storage = Path(tmp) / f"packing-{n}"
            storage.mkdir()
            space = storage / f"packing{n}.yaml"
            space.write_text(yaml.safe_dump(spec(f"packing{n}", n, args.epochs, args.steps, storage)))
            start = time.perf_counter()
            run = subprocess.run(
                [sys.executable, "-m", "study.run", str(space)],
                cwd=REPO,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            walls[n] = time.perf_counter() - start
            rates = trial_rates(storage / f"packing{n}", args.steps)
            runs[n] = {"rc": run.returncode, "trials_timed": len(rates)}
            if run.returncode != 0 or not rates:
                print(
                    f"{n} at once: the study failed (exit "
                    f"{run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
                )
                continue
            medians[n] = statistics.median(rates)
            totals[n] = n * medians[n]
            print(
                f"{n} trial(s) at once: {medians[n]:7.1f} img/s per trial (median of {len(rates)}), "
                f"total {totals[n]:7.1f} img/s; the runner's wall time {walls[n]:.0f} s"
            )
    ratio = totals[4] / totals[1] if 1 in totals and 4 in totals else None
    if ratio is not None:
        print(f"4 packed / 1 alone: {ratio:.2f}x total img/s (goal >= 1.5x)")
    finish(
        {
            "skipped": False,
            "device": torch.cuda.get_device_name(),
            "epochs": args.epochs,
            "steps": args.steps,
            "per_trial_img_s": {str(k): round(v, 1) for k, v in medians.items()},
            "total_img_s": {str(k): round(v, 1) for k, v in totals.items()},
            "wall_s": {str(k): round(v, 1) for k, v in walls.items()},
            "runs": {str(k): v for k, v in runs.items()},
            "ratio_4_over_1": None if ratio is None else round(ratio, 3),
        }
    )


if __name__ == "__main__":
    main()
