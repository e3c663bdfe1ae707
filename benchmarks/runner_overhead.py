"""What the study runner costs over its trials' own work, and what running trials side by side gains.

Trials of the README main study's size: supervised trials on both built-in phantoms at 5 % and 100 %
of the labels, 18 fine-tuning epochs of 12 batches of 9 slices at 64 px, the laptop U-Net, one
thread each (two learning rates: 8 trials), measured three ways in one run:

* bare: ``study.trial.run_trial`` in a plain loop, one after the other (no Ray, no MLflow): the
  same steps, validations, test evaluations and checkpoints, nothing around them;
* runner, one at a time: ``python -m study.run`` with ``max_concurrent_trials=1``, wall time of the
  whole command (Ray start, planning, MLflow logging, summary and report included);
* runner, two at a time: the same with ``max_concurrent_trials=2`` on the two cores.

Goals: overhead = runner one at a time / bare <= 1.05; speed-up = one at a time / two at a time >= 1.6.
Each run's records hold the seconds its trials spent in training steps (``step_seconds``: batches
read, forward, backward, optimiser); the runner's wall time is also set against their sum: how much
of a study is training steps.

``--summarize STUDY_DIR`` reads a finished study folder (the README main study's, say) the same way:
its wall time, from the first invocation's start to the last record written, against the sum of its
trials' and pretrainings' step seconds, divided by the trials that ran at once.

Run: ``python benchmarks/runner_overhead.py [--epochs 18] [--lrs 2]`` (about 20 min on 2 cores), or
``python benchmarks/runner_overhead.py --summarize studies/pretext``; the last line printed is one JSON
object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

LRS = [0.01, 0.005, 0.002, 0.02, 0.001, 0.003]


def spec(folder: Path, epochs: int, lrs: int, concurrent: int) -> dict:
    return {
        "name": "bench", "datasets": ["mri", "ct"], "pretraining": None, "label_fractions": [0.05, 1.0],
        "finetuning": {"lr": LRS[:lrs]}, "baseline": {"enabled": True},
        "scale": {"profile": "laptop", "finetune_max_epochs": epochs, "finetune_patience": 1000},
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": concurrent},
        "storage": str(folder / "studies"), "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
    }


def bare(epochs: int, lrs: int) -> tuple[float, list[dict]]:
    import torch

    from study.data import PhantomSettings, builtin_dataset
    from study.plan import make_plan
    from study.spec_loading import validate
    from study.store import StudyStore
    from study.trial import run_trial

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_plan(validate(spec(Path(tmp), epochs, lrs, 1)))
        store = StudyStore(Path(tmp) / "studies" / "bench")
        each = []
        for trial in plan.trials:
            data = str(builtin_dataset(trial.dataset, PhantomSettings.default(trial.dataset, size=64)))
            start = time.perf_counter()
            record = run_trial(store, trial, data_path=data)
            each.append({"trial": f"{trial.dataset} {trial.label_fraction:g} lr {trial.lr:g}",
                         "seconds": time.perf_counter() - start, "step_seconds": record.metrics["step_seconds"]})
    return sum(e["seconds"] for e in each), each


def study_times(folder: Path, slots: int | None = None) -> dict:
    """A finished study folder's wall time against its records' step seconds."""
    from study.store import StudyStore

    store = StudyStore(folder)
    state = store.read_state() or {}
    started = min(datetime.datetime.strptime(i["time"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
                  for i in store.invocations())
    trials = [(r, folder / "trials" / r.trial_id / "result.json") for r in store.results() if r.finished]
    keys = {r.pretrain_key for r, _ in trials if r.pretrain_key}
    pretrainings = [(p, store.pretrain_dir(k) / "result.json") for k in keys if (p := store.pretrain_result(k))]
    ended = max(path.stat().st_mtime for _, path in trials + pretrainings)
    if slots is None:
        cpus = float(((state.get("spec") or {}).get("resources") or {}).get("cpus_per_trial", 1))
        slots = max(1, int((os.cpu_count() or 1) // cpus))
    missing = sum("step_seconds" not in r.metrics for r, _ in trials + pretrainings)
    step_s = sum(r.metrics.get("step_seconds", 0.0) for r, _ in trials + pretrainings)
    record_s = sum(r.seconds or 0.0 for r, _ in trials + pretrainings)
    wall = ended - started
    return {"study": str(folder), "trials": len(trials), "pretrainings": len(pretrainings), "slots": slots,
            "wall_s": round(wall, 1), "step_s": round(step_s, 1), "record_s": round(record_s, 1),
            "records_without_step_seconds": missing,
            # 1.0: the slots did nothing but training steps from the first second to the last
            "step_share": round(step_s / (wall * slots), 3), "record_share": round(record_s / (wall * slots), 3)}


def through_runner(epochs: int, lrs: int, concurrent: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(spec(Path(tmp), epochs, lrs, concurrent)))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "study.run", str(path)], cwd=tmp, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
        times = study_times(Path(tmp) / "studies" / "bench", slots=concurrent)
    return seconds, times


def summarize(folder: Path, slots: int | None) -> None:
    times = study_times(folder, slots)
    print(f"{times['study']}: {times['trials']} trials and {times['pretrainings']} pretrainings, "
          f"{times['slots']} at once")
    print(f"wall {times['wall_s']:.0f} s (first invocation to the last record); training steps "
          f"{times['step_s']:.0f} s, whole trials and pretrainings {times['record_s']:.0f} s (sums over the records)")
    print(f"steps fill {times['step_share']:.1%} of the wall x slots; trials and pretrainings "
          f"{times['record_share']:.1%}")
    if times["records_without_step_seconds"]:
        print(f"{times['records_without_step_seconds']} records predate step_seconds: the step share is low by them")
    print(json.dumps({"benchmark": "runner_overhead", "summarize": times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=18, help="fine-tuning epochs of 12 steps per trial")
    parser.add_argument("--lrs", type=int, default=2, choices=range(1, len(LRS) + 1),
                        help="learning rates: trials = 4 x this")
    parser.add_argument("--summarize", type=Path, metavar="STUDY_DIR", help="only read a finished study folder")
    parser.add_argument("--slots", type=int, help="with --summarize: trials that ran at once (default: cpus / "
                        "cpus_per_trial of this machine)")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize, args.slots)
        return
    # one phantom cache for this process and the runner's (which runs in a temporary folder),
    # generated before any timing starts
    os.environ.setdefault("SSL_STUDY_DATA_CACHE", str(Path("data_cache").resolve()))
    from study.data import PhantomSettings, builtin_dataset

    for kind in ("mri", "ct"):
        builtin_dataset(kind, PhantomSettings.default(kind, size=64))
    load_before = os.getloadavg()
    bare_s, each = bare(args.epochs, args.lrs)
    one_s, one = through_runner(args.epochs, args.lrs, 1)
    two_s, two = through_runner(args.epochs, args.lrs, 2)
    load_after = os.getloadavg()
    overhead, speedup = one_s / bare_s, one_s / two_s
    bare_steps = sum(e["step_seconds"] for e in each)
    print(f"{len(each)} trials, {args.epochs} epochs each; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    for e in each:
        print(f"  bare {e['trial']:<22} {e['seconds']:6.1f} s, of which training steps {e['step_seconds']:5.1f} s")
    print(f"bare loop {bare_s:.1f} s (steps {bare_steps:.1f} s, {bare_steps / bare_s:.1%}) | runner one at a time "
          f"{one_s:.1f} s (steps {one['step_s']:.1f} s) | runner two at a time {two_s:.1f} s (steps {two['step_s']:.1f} s)")
    print(f"overhead {overhead:.3f} (goal <= 1.05) | speed-up with two concurrent trials {speedup:.2f} (goal >= 1.6)")
    print(f"runner wall x slots against its trials' step seconds: one at a time {one['step_s'] / one_s:.1%}, "
          f"two at a time {two['step_s'] / (2 * two_s):.1%}")
    print(json.dumps({
        "benchmark": "runner_overhead", "trials": len(each), "epochs": args.epochs, "mean_trial_s": round(bare_s / len(each), 2),
        "bare_s": round(bare_s, 2), "bare_step_s": round(bare_steps, 2), "runner_sequential_s": round(one_s, 2),
        "runner_two_concurrent_s": round(two_s, 2), "runner_sequential_step_s": one["step_s"],
        "runner_two_concurrent_step_s": two["step_s"], "overhead": round(overhead, 3), "overhead_goal": 1.05,
        "speedup": round(speedup, 3), "speedup_goal": 1.6, "goal_met": overhead <= 1.05 and speedup >= 1.6,
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "machine": f"{platform.machine()} {os.cpu_count()} cpus", "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
