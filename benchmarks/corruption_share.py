"""Share of an inpainting training step spent corrupting the batch, at paper scale on this CPU.

Paper scale: 512 x 512 single-channel images, batch 9, the project's U-Net with filters
32-64-128-256-512 (``study.model``), Adam with the authors' betas (0.99, 0.995), the inpainting loss
(squared error summed over pixels, averaged over batch and channels). A training step is forward +
backward + optimiser step; corruption is ``MaskBank.corrupt`` on the same batch (a fresh mask and
rotation per image), timed for both tasks with the Poisson-disc sampler at the paper's optimum
K = 32 (the cost does not depend on K: a quarter of the pixels moves either way). Building the
bank happens once per run and is reported beside, not counted in the step.

Run: ``python benchmarks/corruption_share.py [--steps 1] [--warmup 1]``; the last line printed is
one JSON object. Goal: corruption < 5 % of the step. A step takes minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from study.model import UNet, UNetConfig
from study.pretext import CorruptionConfig, MaskBank

SIZE, BATCH, K = 512, 9, 32


def inpainting_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((prediction - target) ** 2).sum(dim=(2, 3)).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps first")
    parser.add_argument("--corrupt-calls", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(BATCH, 1, SIZE, SIZE)
    generator = torch.Generator().manual_seed(0)

    corrupt_s, build_s, banks = {}, {}, {}
    for task in ("prediction", "restoration"):
        start = time.perf_counter()
        banks[task] = MaskBank.build(CorruptionConfig(task, "poisson_disc", K), (SIZE, SIZE), seed=0)
        build_s[task] = time.perf_counter() - start
        banks[task].corrupt(x, generator)  # first call allocates
        times = []
        for _ in range(args.corrupt_calls):
            start = time.perf_counter()
            banks[task].corrupt(x, generator)
            times.append(time.perf_counter() - start)
        corrupt_s[task] = statistics.median(times)
        print(
            f"{task}: bank build {build_s[task]:.3f} s (once per run), corrupt "
            f"{1e3 * corrupt_s[task]:.1f} ms per batch of {BATCH} (median of {args.corrupt_calls})"
        )

    model = UNet(UNetConfig(in_channels=1, out_channels=1, widths=(32, 64, 128, 256, 512)))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.99, 0.995), eps=1e-8)
    corrupted = banks["restoration"].corrupt(x, generator)
    step_s = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss = inpainting_loss(model(corrupted), x)
        loss.backward()
        optimiser.step()
        seconds = time.perf_counter() - start
        if step >= args.warmup:
            step_s.append(seconds)
        print(f"training step {step} ({'warm-up' if step < args.warmup else 'timed'}): {seconds:.1f} s")
    step = statistics.median(step_s)

    share = {task: corrupt_s[task] / (corrupt_s[task] + step) for task in corrupt_s}
    for task, value in share.items():
        print(
            f"{task}: corruption is {100 * value:.3f} % of a training step ({1e3 * corrupt_s[task]:.1f} ms "
            f"of {step:.1f} s + corruption)"
        )
    print(
        json.dumps(
            {
                "benchmark": "corruption_share",
                "image": [SIZE, SIZE],
                "batch": BATCH,
                "channels": 1,
                "patch_size": K,
                "sampler": "poisson_disc",
                "model": "study.model.UNet widths (32, 64, 128, 256, 512)",
                "device": "cpu",
                "train_step_s": round(step, 2),
                "timed_steps": args.steps,
                "corrupt_ms": {task: round(1e3 * s, 2) for task, s in corrupt_s.items()},
                "bank_build_s": {task: round(s, 3) for task, s in build_s.items()},
                "corruption_share_percent": {task: round(100 * s, 4) for task, s in share.items()},
                "goal_percent": 5,
                "goal_met": all(s < 0.05 for s in share.values()),
                "bank_mb": {task: round(b.nbytes / 1e6, 1) for task, b in banks.items()},
                "load_average_1min_at_end": round(os.getloadavg()[0], 2),
                "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                "torch_threads": torch.get_num_threads(),
                "numpy": np.__version__,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
