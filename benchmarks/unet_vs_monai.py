"""Training throughput of study.model.UNet against MONAI's BasicUNet on the CPU.

Both networks get the paper's widths (32, 64, 128, 256, 512), GroupNorm with 16 groups, ReLU, stride-2
transposed-convolution upsampling and one Adam step per batch (betas of the paper), with the same
threads, batch and image size. Ours additionally standardises the weights of every 3x3 convolution,
which MONAI does not, so a ratio >= 1 means the science costs no speed. MONAI's last decoder level
is slightly wider (its last upsampling keeps 64 channels), which favours ours by a few percent; the
FLOPs of each are printed so the reader can discount it.

Measurement rounds alternate which model goes first (ABBA...), so drift in the load of this shared
machine hits both. Images per second come from each model's fastest step (the one least disturbed by
other work; timeit's rule) and ``ratio`` is project / MONAI speed from them; the median and range of
the per-round paired ratios are printed beside it to show the noise.

    python benchmarks/unet_vs_monai.py [--threads 2] [--rounds 6] [--no-large]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study.model import UNet, UNetConfig, unet_macs  # noqa: E402

WIDTHS = (32, 64, 128, 256, 512)


def build_monai(in_channels: int, out_channels: int) -> nn.Module:
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    return BasicUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        features=(*WIDTHS, WIDTHS[0]),
        act=("relu", {"inplace": True}),
        norm=("group", {"num_groups": 16}),
        upsample="deconv",
    )


def flops_of(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // x.shape[0]


def make_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.99, 0.995), eps=1e-8)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()

    return step


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def time_steps(step, n: int) -> float:
    start = clock()
    for _ in range(n):
        step()
    return clock() - start


def compare(size: int, batch: int, rounds: int, steps: int, channels_last: bool) -> dict[str, float]:
    in_ch, out_ch = 1, 4
    torch.manual_seed(1)
    x = torch.randn(batch, in_ch, size, size)
    target = torch.randn(batch, out_ch, size, size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x, target = x.contiguous(memory_format=fmt), target.contiguous(memory_format=fmt)
    models = {
        "project": UNet(UNetConfig(in_channels=in_ch, out_channels=out_ch, widths=WIDTHS, groups=16), seed=0),
        "monai": build_monai(in_ch, out_ch),
    }
    steps_by_name = {}
    for name, model in models.items():
        model.to(memory_format=fmt).train()
        gflop = flops_of(model, x[:1]) / 1e9
        print(
            f"  {name:8s} params {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M, "
            f"forward {gflop:.2f} GFLOP/image"
        )
        steps_by_name[name] = make_step(model, x, target)
        steps_by_name[name]()  # warm-up: allocator, oneDNN primitive caches
    times: dict[str, list[float]] = {name: [] for name in models}
    ratios = []
    order = list(models)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            times[name].append(time_steps(steps_by_name[name], steps) / steps)
        ratios.append(times["monai"][-1] / times["project"][-1])  # project speed / monai speed
        print(
            f"  round {r}: project {batch / times['project'][-1]:.2f} img/s, "
            f"monai {batch / times['monai'][-1]:.2f} img/s, ratio {ratios[-1]:.3f}"
        )
    best = {name: min(t) for name, t in times.items()}
    return {
        "project_img_s": round(batch / best["project"], 3),
        "monai_img_s": round(batch / best["monai"], 3),
        # The fastest step of each is the one least disturbed by other work on the machine.
        "ratio": round(best["monai"] / best["project"], 3),
        "ratio_median_paired": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=1, help="training steps per model per round")
    parser.add_argument("--channels-last", action="store_true", help="both models and inputs in NHWC")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time, robust to other jobs on a busy machine "
        "when --threads 1 (with more threads it also counts OpenMP spin-waiting)",
    )
    parser.add_argument("--no-large", action="store_true", help="skip the 512 x 512, batch 1 comparison")
    args = parser.parse_args()

    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.clock} clock, channels_last={args.channels_last}")
    result: dict[str, object] = {
        "benchmark": "unet_vs_monai",
        "device": "cpu",
        "threads": args.threads,
        "clock": args.clock,
        "channels_last": args.channels_last,
        "paper_forward_gflop_512": round(2 * unet_macs(UNetConfig(widths=WIDTHS), 512, 512) / 1e9, 2),
    }
    print(f"{args.size} x {args.size}, batch {args.batch}:")
    small = compare(args.size, args.batch, args.rounds, args.steps, args.channels_last)
    result[f"{args.size}px_batch{args.batch}"] = small
    if not args.no_large:
        print("512 x 512, batch 1:")
        result["512px_batch1"] = compare(512, 1, max(2, args.rounds // 3), 1, args.channels_last)
    result["ratio"] = small["ratio"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
