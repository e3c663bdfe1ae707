"""What the study runner costs over its trials' own work, and what running trials side by side gains.

Trials of the README main study's size: supervised trials on both built-in phantoms at 5 % and 100 %
of the labels, 18 fine-tuning epochs of 12 batches of 9 slices at 64 px, the laptop U-Net, one
thread each (two learning rates: 8 trials), measured three ways in one run:

* bare: ``study.execution.trial.run_trial`` in a plain loop, one after the other (no Ray, no MLflow), in a
  process of its own: the same steps, validations, test evaluations and checkpoints, nothing around
  them;
* runner, one at a time: ``python -m study.run`` with ``max_concurrent_trials=1``, wall time of the
  whole command (Ray start, planning, MLflow logging, summary and report included);
* runner, two at a time: the same with ``max_concurrent_trials=2`` on the two cores.

Each is timed as a whole process: wall seconds, and the CPU seconds of its process tree (Ray's
included; a busy machine stretches the wall clock, not the work). Goals: overhead = runner one at a time / bare
<= 1.05; speed-up = one at a time / two at a time >= 1.6.
Each run's records hold the seconds its trials spent in training steps (``step_seconds``: batches
read, forward, backward, optimiser); the runner's wall time is also set against their sum: how much
of a study is training steps.

``--summarize STUDY_DIR`` reads a finished study folder (the README main study's, say) the same way:
its wall time (``--wall``, the command's seconds as timed; else from the first invocation's record to
the last result written) against the sum of its trials' and pretrainings' step seconds, divided by the
trials that ran at once.

Run: ``python benchmarks/runner_overhead.py [--epochs 18] [--lrs 2]`` (about 20 min on 2 cores), or
``python benchmarks/runner_overhead.py --summarize studies/pretext --wall SECONDS``; the last line printed is one JSON
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

TICKS = os.sysconf("SC_CLK_TCK")
LRS = [0.01, 0.005, 0.002, 0.02, 0.001, 0.003]


def spec(folder: Path, epochs: int, lrs: int, concurrent: int) -> dict:
    return {
        "name": "bench",
        "datasets": ["mri", "ct"],
        "pretraining": None,
        "label_fractions": [0.05, 1.0],
        "finetuning": {"lr": LRS[:lrs]},
        "baseline": {"enabled": True},
        "scale": {"profile": "laptop", "finetune_max_epochs": epochs, "finetune_patience": 1000},
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": concurrent},
        "storage": str(folder / "studies"),
        "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
    }


def bare_loop(epochs: int, lrs: int) -> None:
    """The bare loop, run as its own process (``--bare``): one JSON line per trial."""
    import torch

    from study.data import PhantomSettings, builtin_dataset
    from study.design.plan import make_plan
    from study.design.spec_loading import validate
    from study.execution.trial import run_trial
    from study.folder.store import StudyStore

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_plan(validate(spec(Path(tmp), epochs, lrs, 1)))
        store = StudyStore(Path(tmp) / "studies" / "bench")
        for trial in plan.trials:
            data = str(builtin_dataset(trial.dataset, PhantomSettings.default(trial.dataset, size=64)))
            start = time.perf_counter()
            record = run_trial(store, trial, data_path=data)
            print(
                json.dumps(
                    {
                        "trial": f"{trial.dataset} {trial.label_fraction:g} lr {trial.lr:g}",
                        "seconds": time.perf_counter() - start,
                        "step_seconds": record.metrics["step_seconds"],
                    }
                ),
                flush=True,
            )


def _tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds so far of ``root`` and every process descended from it (Ray's raylet,
    GCS and workers included), each by its pid."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    for pid in tree & cpu.keys():
        seen[pid] = max(seen.get(pid, 0.0), cpu[pid])


def timed_process(command: list[str], cwd: str | None = None) -> tuple[float, float, str]:
    """Wall seconds of a command, and the CPU seconds of its whole process tree, read from /proc
    every 0.2 s (a busy machine stretches the wall clock, not the work); what a process spends
    after its last reading is missed."""
    seen: dict[int, float] = {}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
        while process.poll() is None:
            _tree_cpu(process.pid, seen)
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if process.returncode != 0:
        raise SystemExit(text[-4000:])
    return seconds, sum(seen.values()), text


def bare(epochs: int, lrs: int) -> tuple[float, float, list[dict]]:
    seconds, cpu, out = timed_process([sys.executable, __file__, "--bare", "--epochs", str(epochs), "--lrs", str(lrs)])
    return seconds, cpu, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def study_times(folder: Path, slots: int | None = None, wall: float | None = None) -> dict:
    """A finished study folder's wall time against its records' step seconds. The folder knows the
    run from its first invocation's record (written once Ray is up and the plan made) to its last
    result; ``wall``, the whole command's seconds when they were timed, replaces that."""
    from study.folder.store import StudyStore

    store = StudyStore(folder)
    state = store.read_state() or {}
    started = min(datetime.datetime.strptime(i["time"], "%Y-%m-%dT%H:%M:%S%z").timestamp() for i in store.invocations())
    # a pruned grid's stopped trials ran too (to their rung): their records count alike
    trials = [(r, folder / "trials" / r.trial_id / "result.json") for r in store.results() if r.finished or r.stopped]
    keys = {r.pretrain_key for r, _ in trials if r.pretrain_key}
    pretrainings = [(p, store.pretrain_dir(k) / "result.json") for k in keys if (p := store.pretrain_result(k))]
    ended = max(path.stat().st_mtime for _, path in trials + pretrainings)
    if slots is None:
        cpus = float(((state.get("spec") or {}).get("resources") or {}).get("cpus_per_trial", 1))
        slots = max(1, int((os.cpu_count() or 1) // cpus))
    missing = sum("step_seconds" not in r.metrics for r, _ in trials + pretrainings)
    step_s = sum(r.metrics.get("step_seconds", 0.0) for r, _ in trials + pretrainings)
    record_s = sum(r.seconds or 0.0 for r, _ in trials + pretrainings)
    wall = wall or ended - started
    return {
        "study": str(folder),
        "trials": len(trials),
        "pretrainings": len(pretrainings),
        "slots": slots,
        "wall_s": round(wall, 1),
        "step_s": round(step_s, 1),
        "record_s": round(record_s, 1),
        "records_without_step_seconds": missing,
        # 1.0: the slots did nothing but training steps from the first second to the last
        "step_share": round(step_s / (wall * slots), 3),
        "record_share": round(record_s / (wall * slots), 3),
    }


def through_runner(epochs: int, lrs: int, concurrent: int) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(spec(Path(tmp), epochs, lrs, concurrent)))
        seconds, cpu, _ = timed_process([sys.executable, "-m", "study.run", str(path)], cwd=tmp)
        times = study_times(Path(tmp) / "studies" / "bench", slots=concurrent, wall=seconds)
    return seconds, cpu, times


def summarize(folder: Path, slots: int | None, wall: float | None) -> None:
    times = study_times(folder, slots, wall)
    print(
        f"{times['study']}: {times['trials']} trials and {times['pretrainings']} pretrainings, {times['slots']} at once"
    )
    how = "the command, as timed" if wall else "first invocation to the last record"
    print(
        f"wall {times['wall_s']:.0f} s ({how}); training steps "
        f"{times['step_s']:.0f} s, whole trials and pretrainings {times['record_s']:.0f} s (sums over the records)"
    )
    print(
        f"steps fill {times['step_share']:.1%} of the wall x slots; trials and pretrainings {times['record_share']:.1%}"
    )
    if times["records_without_step_seconds"]:
        print(
            f"{times['records_without_step_seconds']} records carry no step_seconds (written before trials "
            "recorded them, or stopped at a rung before their rung files did): the step share is low by them"
        )
    print(json.dumps({"benchmark": "runner_overhead", "summarize": times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=18, help="fine-tuning epochs of 12 steps per trial")
    parser.add_argument(
        "--lrs", type=int, default=2, choices=range(1, len(LRS) + 1), help="learning rates: trials = 4 x this"
    )
    parser.add_argument("--summarize", type=Path, metavar="STUDY_DIR", help="only read a finished study folder")
    parser.add_argument(
        "--slots",
        type=int,
        help="with --summarize: trials that ran at once (default: cpus / cpus_per_trial of this machine)",
    )
    parser.add_argument(
        "--wall",
        type=float,
        help="with --summarize: the study command's own wall seconds, when "
        "timed (default: from the study folder's first invocation record to its last result)",
    )
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_loop(args.epochs, args.lrs)
        return
    if args.summarize:
        summarize(args.summarize, args.slots, args.wall)
        return
    # one phantom cache for this process and the runner's (which runs in a temporary folder),
    # generated before any timing starts
    os.environ.setdefault("SSL_STUDY_DATA_CACHE", str(Path("data_cache").resolve()))
    from study.data import PhantomSettings, builtin_dataset

    for kind in ("mri", "ct"):
        builtin_dataset(kind, PhantomSettings.default(kind, size=64))
    load_before = os.getloadavg()
    bare_s, bare_cpu, each = bare(args.epochs, args.lrs)
    one_s, one_cpu, one = through_runner(args.epochs, args.lrs, 1)
    two_s, two_cpu, two = through_runner(args.epochs, args.lrs, 2)
    load_after = os.getloadavg()
    overhead, speedup, cpu_overhead = one_s / bare_s, one_s / two_s, one_cpu / bare_cpu
    bare_steps = sum(e["step_seconds"] for e in each)
    print(
        f"{len(each)} trials, {args.epochs} epochs each; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    for e in each:
        print(f"  bare {e['trial']:<22} {e['seconds']:6.1f} s, of which training steps {e['step_seconds']:5.1f} s")
    print(
        f"bare loop {bare_s:.1f} s, {bare_cpu:.1f} CPU s (steps {bare_steps:.1f} s) | runner one at a "
        f"time {one_s:.1f} s, "
        f"{one_cpu:.1f} CPU s (steps {one['step_s']:.1f} s) | runner two at a time {two_s:.1f} s, {two_cpu:.1f} CPU s "
        f"(steps {two['step_s']:.1f} s); each a whole process"
    )
    print(
        f"overhead {overhead:.3f} wall, {cpu_overhead:.3f} CPU (goal <= 1.05) | speed-up with two concurrent trials "
        f"{speedup:.2f} (goal >= 1.6)"
    )
    mean_trial = sum(e["seconds"] for e in each) / len(each)
    print(
        f"a trial's own seconds (its record), mean: bare {mean_trial:.1f} s, "
        f"runner one at a time {one['record_s'] / one['trials']:.1f} s, two at a time "
        f"{two['record_s'] / two['trials']:.1f} s"
    )
    print(
        f"training steps' share of the wall x slots: bare {bare_steps / bare_s:.1%}, runner one at a time "
        f"{one['step_s'] / one_s:.1%}, two at a time {two['step_s'] / (2 * two_s):.1%}"
    )
    print(
        json.dumps(
            {
                "benchmark": "runner_overhead",
                "trials": len(each),
                "epochs": args.epochs,
                "mean_trial_s": round(mean_trial, 2),
                "bare_s": round(bare_s, 2),
                "bare_cpu_s": round(bare_cpu, 2),
                "bare_step_s": round(bare_steps, 2),
                "runner_sequential_s": round(one_s, 2),
                "runner_sequential_cpu_s": round(one_cpu, 2),
                "runner_two_concurrent_cpu_s": round(two_cpu, 2),
                "cpu_overhead": round(cpu_overhead, 3),
                "runner_two_concurrent_s": round(two_s, 2),
                "runner_sequential_step_s": one["step_s"],
                "runner_two_concurrent_step_s": two["step_s"],
                "runner_sequential_trial_s": one["record_s"],
                "runner_two_concurrent_trial_s": two["record_s"],
                "overhead": round(overhead, 3),
                "overhead_goal": 1.05,
                "speedup": round(speedup, 3),
                "speedup_goal": 1.6,
                "goal_met": overhead <= 1.05 and speedup >= 1.6,
                "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
