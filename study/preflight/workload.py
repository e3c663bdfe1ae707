"""What a planned study will train, counted before anything runs: its networks, slices and epochs.

``--dry-run`` turns these counts into the GPU memory one trial needs (``study.preflight.gpu``) and the
GPU-hours the study costs. The counts follow the training code: a pretraining sees the scans of its
extent, a fine-tuning those of its label fraction (``study.data`` draws both from the split alone),
an epoch is ``steps_per_epoch`` batches or one pass, every epoch validates on the validation
split, and each run ends on the test split once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from study.data import (
    BUILTIN_KINDS,
    PhantomSettings,
    Split,
    default_rounding,
    open_dataset,
    phantom_rounding,
    phantom_split,
    pretraining_scans,
)
from study.data.padding import NetworkPadding
from study.data.subsets import labeled_scans
from study.design import axes as design_axes
from study.design.plan import Plan
from study.design.scale import Scale
from study.execution.configs import unet_config

if TYPE_CHECKING:
    from study.model import UNetConfig


@dataclass(frozen=True)
class DataShape:
    """What the counts need of a data set: channels, classes, slice sizes, the split, slices per scan."""

    name: str
    in_channels: int
    classes: int
    sizes: frozenset[tuple[int, int]]  # (H, W) of its slices
    split: Split
    slices: Mapping[str, int]  # slices per scan id
    rounding: str

    def n_slices(self, scan_ids: tuple[str, ...] | list[str]) -> int:
        return sum(self.slices[s] for s in scan_ids)

    def network_size(self, levels: int) -> tuple[int, int]:
        """The largest (H, W) the network sees, after its padding."""
        return max((NetworkPadding(h, w, levels).padded for h, w in self.sizes), key=lambda hw: hw[0] * hw[1])


def data_shape(name: str, path: str | None, image_size: int, phantom_version: int | None = None) -> DataShape:
    """The shape of a built-in phantom (``path`` None, known before it is generated; of
    ``phantom_version``, default the latest) or a data set folder."""
    if path is None and name in BUILTIN_KINDS:
        from study.preflight.footprint import dataset_channels

        version = {} if phantom_version is None else {"version": phantom_version}
        settings = PhantomSettings.default(name, size=image_size, **version)
        split = phantom_split(settings)
        c_in, classes = dataset_channels(name, None)
        ids = [s for role in split.roles().values() for s in role]
        return DataShape(
            name,
            c_in,
            classes,
            frozenset({(settings.size, settings.size)}),
            split,
            {s: settings.n_slices for s in ids},
            phantom_rounding(settings),
        )
    dataset = open_dataset(Path(path or name))
    try:
        return DataShape(
            name,
            dataset.in_channels,
            len(dataset.class_names),
            frozenset((i.height, i.width) for i in dataset.scans.values()),
            dataset.split,
            {s: i.n_slices for s, i in dataset.scans.items()},
            default_rounding(dataset),
        )
    finally:
        dataset.close()


@dataclass(frozen=True)
class Run:
    """One pretraining or one fine-tuning trial, in images seen at the epoch budget."""

    dataset: str
    kind: Literal["pretrain", "finetune"]
    network: UNetConfig
    size: tuple[int, int]  # (H, W) the network sees
    train_slices: int  # the slices of its scans (what its cache would hold)
    cache_bytes: int | None  # its cache of training slices; None: slices of several sizes, never cached
    train_images_per_epoch: int
    val_images: int  # per epoch, forward only
    test_images: int  # once, forward only
    max_epochs: int  # every stage's budget together


def runs(plan: Plan, shapes: Mapping[str, DataShape]) -> list[Run]:
    """Every run of an enumerable plan: its unique pretrainings, then its trials. A sampled search
    is drawn as it runs: its candidates then are one pretraining per extent and one trial per label
    fraction on each data set, as long as the search's longest schedule."""
    if not plan.enumerable:
        return _candidates(plan, shapes)
    scale = plan.spec.scale
    out = []
    for point in plan.pretrainings().values():
        shape = shapes[point.dataset]
        ids = pretraining_scans(shape.split, point.extent, seed=point.split_seed, rounding=shape.rounding)
        net = unet_config(scale, in_channels=shape.in_channels, out_channels=shape.in_channels, inpainting=True)
        out.append(_run(scale, shape, "pretrain", net, ids, scale.pretrain_max_epochs))
    for trial in plan.trials:
        shape = shapes[trial.dataset]
        ids = labeled_scans(shape.split, trial.label_fraction, seed=trial.split_seed, rounding=shape.rounding)
        net = unet_config(scale, in_channels=shape.in_channels, out_channels=shape.classes)
        stages = design_axes.stages(trial.values())
        out.append(_run(scale, shape, "finetune", net, ids, stages * scale.finetune_max_epochs))
    return out


def _candidates(plan: Plan, shapes: Mapping[str, DataShape]) -> list[Run]:
    spec, scale, out = plan.spec, plan.spec.scale, []
    seed = spec.split_seed
    stages = design_axes.finetuning_stages(spec.axes())
    for name in spec.datasets:
        shape = shapes[name]
        for extent in spec.pretraining.extent if spec.pretraining is not None else []:
            ids = pretraining_scans(shape.split, extent, seed=seed, rounding=shape.rounding)
            net = unet_config(scale, in_channels=shape.in_channels, out_channels=shape.in_channels, inpainting=True)
            out.append(_run(scale, shape, "pretrain", net, ids, scale.pretrain_max_epochs))
        for fraction in spec.label_fractions:
            ids = labeled_scans(shape.split, fraction, seed=seed, rounding=shape.rounding)
            net = unet_config(scale, in_channels=shape.in_channels, out_channels=shape.classes)
            out.append(_run(scale, shape, "finetune", net, ids, stages * scale.finetune_max_epochs))
    return out


def _run(
    scale: Scale,
    shape: DataShape,
    kind: Literal["pretrain", "finetune"],
    net: UNetConfig,
    ids: tuple[str, ...],
    epochs: int,
) -> Run:
    slices = shape.n_slices(ids)
    per_epoch = slices if scale.steps_per_epoch is None else scale.steps_per_epoch * scale.batch_size
    return Run(
        shape.name,
        kind,
        net,
        shape.network_size(net.levels),
        slices,
        cache_size(shape, slices, with_masks=kind == "finetune"),
        per_epoch,
        shape.n_slices(shape.split.val),
        shape.n_slices(shape.split.test),
        epochs,
    )


def cache_size(shape: DataShape, slices: int, *, with_masks: bool) -> int | None:
    """Bytes a trial's cache of ``slices`` training slices takes; None: slices of several sizes."""
    from study.train._cache import slice_cache_bytes

    if len(shape.sizes) != 1:
        return None
    ((height, width),) = shape.sizes
    return slice_cache_bytes(slices, shape.in_channels, shape.classes if with_masks else 0, height, width)
