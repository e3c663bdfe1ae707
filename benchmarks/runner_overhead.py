"""What the study runner costs, and what running trials side by side gains, on this machine.

Six supervised trials on the built-in MRI phantom (64 px, the laptop U-Net, one thread each), each
about 20 s of training, measured three ways in one run:

* bare: ``study.trial.run_trial`` in a plain loop, one after the other (no Ray, no MLflow);
* runner, one at a time: ``python -m study.run`` with ``max_concurrent_trials=1``, wall time of the
  whole command (Ray start, planning, MLflow logging, summary included);
* runner, two at a time: the same with ``max_concurrent_trials=2`` on the two cores.

Goals: overhead = runner one at a time / bare <= 1.15; speed-up = one at a time / two at a time >= 1.6.
Run: ``python benchmarks/runner_overhead.py [--epochs 12]``; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from study.data import PhantomSettings, builtin_dataset
from study.plan import make_plan
from study.spec_loading import validate
from study.store import StudyStore
from study.trial import run_trial

LRS = [0.001, 0.002, 0.0005, 0.003, 0.004, 0.0015]


def spec(folder: Path, epochs: int, concurrent: int) -> dict:
    return {
        "name": "bench", "datasets": ["mri"], "pretraining": None, "label_fractions": [1.0],
        "finetuning": {"lr": LRS}, "baseline": {"enabled": True},
        "scale": {"profile": "laptop", "finetune_max_epochs": epochs, "finetune_patience": 1000},
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": concurrent},
        "storage": str(folder / "studies"), "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
    }


def bare(epochs: int) -> tuple[float, list[float]]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_plan(validate(spec(Path(tmp), epochs, 1)))
        data = str(builtin_dataset("mri", PhantomSettings(kind="mri")))
        each = []
        for trial in plan.trials:
            start = time.perf_counter()
            run_trial(StudyStore(Path(tmp) / "studies" / "bench"), trial, data_path=data)
            each.append(time.perf_counter() - start)
    return sum(each), each


def through_runner(epochs: int, concurrent: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(spec(Path(tmp), epochs, concurrent)))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "study.run", str(path)], cwd=tmp, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="fine-tuning epochs of 12 steps per trial")
    args = parser.parse_args()
    # one phantom cache for this process and the runner's (which runs in a temporary folder),
    # generated before any timing starts
    os.environ.setdefault("SSL_STUDY_DATA_CACHE", str(Path("data_cache").resolve()))
    builtin_dataset("mri", PhantomSettings(kind="mri"))
    bare_s, each = bare(args.epochs)
    one_s = through_runner(args.epochs, 1)
    two_s = through_runner(args.epochs, 2)
    overhead, speedup = one_s / bare_s, one_s / two_s
    print(f"{len(LRS)} trials, {args.epochs} epochs each: trial seconds (bare) {', '.join(f'{s:.1f}' for s in each)}")
    print(f"bare loop {bare_s:.1f} s | runner one at a time {one_s:.1f} s | runner two at a time {two_s:.1f} s")
    print(f"overhead {overhead:.3f} (goal <= 1.15) | speed-up with two concurrent trials {speedup:.2f} (goal >= 1.6)")
    print(json.dumps({
        "benchmark": "runner_overhead", "trials": len(LRS), "mean_trial_s": round(bare_s / len(each), 2),
        "bare_s": round(bare_s, 2), "runner_sequential_s": round(one_s, 2), "runner_two_concurrent_s": round(two_s, 2),
        "overhead": round(overhead, 3), "overhead_goal": 1.15, "speedup": round(speedup, 3), "speedup_goal": 1.6,
        "goal_met": overhead <= 1.15 and speedup >= 1.6,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus", "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
