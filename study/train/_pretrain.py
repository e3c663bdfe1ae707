"""Inpainting pretraining (context prediction or context restoration), section 2.4 of the paper.

The model sees a corrupted image and learns to restore the original; the loss is the squared error
summed over pixels. Each batch draws fresh masks from the run's mask bank on the training device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from study.data import Dataset
from study.errors import SpecError
from study.model import UNet, UNetConfig
from study.pretext import CorruptionConfig, MaskBank, scaled_patch_size
from study.train._data import train_batches, validation_batches
from study.train._early_stopping import EarlyStopping, Mode
from study.train._evaluate import evaluate_inpainting
from study.train._loop import FitResult, TrainSettings, fit
from study.train._losses import inpainting_loss
from study.train._padding import network_forward
from study.train._schedule import StepDecay

VAL_MASK_SEED = 20230704  # fixed, so every epoch and every model is validated on the same corruptions


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining: pretext task, patch size (in pixels of a 512 x 512 image, as the paper
    states it; scaled to the data's image size), patch sampler, extent, optimiser settings.

    ``extent`` counts in multiples of the training set (1.0 = 100 %: the training images alone).
    Early stopping on the validation inpainting loss: patience 4, by default a min delta relative to
    the best loss, since the summed-squared-error loss grows with the image area;
    ``min_delta_mode="absolute"`` with ``min_delta=50`` is the authors' rule (docs/science.md §4).
    """

    task: str = "restoration"
    sampler: str = "poisson_disc"
    patch_size: int = 32
    extent: float = 1.0
    lr: float = 1e-3
    patience: int = 4
    min_delta: float = 1e-3
    min_delta_mode: Mode = "relative"
    n_masks: int = 100

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise SpecError(f"pretraining lr={self.lr!r} must be a learning rate in (0, 1)")

    def corruption(self, image_size: int) -> CorruptionConfig:
        return CorruptionConfig(
            task=self.task,
            sampler=self.sampler,
            patch_size=scaled_patch_size(self.patch_size, image_size),
            n_masks=self.n_masks,
        )


@dataclass
class PretrainResult:
    state: dict[str, Tensor]
    fit: FitResult
    inpainting: pd.DataFrame  # per held-out slice L2 (docs/per-case-table.md)


def build_bank(dataset: Dataset, config: PretrainConfig, seed: int) -> MaskBank:
    info = next(iter(dataset.scans.values()))
    corruption = config.corruption(round((info.height * info.width) ** 0.5))
    return MaskBank.build(corruption, (info.height, info.width), seed)


def pretrain(
    dataset: Dataset,
    scan_ids: Sequence[str],
    *,
    val_ids: Sequence[str],
    test_ids: Sequence[str],
    unet: UNetConfig,
    config: PretrainConfig,
    settings: TrainSettings,
    workdir: Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> PretrainResult:
    """Pretrain an inpainting U-Net on ``scan_ids`` (checked free of held-out scans by the caller
    through :func:`study.data.pretraining_scans`); validate on ``val_ids``; report the inpainting L2
    on ``test_ids``. Returns the best weights. ``unet`` is the inpainting network: its input and
    output channels are the data set's."""
    if not unet.in_channels == unet.out_channels == dataset.in_channels:
        raise SpecError(
            f"an inpainting U-Net for {dataset.in_channels}-channel images needs in_channels = "
            f"out_channels = {dataset.in_channels}, got {unet.in_channels} and {unet.out_channels}"
        )
    model = settings.place(UNet(unet, seed=settings.seed))
    bank = build_bank(dataset, config, settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)

    def step_loss(m: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        x = settings.to_device(batch["image"])
        return inpainting_loss(network_forward(m, bank.corrupt(x, generator), settings), x)

    val_batches = validation_batches(dataset, val_ids, settings, with_masks=False, train_ids=scan_ids)

    def val_loss(m: nn.Module) -> float:
        val_generator = torch.Generator().manual_seed(VAL_MASK_SEED)
        total, n = 0.0, 0
        for batch in val_batches:
            x = settings.to_device(batch["image"])
            total += (
                float(inpainting_loss(network_forward(m, bank.corrupt(x, val_generator), settings), x)) * x.shape[0]
            )
            n += x.shape[0]
        return total / n

    result = fit(
        model,
        batches=train_batches(dataset, scan_ids, settings, generator, with_masks=False),
        step_loss=step_loss,
        val_loss=val_loss,
        schedule=StepDecay(config.lr),
        stopper=EarlyStopping(config.patience, config.min_delta, mode=config.min_delta_mode),
        settings=settings,
        generator=generator,
        checkpoint=None if workdir is None else workdir / "pretrain.pt",
        on_epoch=on_epoch,
    )
    model.load_state_dict(result.best_state)
    l2 = evaluate_inpainting(model, bank.corrupt, dataset, test_ids, settings, seed=VAL_MASK_SEED)
    return PretrainResult(state=result.best_state, fit=result, inpainting=l2)
