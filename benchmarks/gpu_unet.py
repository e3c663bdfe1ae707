"""Training throughput of the paper-scale UNet on one GPU, and the fraction of the GPU's peak it reaches.

The paper's setting: widths (32, 64, 128, 256, 512), 512 x 512 slices, batch 9 (Dominic et al. 2023,
Sec. 2.3). One step is forward, backward and an Adam step. Variants:

    fp32           float32 weights and activations, NCHW (cuDNN may use TF32 for convolutions, as
                   PyTorch allows by default; the line says which)
    bf16_cl        torch.autocast(bfloat16) and channels_last
    bf16_cl_compile  the same, with torch.compile(model)

FLOPs per image: the forward pass counted from the config (``study.model.unet_macs``, checked
against ``torch.utils.flop_counter``), and a training step counted by ``FlopCounterMode`` on the
device. The fraction of peak uses the vendor's dense bf16 matrix rate for the device name (H100 SXM
and H200 about 989 TFLOP/s, ``study.preflight.gpu``) and, beside it, the rate of a large bf16 matrix product
measured here, the ceiling this machine actually offers (the goal: one trial at >= 35 % of it).
Each variant's peak memory is printed beside the platform's estimate of a step
(``study.model.training_memory``, what the packing check counts), so the estimate can be judged.
The bf16_cl step time is what ``study.preflight.gpu.MEASURED_STEP_MS`` wants for this device.

    python benchmarks/gpu_unet.py [--steps 20] [--variants fp32,bf16_cl,bf16_cl_compile]

Without CUDA it prints why and a JSON line with "skipped": true. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study.model import UNet, UNetConfig, training_memory, unet_macs  # noqa: E402
from study.model._memory import CUDA_BF16, FP32  # noqa: E402
from study.preflight.gpu import peak_tflops  # noqa: E402

CONFIG = UNetConfig(in_channels=1, out_channels=4, widths=(32, 64, 128, 256, 512), groups=16)
VARIANTS = ("fp32", "bf16_cl", "bf16_cl_compile")


def measured_matmul_tflops(n: int = 8192, reps: int = 10) -> float:
    """bf16 n x n x n matrix products on random data: the matrix rate this GPU sustains."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3) / 1e12


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor, bf16: bool
) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = nn.functional.mse_loss(out.float(), target)
        loss.backward()
        optimizer.step()

    return step


def counted_train_flops_per_image(size: int) -> int:
    """FLOPs of forward + backward for one image, as torch.utils.flop_counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    model = UNet(CONFIG, seed=0).cuda()
    x = torch.randn(1, CONFIG.in_channels, size, size, device="cuda")
    with FlopCounterMode(display=False) as counter:
        model(x).square().mean().backward()
    return counter.get_total_flops()


def run_variant(name: str, batch: int, size: int, warmup: int, steps: int) -> dict[str, float | str]:
    bf16 = name.startswith("bf16")
    fmt = torch.channels_last if "_cl" in name else torch.contiguous_format
    torch.manual_seed(0)
    model = UNet(CONFIG, seed=0).cuda().to(memory_format=fmt).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.99, 0.995), eps=1e-8)
    runnable: nn.Module = torch.compile(model) if name.endswith("compile") else model
    x = torch.randn(batch, CONFIG.in_channels, size, size, device="cuda").contiguous(memory_format=fmt)
    target = torch.randn(batch, CONFIG.out_channels, size, size, device="cuda").contiguous(memory_format=fmt)
    step = train_step(runnable, optimizer, x, target, bf16)

    t0 = time.perf_counter()
    for _ in range(warmup):  # cuDNN autotuning, and compilation for the compiled variant
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        step()
    end.record()
    torch.cuda.synchronize()
    step_ms = start.elapsed_time(end) / steps
    return {
        "step_ms": round(step_ms, 3),
        "img_s": round(batch / (step_ms / 1e3), 2),
        "warmup_s": round(warmup_s, 1),
        "max_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def bf16_relative_error(size: int) -> float:
    """||bf16 autocast + channels_last output - fp32 output|| / ||fp32 output|| for one forward pass."""
    model = UNet(CONFIG, seed=0).cuda().eval()
    x = torch.randn(2, CONFIG.in_channels, size, size, device="cuda")
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(x.contiguous(memory_format=torch.channels_last)).float()
    return float((low - ref).norm() / ref.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=9)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json-out", type=Path, help="also write the JSON line to this file")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("CUDA is not available: nothing to measure (run this on a GPU machine).")
        line = json.dumps({"benchmark": "gpu_unet", "skipped": True, "reason": "CUDA not available"})
        print(line)
        if args.json_out:
            args.json_out.write_text(line + "\n")
        return

    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest algorithms
    device = torch.cuda.get_device_name()
    peak = peak_tflops(device)
    forward_flops = 2 * unet_macs(CONFIG, args.size, args.size)
    train_flops = counted_train_flops_per_image(args.size)
    matmul = measured_matmul_tflops()
    print(f"{device}, torch {torch.__version__}, cuDNN TF32 allowed: {torch.backends.cudnn.allow_tf32}")
    print(
        f"forward {forward_flops / 1e9:.1f} GFLOP/image, training step {train_flops / 1e9:.1f} GFLOP/image; "
        f"bf16 peak {peak} TFLOP/s (datasheet), {matmul:.0f} TFLOP/s measured on 8192^3 matmul"
    )

    variants: dict[str, dict[str, float | str]] = {}
    for name in args.variants.split(","):
        try:
            result = run_variant(name, args.batch, args.size, args.warmup, args.steps)
        except Exception as error:  # one failing variant (e.g. a compiler problem) must not hide the rest
            variants[name] = {"error": f"{type(error).__name__}: {error}"[:300]}
            print(f"{name}: failed: {variants[name]['error']}")
            continue
        tflops = train_flops * float(result["img_s"]) / 1e12
        estimate = training_memory(
            CONFIG, args.batch, args.size, args.size, CUDA_BF16 if name.startswith("bf16") else FP32
        )
        result["estimated_mem_gib"] = round(estimate.total / 2**30, 2)
        result["tflops"] = round(tflops, 1)
        result["frac_bf16_peak"] = round(tflops / peak, 4) if peak else None  # type: ignore[assignment]
        result["frac_measured_matmul"] = round(tflops / matmul, 4)
        variants[name] = result
        print(
            f"{name:16s} {result['img_s']:8.1f} img/s  {result['step_ms']:7.2f} ms/step  {tflops:6.1f} TFLOP/s  "
            f"{result['frac_bf16_peak']} of peak, {result['frac_measured_matmul']} of the measured matmul rate  "
            f"{result['max_mem_gib']} GiB peak (estimated {result['estimated_mem_gib']})"
        )
        torch.cuda.empty_cache()

    rel_err = bf16_relative_error(256)
    print(f"bf16 autocast + channels_last vs fp32 forward: relative error {rel_err:.2e}")
    if "step_ms" in variants.get("bf16_cl", {}) and (args.batch, args.size) == (9, 512):
        print(f"for study/preflight/gpu.py MEASURED_STEP_MS: {device!r}: {variants['bf16_cl']['step_ms']}")
    line = json.dumps(
        {
            "benchmark": "gpu_unet",
            "skipped": False,
            "device": device,
            "torch": torch.__version__,
            "batch": args.batch,
            "size": args.size,
            "forward_gflop_per_image": round(forward_flops / 1e9, 2),
            "train_gflop_per_image": round(train_flops / 1e9, 2),
            "bf16_peak_tflops": peak,
            "matmul_bf16_tflops_measured": round(matmul, 1),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "bf16_rel_err": round(rel_err, 5),
            "variants": variants,
        }
    )
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")


if __name__ == "__main__":
    main()
