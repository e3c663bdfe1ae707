"""A study on GPUs, before it starts: one trial's GPU memory, how many fit a GPU, what it costs.

Memory per trial (an estimate, counted, not measured): weights, gradients and Adam's moments, the
activations of one training step at the scale's batch and image size under bf16 autocast
(``study.model.training_memory``), the trial's GPU cache (the largest training set that fits
``scale.gpu_cache_gb``) and ``CUDA_CONTEXT_GIB`` for what no count sees: the CUDA context of the
trial's process, cuDNN and cuBLAS workspaces, the mask bank and the allocator's rounding.
``resources.gpus_per_trial: 0.25`` puts four trials on a GPU in Ray's accounting; a packing whose
trials need more than the GPU has is refused before the study starts.

GPU time: images seen at the epoch budgets times the FLOPs of the U-Net (a training image three
forward passes, a validation or test image one), at a rate measured on the device when
``MEASURED_STEP_MS`` knows it, else at an assumed fraction of its datasheet bf16 peak.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from study.design.plan import Plan
from study.design.spec import StudySpec
from study.errors import SpecError
from study.preflight.workload import Run, data_shape, runs

GIB = 2**30
CUDA_CONTEXT_GIB = 1.5  # an allowance per trial process, not a measurement

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s; the first
# matching substring of the device name wins, so specific names come first.
BF16_DENSE_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5, reported as "NVIDIA H100 80GB HBM3"
    ("GH200", 989.4),
    ("H200", 989.4),  # the H100 SXM's chip, more and faster memory
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10", 125.0),
)
REFERENCE_GPU = ("NVIDIA H100 80GB HBM3", 989.4)  # what a machine without a GPU is costed on
ASSUMED_PEAK_FRACTION = 0.35  # the goal benchmarks/gpu_unet.py checks for one trial; not measured

# Milliseconds of one training step of the reference workload (the paper's U-Net, batch 9, one
# 512 x 512 channel, bf16 autocast + channels_last, Adam), by device name, as `bash
# benchmarks/gpu_check.sh` measures it (its "bf16_cl" step_ms). Empty until a GPU has measured it.
MEASURED_STEP_MS: dict[str, float] = {}
REFERENCE_STEP = {"batch": 9, "size": 512, "in_channels": 1, "out_channels": 4}


def peak_tflops(device: str) -> float | None:
    for key, value in BF16_DENSE_PEAK_TFLOPS:
        if key in device:
            return value
    return None


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int
    count: int = 1


def local_gpu() -> Gpu | None:
    """The first GPU of this machine, asked in a short-lived process so that the driver holds no
    CUDA context (it would take memory from the trials for the whole study); None without one."""
    code = (
        "import torch; c = torch.cuda.is_available(); p = c and torch.cuda.get_device_properties(0); "
        "print(f'{p.name}|{p.total_memory}|{torch.cuda.device_count()}' if c else '')"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    if not out:
        return None
    name, memory, count = out.rsplit("|", 2)
    return Gpu(name, int(memory), int(count))


def gpu_to_check(
    spec: StudySpec, *, memory_gb: float | None, address: str | None, cluster: Callable[[], Gpu | None] | None
) -> Gpu | None:
    """The GPU the packing is checked against: ``--gpu-memory-gb``, this machine's first GPU, or on a
    cluster (``address``) one of its GPU nodes', asked by ``cluster`` (None: not asked, as in a dry
    run, which has left the cluster). None for a laptop study on CPUs: no process is started to ask."""
    if memory_gb is not None:
        if not memory_gb > 0:
            raise SpecError(f"--gpu-memory-gb {memory_gb:g} must be a positive number of GiB")
        return Gpu(f"GPU of --gpu-memory-gb {memory_gb:g}", int(memory_gb * GIB))
    if spec.resources.gpus_per_trial <= 0 and spec.scale.profile != "paper":
        return None
    if address is None:
        return local_gpu()
    return cluster() if cluster is not None else None


# -- memory -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialMemory:
    """The largest GPU memory one run of the study needs, by part, in bytes."""

    model: int  # weights, gradients, Adam
    activations: int
    backward: int  # allowances: backward's gradients, the loss, the batch
    cache: int
    context: int
    batch: int
    size: tuple[int, int]

    @property
    def total(self) -> int:
        return self.model + self.activations + self.backward + self.cache + self.context

    def describe(self) -> str:
        h, w = self.size
        return (
            f"  GPU memory per trial: {_gib(self.total)} (estimate: weights, gradients and Adam {_gib(self.model)}, "
            f"activations at batch {self.batch}, {h} x {w} under bf16 autocast {_gib(self.activations)}, "
            f"backward, loss and batch {_gib(self.backward)}, GPU cache {_gib(self.cache)}, "
            f"CUDA context allowance {_gib(self.context)})"
        )


def trial_memory(spec: StudySpec, runs: Sequence[Run]) -> TrialMemory:
    """The most any run of ``runs`` holds on its GPU: the largest network and image, and the largest
    training set that fits the GPU cache budget."""
    from study.model import training_memory

    batch, budget = spec.scale.batch_size, spec.scale.gpu_cache_gb * GIB
    steps = [(training_memory(r.network, batch, *r.size), r.size) for r in runs]
    memory, size = max(steps, key=lambda s: s[0].total)
    cache = max((r.cache_bytes for r in runs if r.cache_bytes is not None and r.cache_bytes <= budget), default=0)
    return TrialMemory(
        model=memory.weights + memory.gradients + memory.adam,
        activations=memory.activations,
        backward=memory.backward + memory.batch,
        cache=cache,
        context=int(CUDA_CONTEXT_GIB * GIB),
        batch=batch,
        size=size,
    )


def trials_per_gpu(gpus_per_trial: float, max_concurrent: int | None = None) -> int:
    """How many trials Ray puts on one GPU: as many fractions as make one whole (at most the
    concurrency limit); a trial of one GPU or more has its GPU alone."""
    if gpus_per_trial >= 1:
        return 1
    n = math.floor(1 / gpus_per_trial + 1e-9)
    return min(n, max_concurrent) if max_concurrent else n


def check_packing(gpus_per_trial: float, per_trial_bytes: int, gpu: Gpu, max_concurrent: int | None = None) -> str:
    """The line saying how the trials pack onto ``gpu``; raises SpecError when they cannot fit."""
    n = trials_per_gpu(gpus_per_trial, max_concurrent)
    need = n * per_trial_bytes
    what = f"{n} trial{'s' if n > 1 else ''} per GPU (resources.gpus_per_trial={gpus_per_trial:g})"
    if need > gpu.memory_bytes:
        fewer = trials_per_gpu_that_fit(per_trial_bytes, gpu.memory_bytes)
        hint = (
            f"set resources.gpus_per_trial={1 / fewer:.3g} ({fewer} per GPU)"
            if fewer
            else "one trial alone does not fit: lower scale.batch_size or scale.gpu_cache_gb"
        )
        raise SpecError(
            f"resources.gpus_per_trial={gpus_per_trial:g}: {n} trials per GPU need about {_gib(need)} "
            f"of GPU memory ({_gib(per_trial_bytes)} each, estimated) but the {gpu.name} has "
            f"{_gib(gpu.memory_bytes)}; {hint}"
        )
    return f"  GPU packing: {what} need about {_gib(need)} of the {gpu.name}'s {_gib(gpu.memory_bytes)}: fits"


def trials_per_gpu_that_fit(per_trial_bytes: int, memory_bytes: int) -> int:
    return int(memory_bytes // per_trial_bytes) if per_trial_bytes > 0 else 0


# -- time -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """The FLOP/s one trial achieves on a GPU, and where that number comes from."""

    flops: float
    source: str


def rate_for(device: str | None) -> Rate:
    """Measured for ``device`` when ``MEASURED_STEP_MS`` has it; otherwise an assumption."""
    from study.model import UNetConfig, unet_macs

    if device is not None and device in MEASURED_STEP_MS:
        ref = REFERENCE_STEP
        config = UNetConfig(in_channels=ref["in_channels"], out_channels=ref["out_channels"])
        flops = 3 * 2 * unet_macs(config, ref["size"], ref["size"]) * ref["batch"] / (MEASURED_STEP_MS[device] / 1e3)
        return Rate(flops, f"measured on the {device}: {MEASURED_STEP_MS[device]:g} ms per paper-scale step")
    name, peak = (device, peak_tflops(device)) if device is not None and peak_tflops(device) else REFERENCE_GPU
    return Rate(
        ASSUMED_PEAK_FRACTION * peak * 1e12,
        f"ASSUMED, not measured: {ASSUMED_PEAK_FRACTION:.0%} of the {name}'s {peak:g} TFLOP/s dense bf16 "
        "peak (datasheet)",
    )


def run_flops(run: Run, epochs: int | None = None) -> float:
    """FLOPs of ``run`` over ``epochs`` (default its budget): three forward passes per training
    image (forward, gradients of activations and of weights), one per validation and test image."""
    from study.model import unet_macs

    forward = 2 * unet_macs(run.network, *run.size)
    epochs = run.max_epochs if epochs is None else epochs
    return forward * (epochs * (3 * run.train_images_per_epoch + run.val_images) + run.test_images)


def time_lines(runs: Sequence[Run], rate: Rate, *, sampled: int | None = None) -> list[str]:
    """GPU-hours of every run at its epoch budget (an upper bound: early stopping ends runs sooner)
    and per epoch of every run, one trial at a time on one GPU. For a sampled search of ``sampled``
    trials, ``runs`` are its candidates and the bound is that many of its costliest trial, each with
    a pretraining of its own."""

    def hours(run: Run, epochs: int | None = None) -> float:
        return run_flops(run, epochs) / rate.flops / 3600

    rate_line = f"  GPU rate: {rate.flops / 1e12:.0f} TFLOP/s, {rate.source}"
    if sampled is not None:
        worst = max((hours(r) for r in runs if r.kind == "finetune"), default=0.0)
        worst += max((hours(r) for r in runs if r.kind == "pretrain"), default=0.0)
        return [
            f"  GPU time, one trial at a time on one GPU: at most {_gpu_time(sampled * worst)} for {sampled} "
            f"sampled trials at the epoch budgets ({_gpu_time(worst)} for the costliest, its pretraining included)",
            rate_line,
        ]
    budget = sum(hours(r) for r in runs)
    per_epoch = sum(hours(r, 1) - hours(r, 0) for r in runs)
    epochs = "/".join(map(str, sorted({r.max_epochs for r in runs})))
    return [
        f"  GPU time, one trial at a time on one GPU: at most {_gpu_time(budget)} at the epoch budgets "
        f"({epochs}; early stopping ends most runs sooner), {_gpu_time(per_epoch)} per epoch of every run; "
        "what packing gains is not counted",
        rate_line,
    ]


def _gpu_time(hours: float) -> str:
    if hours >= 1:
        return f"{hours:,.1f} GPU-hours"
    return f"{hours * 60:.1f} GPU-minutes" if hours * 60 >= 1 else f"{hours * 3600:.0f} GPU-seconds"


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def gpu_lines(
    spec: StudySpec,
    plan: Plan,
    data: Mapping[str, str | None],
    gpu: Gpu | None,
    *,
    time: bool = True,
    phantom_version: int | None = None,
) -> list[str]:
    """What ``--dry-run`` says of a study on GPUs: one trial's GPU memory, the packing, the GPU time.
    Raises SpecError, before anything runs, when the trials ``resources.gpus_per_trial`` puts on one
    GPU need more memory than ``gpu`` has. Nothing for a CPU study of the laptop profile. Built-in
    data sets (None in ``data``) are the study's ``phantom_version`` (default the latest)."""
    gpus = spec.resources.gpus_per_trial
    if gpus <= 0 and spec.scale.profile != "paper" and gpu is None:
        return []
    all_runs = runs(
        plan, {name: data_shape(name, path, spec.scale.image_size, phantom_version) for name, path in data.items()}
    )
    if not all_runs:
        return []
    memory = trial_memory(spec, all_runs)
    on_gpu, on_host = spec.scale.gpu_cache_gb * GIB, spec.scale.cache_gb * GIB
    host = max(
        (r.cache_bytes for r in all_runs if r.cache_bytes is not None and on_gpu < r.cache_bytes <= on_host), default=0
    )
    cached = f"up to {_gib(host)} for its cache of training slices" if host else "no cache of training slices"
    lines = [
        memory.describe(),
        f"  host RAM per trial: {cached} (scale.cache_gb={spec.scale.cache_gb:g}; a set "
        f"larger is read lazily, scale.data_workers={spec.scale.data_workers} workers)",
    ]
    if gpus > 0 and gpu is None:
        lines.append("  GPU packing: not checked, no GPU visible here (--gpu-memory-gb N checks it against N GiB)")
    elif gpus > 0:
        lines.append(check_packing(gpus, memory.total, gpu, spec.resources.max_concurrent_trials))
    if not time:
        return lines
    return lines + time_lines(
        all_runs, rate_for(None if gpu is None else gpu.name), sampled=None if plan.enumerable else plan.num_samples()
    )
