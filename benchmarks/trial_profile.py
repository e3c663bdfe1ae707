"""Where a laptop fine-tuning trial's time goes, measured inside one process.

The trial is the one issue 24 timed: restoration K32 (Poisson-disc) pretrained on the MRI phantom,
its encoder fine-tuned at 5 % of the labels, 18 epochs of 12 batches of 9 slices at 64 x 64, one
thread: ``study.execution.trial.run_trial``, the code a study's worker runs, without Ray or MLflow. Its
pretraining is made first (once, timed apart: a study shares it among the trials that transfer it).

Each part is timed by wrapping the function that does it, in this process only:

* start-up: importing the trial code (a fresh interpreter, ``python -c 'import study.execution.trial'``), and
  opening the data set;
* the training step: forward and loss, ``backward``, ``optimizer.step``, and reading the batch
  (the lazy h5 read, or the cache);
* validation every epoch (``dice_val_loss``), the test evaluation (prediction, then Dice and the
  clinical metrics), checkpoints (every epoch and the kept weights), the records and per-case table;
* the rest of the loop (learning rate, copying the best weights, zero_grad) is what is left.

What Ray, Tune and MLflow add is ``benchmarks/runner_overhead.py``'s: the runner against a bare loop.
Run: ``python benchmarks/trial_profile.py [--threads 1] [--set cpu_channels_last=true ...]``; the last
line printed is one JSON object.
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
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

import study.execution.trial as trial_module
import study.train._data as data_module
import study.train._evaluate as evaluate_module
import study.train._finetune as finetune_module
import study.train._loop as loop_module
import study.train._pipeline as pipeline_module
from study.constants import DEFAULT_SEED
from study.data import PhantomSettings, builtin_dataset
from study.design import axes as design_axes
from study.design.plan import TrialPoint, point
from study.design.scale import Scale
from study.folder.store import StudyStore

SECONDS: dict[str, float] = defaultdict(float)
CPU_SECONDS: dict[str, float] = defaultdict(float)  # this process's CPU time: what the part cost, load or not
CALLS: dict[str, int] = defaultdict(int)


@contextmanager
def timed(part: str):
    start, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        SECONDS[part] += time.perf_counter() - start
        CPU_SECONDS[part] += time.process_time() - cpu
        CALLS[part] += 1


def wrap(owner, name: str, part: str) -> None:
    """Time every call of ``owner.name`` as ``part``."""
    inner = getattr(owner, name)

    def timed_call(*args, **kwargs):
        with timed(part):
            return inner(*args, **kwargs)

    setattr(owner, name, timed_call)


def wrap_factory(owner, name: str, part: str) -> None:
    """``owner.name`` returns a function: time every call of what it returns as ``part``."""
    factory = getattr(owner, name)

    def timed_factory(*args, **kwargs):
        made = factory(*args, **kwargs)

        def timed_call(*a, **k):
            with timed(part):
                return made(*a, **k)

        return timed_call

    setattr(owner, name, timed_factory)


def instrument() -> None:
    wrap_factory(finetune_module, "_dice_step", "step: forward + loss")
    wrap(torch.Tensor, "backward", "step: backward")
    wrap(torch.optim.Adam, "step", "step: optimizer")
    wrap_factory(finetune_module, "dice_val_loss", "validation (every epoch)")
    wrap(evaluate_module, "predict_scan", "test: prediction")
    wrap(pipeline_module, "evaluate_segmentation", "test: evaluation in all")
    wrap(loop_module, "save_checkpoint", "checkpoints (every epoch)")
    wrap(trial_module, "save_checkpoint", "kept weights")
    wrap(StudyStore, "save_trial_result", "record + per-case table")
    batches_iter = data_module.EpochBatches.__iter__

    def timed_batches(self):
        it = batches_iter(self)
        while True:
            with timed("step: reading the batch"):
                batch = next(it, None)
            if batch is None:
                return
            yield batch

    data_module.EpochBatches.__iter__ = timed_batches


def import_seconds() -> float:
    """A fresh interpreter importing the trial code, minus one that imports nothing."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    bare = min(run("pass") for _ in range(2))
    return min(run("import study.execution.trial") for _ in range(2)) - bare


def trial_point(scale: Scale, dataset: str, fraction: float) -> TrialPoint:
    # the trial python -m study.train runs with no flags, at the seeds of a one-seed study: the same id
    return point(
        dataset=dataset,
        label_fraction=fraction,
        params=design_axes.default_params(scale),
        scale=scale,
        seed=DEFAULT_SEED,
        split_seed=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a study's cpus_per_trial)")
    parser.add_argument("--data", default="mri", choices=("mri", "ct"))
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a laptop scale field, as a study's --set scale.FIELD=VALUE",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fields = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    scale = Scale.model_validate({"profile": "laptop", **fields})
    imports = import_seconds()
    path = str(builtin_dataset(args.data, PhantomSettings.default(args.data, size=scale.image_size)))
    start = time.perf_counter()
    trial_module._dataset(path)
    open_s = time.perf_counter() - start
    trial = trial_point(scale, args.data, args.fraction)

    with tempfile.TemporaryDirectory() as tmp:
        store = StudyStore(Path(tmp) / "profile")
        start = time.perf_counter()
        trial_module.ensure_pretrained(store, trial.pretraining, data_path=path, device="cpu")
        pretrain_s = time.perf_counter() - start
        instrument()
        start, cpu = time.perf_counter(), time.process_time()
        record = trial_module.run_trial(store, trial, data_path=path, device="cpu")
        trial_s, trial_cpu = time.perf_counter() - start, time.process_time() - cpu
    steps = record.metrics["finetune_steps"]
    rest = "rest of the trial (loop bookkeeping, loading the pretrained weights)"
    step_s = sum(v for p, v in SECONDS.items() if p.startswith("step:"))
    step_cpu = sum(v for p, v in CPU_SECONDS.items() if p.startswith("step:"))
    inside = lambda d: sum(v for p, v in d.items() if p != "test: prediction")  # noqa: E731 - in "test: evaluation"
    parts = {**SECONDS, rest: trial_s - inside(SECONDS)}
    cpu_parts = {**CPU_SECONDS, rest: trial_cpu - inside(CPU_SECONDS)}

    load = os.getloadavg()
    print(
        f"trial {trial.id}: {trial.strategy} on {args.data} at {args.fraction:g}, {steps} steps, "
        f"{args.threads} thread(s), dice {record.dice:.6f}; load average {load[0]:.2f}"
    )
    print(
        f"start-up: imports {imports:.2f} s (fresh interpreter), data set opened in {open_s:.3f} s; "
        f"its pretraining (shared): {pretrain_s:.1f} s"
    )
    print(f"{'part':<70} {'wall s':>7} {'share':>6} {'CPU s':>7} {'share':>6} {'calls':>6}")
    for part, seconds in parts.items():
        nested = part == "test: prediction"  # inside "test: evaluation in all"

        def share(v: float, total: float, nested: bool = nested) -> str:
            return "" if nested else f"{v / total:6.1%}"

        print(
            f"{part:<70} {seconds:7.2f} {share(seconds, trial_s):>6} {cpu_parts[part]:7.2f} "
            f"{share(cpu_parts[part], trial_cpu):>6} {CALLS.get(part, ''):>6}"
        )
    print(f"{'the trial (run_trial)':<70} {trial_s:7.2f} {1:6.1%} {trial_cpu:7.2f} {1:6.1%}")
    print(
        f"training step: {step_s / steps * 1e3:.1f} ms wall, {step_cpu / steps * 1e3:.1f} ms CPU ({steps} steps, "
        f"{step_s / trial_s:.1%} of the trial's wall time, {step_cpu / trial_cpu:.1%} of its CPU time)"
    )
    print(
        json.dumps(
            {
                "benchmark": "trial_profile",
                "trial_id": trial.id,
                "data": args.data,
                "fraction": args.fraction,
                "threads": args.threads,
                "scale": fields,
                "steps": steps,
                "dice": record.dice,
                "trial_s": round(trial_s, 3),
                "trial_cpu_s": round(trial_cpu, 3),
                "step_ms": round(step_s / steps * 1e3, 2),
                "step_cpu_ms": round(step_cpu / steps * 1e3, 2),
                "pretrain_s": round(pretrain_s, 2),
                "import_s": round(imports, 3),
                "open_s": round(open_s, 3),
                "parts_s": {k: round(v, 3) for k, v in parts.items()},
                "parts_cpu_s": {k: round(v, 3) for k, v in cpu_parts.items()},
                "load_average": [round(x, 2) for x in load],
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
