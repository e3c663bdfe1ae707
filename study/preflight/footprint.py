"""What a study will train and how much disk it will take: the lines ``--dry-run`` adds to its plan.

The training lines show the values each trial will actually use (an lr axis the spec leaves out is
the profile's), so ``--set scale=paper`` can be checked before a GPU is spent on it. Disk use is
counted from the networks' state-dict sizes (``study.model.unet_state_size``), not measured: a
float32 weights file is 4 bytes per element plus an index entry per tensor, and a resume
checkpoint holds the weights, Adam's two moments and the best weights so far.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from study.design import axes as design_axes
from study.design.plan import Plan
from study.design.spec import StudySpec, bounds
from study.execution.configs import finetune_config, pretrain_config, unet_config

_PER_TENSOR = 300  # bytes of zip entry, pickle record and alignment per tensor in a torch.save file


def training_lines(spec: StudySpec) -> list[str]:
    """The learning rates, epoch budgets, early stopping and network every trial will use."""
    s, axes = spec.scale, spec.axes()
    rates = [
        f"{a.title} {_axis(axes[a.path])}"
        for a in design_axes.AXES
        if a.continuous and a.path in axes and not (a.optional and axes[a.path] == [None])
    ]
    rates += [f"baseline lr {_axis(axes['baseline.lr'])}"] if "baseline.lr" in axes else []
    # The configs a trial gets, so what is printed is what runs.
    pre = pretrain_config(s, design_axes.example_values("pretraining"))
    tune = finetune_config(s, design_axes.example_values("finetuning"))
    epoch = "the whole training set" if s.steps_per_epoch is None else f"{s.steps_per_epoch} batches"
    stats = ", GroupNorm with running statistics" if s.norm_running_stats else ""
    return [
        f"  learning rates: {', '.join(rates)}",
        f"  pretraining: up to {s.pretrain_max_epochs} epochs, early stopping after {pre.patience} without an "
        f"improvement of more than {_margin(pre.min_delta, pre.min_delta_mode)}",
        f"  fine-tuning: up to {s.finetune_max_epochs} epochs, early stopping after {tune.patience} without an "
        f"improvement of more than {_margin(tune.min_delta, 'absolute')}; batch {s.batch_size}, an epoch is {epoch}",
        f"  network: {s.architecture} U-Net, widths {'-'.join(map(str, s.widths))}, {s.groups} groups{stats}",
    ]


def disk_lines(plan: Plan, channels: dict[str, tuple[int, int]], *, concurrent: int | None) -> list[str]:
    """Expected disk use: the files a finished study keeps, and the checkpoints of running trials.
    ``channels`` maps each data set to (input channels, classes)."""
    spec, scale = plan.spec, plan.spec.scale
    kept, parts, running = 0, [], 0
    for name, (c_in, classes) in channels.items():
        inpainting = _sizes(unet_config(scale, in_channels=c_in, out_channels=c_in, inpainting=True))
        segmentation = _sizes(unet_config(scale, in_channels=c_in, out_channels=classes))
        trials, pretrainings, stages = _counts(plan, name)
        kept_trials = trials if spec.keep_weights == "best" else 0
        kept += pretrainings * inpainting[0] + kept_trials * segmentation[0]
        running = max(running, segmentation[1] * stages, inpainting[1])
        parts.append(
            f"{name}: {pretrainings} pretrained weights of {_mib(inpainting[0])}"
            + (f", {trials} fine-tuned weights of {_mib(segmentation[0])}" if kept_trials else "")
        )
    many = f", up to {concurrent} at once: {_mib(concurrent * running)}" if concurrent else ""
    most = "" if plan.enumerable else "at most "
    return [
        f"  disk kept (keep_weights {spec.keep_weights}): {most}{_mib(kept)}; " + "; ".join(parts),
        f"  disk while running: {_mib(running)} of resume checkpoints per running trial or pretraining"
        f"{many}; deleted once its record is written",
    ]


def dataset_channels(name: str, path: str | None) -> tuple[int, int]:
    """(input channels, classes) of a built-in phantom (``path`` None) or a data set folder."""
    if path is None:
        from study.data.phantoms import CT_CLASSES, MRI_CLASSES
        from study.data.preprocess import DEFAULT_CT_WINDOWS

        return (1, len(MRI_CLASSES)) if name == "mri" else (len(DEFAULT_CT_WINDOWS), len(CT_CLASSES))
    from study.data import open_dataset

    dataset = open_dataset(Path(path))
    try:
        return dataset.in_channels, len(dataset.class_names)
    finally:
        dataset.close()


def _sizes(config: Any) -> tuple[int, int]:
    """(weights file, resume checkpoint) in bytes: the checkpoint holds the weights twice (now and
    the best) and Adam's two moments with a step count per parameter tensor."""
    from study.model import unet_state_size

    elements, tensors = unet_state_size(config)
    return 4 * elements + _PER_TENSOR * tensors, 16 * elements + 5 * _PER_TENSOR * tensors


def _counts(plan: Plan, dataset: str) -> tuple[int, int, int]:
    """(trials, pretrainings, checkpoints one trial holds at most) on ``dataset``; for a sampled
    search the most it can draw."""
    if plan.enumerable:
        trials = [t for t in plan.trials if t.dataset == dataset]
        keys = {t.pretraining.key for t in trials if t.pretraining is not None}
        stages = max((design_axes.stages(t.values()) for t in trials), default=1)
        return len(trials), len(keys), stages
    axes, n = plan.spec.axes(), plan.num_samples()
    pretraining = [v for k, v in axes.items() if k.startswith("pretraining.")]
    if not pretraining:
        pretrainings = 0
    elif all(isinstance(v, list) for v in pretraining):
        pretrainings = min(n, math.prod(len(v) for v in pretraining))
    else:  # a continuous pretraining lr: every draw may be a new pretraining
        pretrainings = n
    return n, pretrainings, design_axes.finetuning_stages(axes)


def _margin(min_delta: float, mode: str) -> str:
    return f"{min_delta:g} x |best| (relative)" if mode == "relative" else f"{min_delta:g} (absolute)"


def _axis(axis: Any) -> str:
    if isinstance(axis, list):
        return "[" + ", ".join("same as lr" if v is None else f"{v:g}" for v in axis) + "]"
    low, high, log = bounds(axis)
    return f"{'loguniform' if log else 'uniform'} {low:g}..{high:g}"


def _mib(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"
