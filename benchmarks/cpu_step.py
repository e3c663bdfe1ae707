"""A laptop training step on this CPU: each way of running it against fp32 eager, side by side.

The step is a laptop fine-tuning step: the U-Net of widths 16-128 (GroupNorm 8, weight-standardised
convolutions), a batch of 9 slices at 64 x 64, soft Dice loss, Adam; one thread, as a study's
``cpus_per_trial: 1``. Every variant trains its own copy of the same seeded network on the same
batch; each round times ``--steps`` steps of every variant in turn (the order rotated each round), so
load on the machine hits all of them alike; a variant's figure is its median step time over the
rounds and the median of its per-round ratio to fp32 eager.

Variants: fp32 eager (the reference, NCHW, Adam's per-parameter loop: the step before issue 24);
Adam's foreach loop (the training loop's now, the same numbers); channels_last; bf16 autocast (NCHW
and channels_last); oneDNN with its fp32 convolutions computed in bf16
(``torch.backends.mkldnn.conv.fp32_precision``); oneDNN off (PyTorch's own convolutions);
``torch.compile`` (fp32, and with channels_last) with its compile time (cold: a fresh inductor cache,
unless ``TORCHINDUCTOR_CACHE_DIR`` names one; and a second model compiled in the same process, as the
next trial of a reused worker). Then the validation pass (64 validation slices, forward only):
``no_grad`` at batch 9 (the loop's before), ``inference_mode`` (the loop's now), and larger batches,
with whether the logits stay bit-identical to batch 9's. ``--concurrency`` also compares, in separate
processes, one trial at one and at two threads with two trials at one thread each (the steps per
second of the machine).

Run: ``python benchmarks/cpu_step.py [--rounds 7] [--steps 5] [--no-compile] [--concurrency]``; the
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from study.constants import LAPTOP_GROUPS, LAPTOP_WIDTHS
from study.model import UNet, UNetConfig
from study.train._loop import ADAM_BETAS, ADAM_EPS
from study.train._losses import soft_dice_loss

BATCH, SIZE, CLASSES = 9, 64, 4
CONFIG = UNetConfig(in_channels=1, out_channels=CLASSES, widths=LAPTOP_WIDTHS, groups=LAPTOP_GROUPS)


def batch(n: int = BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, SIZE, SIZE, generator=g), (torch.rand(n, CLASSES, SIZE, SIZE, generator=g) > 0.7).float()


@contextlib.contextmanager
def onednn(enabled: bool = True, conv_precision: str = "none"):
    before = torch.backends.mkldnn.enabled, torch.backends.mkldnn.conv.fp32_precision
    torch.backends.mkldnn.enabled, torch.backends.mkldnn.conv.fp32_precision = enabled, conv_precision
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled, torch.backends.mkldnn.conv.fp32_precision = before


def make_step(
    *,
    channels_last: bool = False,
    bf16: bool = False,
    compile: bool = False,
    mkldnn: bool = True,
    conv_precision: str = "none",
    foreach: bool | None = None,
) -> Callable[[], float]:
    """One variant's training step, on its own seeded network; returns the loss."""
    model = UNet(CONFIG, seed=1)
    x, y = batch()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    runner = torch.compile(model) if compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=ADAM_BETAS, eps=ADAM_EPS, foreach=foreach)

    def step() -> float:
        cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with onednn(mkldnn, conv_precision), cast:
            loss = soft_dice_loss(runner(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


VARIANTS: dict[str, dict] = {
    "fp32 eager": {},  # the step before issue 24: Adam's per-parameter loop, a CPU's default
    "Adam foreach (the loop's now)": {"foreach": True},
    "channels_last": {"channels_last": True},
    "bf16 autocast": {"bf16": True},
    "bf16 autocast + channels_last": {"bf16": True, "channels_last": True},
    "oneDNN fp32 conv in bf16": {"conv_precision": "bf16"},
    "oneDNN off": {"mkldnn": False},
    "torch.compile": {"compile": True},
    "torch.compile + channels_last": {"compile": True, "channels_last": True},
}


def alternate(runs: dict[str, Callable[[], object]], rounds: int, repeat: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each, wall and CPU (this process's, all its threads), ``repeat`` calls a
    round, the order rotated every round. On a busy machine the wall clock also counts the time the
    step waited for a core; the CPU seconds of a one-thread step count only its work."""
    names = list(runs)
    seconds: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(repeat):
                runs[name]()
            seconds[name]["cpu"].append((time.process_time() - cpu) / repeat)
            seconds[name]["wall"].append((time.perf_counter() - wall) / repeat)
    return seconds


def summary(seconds: dict[str, dict[str, list[float]]], reference: str) -> dict[str, dict[str, float]]:
    out = {}
    for name, clocks in seconds.items():
        out[name] = {}
        for clock, s in clocks.items():
            ratios = [a / b for a, b in zip(s, seconds[reference][clock])]
            out[name] |= {
                f"{clock}_ms": statistics.median(s) * 1e3,
                f"{clock}_ratio": statistics.median(ratios),
                f"{clock}_ratio_min": min(ratios),
                f"{clock}_ratio_max": max(ratios),
            }
    return out


def steps(args) -> tuple[dict, dict[str, float]]:
    variants = {k: v for k, v in VARIANTS.items() if args.compile or not v.get("compile")}
    runs, compile_s = {}, {}
    for name, kwargs in variants.items():
        runs[name] = make_step(**kwargs)
        start = time.perf_counter()
        runs[name]()  # warm-up: oneDNN's primitives, or the compilation of forward and backward
        if kwargs.get("compile"):
            compile_s[name] = time.perf_counter() - start
        runs[name]()
    if args.compile:
        # the next trial on a reused worker: a new model, the graphs already in the cache
        again = make_step(compile=True)
        start = time.perf_counter()
        again()
        compile_s["torch.compile, a second model in the same process"] = time.perf_counter() - start
    return summary(alternate(runs, args.rounds, args.steps), "fp32 eager"), compile_s


def validation(args) -> tuple[dict, dict[str, bool]]:
    """The validation pass's forward over 64 slices, as ways of running it; and whether each gives
    batch 9's logits to the bit."""
    model = UNet(CONFIG, seed=1).eval()
    x, _ = batch(64)

    def forward(size: int, mode) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with mode():
                return torch.cat([model(x[i : i + size]) for i in range(0, len(x), size)])

        return run

    runs = {
        "batch 9, no_grad": forward(9, torch.no_grad),
        "batch 9, inference_mode": forward(9, torch.inference_mode),
        **{f"batch {b}, inference_mode": forward(b, torch.inference_mode) for b in (16, 32, 64)},
    }
    reference = runs["batch 9, no_grad"]()
    same = {name: torch.equal(run(), reference) for name, run in runs.items()}
    return summary(alternate(runs, args.rounds, 1), "batch 9, no_grad"), same


def _worker(threads: int, n: int, start, done) -> None:
    torch.set_num_threads(threads)
    step = make_step()
    step()
    step()
    start.wait()
    for _ in range(n):
        step()
    done.put(time.perf_counter())


def concurrency(args) -> dict[str, float]:
    """Steps per second of the machine: one trial at 1 and at 2 threads, two trials at 1 thread each."""
    ctx = mp.get_context("spawn")

    def rate(processes: int, threads: int) -> float:
        start, done = ctx.Barrier(processes + 1), ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(threads, args.steps * 4, start, done)) for _ in range(processes)]
        for w in workers:
            w.start()
        start.wait()
        begun = time.perf_counter()
        ends = [done.get() for _ in workers]
        for w in workers:
            w.join()
        return processes * args.steps * 4 / (max(ends) - begun)

    kinds = {"one trial, 1 thread": (1, 1), "one trial, 2 threads": (1, 2), "two trials, 1 thread each": (2, 1)}
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(max(2, args.rounds // 2)):
        for name, (p, t) in kinds.items():
            rates[name].append(rate(p, t))
    return {name: statistics.median(r) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps of each variant per round")
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="leave the torch.compile variants out"
    )
    parser.add_argument("--concurrency", action="store_true", help="also two trials at once against one at two threads")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # the first compilation is a cold one, as a study's first trial on a machine pays it
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))
    load_before = os.getloadavg()
    step, compile_s = steps(args)
    val, same = validation(args)
    rates = concurrency(args) if args.concurrency else {}
    load_after = os.getloadavg()

    print(
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; {args.rounds} rounds "
        f"of {args.steps} steps"
    )
    print(
        f"{'training step (batch 9, 64 px, 1 thread)':<34} {'CPU ms':>7} {'ratio':>6} {'(min-max)':>11} "
        f"{'wall ms':>8} {'ratio':>6}"
    )
    for name, s in step.items():
        print(
            f"{name:<34} {s['cpu_ms']:7.1f} {s['cpu_ratio']:6.3f} ({s['cpu_ratio_min']:.2f}-{s['cpu_ratio_max']:.2f}) "
            f"{s['wall_ms']:8.1f} {s['wall_ratio']:6.3f}"
        )
    for name, s in compile_s.items():
        print(f"{name}: first step (compiling forward and backward) {s:.1f} s")
    print(
        f"{'validation forward, 64 slices':<34} {'CPU ms':>7} {'ratio':>6} {'(min-max)':>11} {'wall ms':>8} "
        f"{'ratio':>6}  logits as batch 9's"
    )
    for name, s in val.items():
        print(
            f"{name:<34} {s['cpu_ms']:7.1f} {s['cpu_ratio']:6.3f} ({s['cpu_ratio_min']:.2f}-{s['cpu_ratio_max']:.2f}) "
            f"{s['wall_ms']:8.1f} {s['wall_ratio']:6.3f}  {'bit-identical' if same[name] else 'differ'}"
        )
    for name, r in rates.items():
        print(f"{name:<44} {r:7.2f} steps/s of the machine")
    print(
        json.dumps(
            {
                "benchmark": "cpu_step",
                "rounds": args.rounds,
                "steps": args.steps,
                "step": {k: {m: round(v, 4) for m, v in s.items()} for k, s in step.items()},
                "compile_s": {k: round(v, 2) for k, v in compile_s.items()},
                "validation": {
                    k: {**{m: round(v, 4) for m, v in s.items()}, "bit_identical": same[k]} for k, s in val.items()
                },
                "steps_per_s": {k: round(v, 3) for k, v in rates.items()},
                "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                "torch": torch.__version__,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            }
        )
    )


if __name__ == "__main__":
    main()
