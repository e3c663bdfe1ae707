"""The training objects a trial's scale and design values imply: what a trial runs with.

The scale (:class:`~study.design.scale.Scale`) is data, and so is a point of the plan; these factories turn
them into the science core's settings and configs. Each design axis sets the config field its
declaration names (:mod:`study.design.axes`), the scale sets the rest. torch is imported here only when
a factory is called, so that parsing a spec stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from study.design import axes as design_axes
from study.design.scale import Scale

if TYPE_CHECKING:
    from study.model import UNetConfig
    from study.train import FinetuneConfig, PretrainConfig, TrainSettings


def train_settings(scale: Scale, *, stage: Literal["pretrain", "finetune"], device: str, seed: int) -> TrainSettings:
    from study.train import TrainSettings

    epochs = scale.pretrain_max_epochs if stage == "pretrain" else scale.finetune_max_epochs
    return TrainSettings(
        batch_size=scale.batch_size,
        max_epochs=epochs,
        steps_per_epoch=scale.steps_per_epoch,
        device=device,
        seed=seed,
        pad_mode=scale.pad_mode,
        cache_gb=scale.cache_gb,
        gpu_cache_gb=scale.gpu_cache_gb,
        num_workers=scale.data_workers,
        compile=scale.compile,
        cpu_channels_last=scale.cpu_channels_last,
        cpu_bf16=scale.cpu_bf16,
    )


def pretrain_config(scale: Scale, values: dict[str, Any]) -> PretrainConfig:
    """A pretraining's config from its value of each pretraining axis (by key) and the scale."""
    from study.train import PretrainConfig

    return PretrainConfig(
        **{a.config: values[a.key] for a in design_axes.of("pretraining")},
        patience=scale.pretrain_patience,
        min_delta=scale.pretrain_min_delta,
        min_delta_mode=scale.pretrain_min_delta_mode,
        n_masks=scale.n_masks,
    )


def finetune_config(scale: Scale, values: dict[str, Any]) -> FinetuneConfig:
    """A fine-tuning's config from its value of each fine-tuning axis (by key) and the scale."""
    from study.train import FinetuneConfig

    return FinetuneConfig(
        **{a.config: values[a.key] for a in design_axes.of("finetuning")}, patience=scale.finetune_patience
    )


def unet_config(scale: Scale, *, in_channels: int, out_channels: int, inpainting: bool = False) -> UNetConfig:
    from study.model import UNetConfig

    return UNetConfig.for_architecture(
        scale.architecture,
        inpainting=inpainting,
        in_channels=in_channels,
        out_channels=out_channels,
        widths=tuple(scale.widths),
        groups=scale.groups,
        norm_running_stats=scale.norm_running_stats,
    )
