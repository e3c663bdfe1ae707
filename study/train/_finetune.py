"""Fine-tuning for segmentation, with the paper's transfer design choices (section 2.5).

Scope: which pretrained groups are copied (none = the supervised baseline, encoder, or
encoder + decoder; the head never is). Schedule: ``at_once`` fine-tunes everything from the start;
``freeze_then_unfreeze`` first trains with the transferred groups frozen until early stopping, then
starts a second run from that run's best weights with every layer trainable and its own initial
learning rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from study.data import Dataset
from study.errors import SpecError
from study.model import FreezeReport, TransferPlan, TransferReport, UNet, UNetConfig, freeze, transfer_weights, unfreeze
from study.train._data import train_batches, validation_batches
from study.train._early_stopping import EarlyStopping
from study.train._loop import FitResult, TrainSettings, fit
from study.train._losses import soft_dice_loss
from study.train._padding import network_forward
from study.train._schedule import StepDecay

# The checkpoint file of each fine-tuning stage, in running order, in the ``workdir`` a resumed
# attempt continues from (study.execution.tune reads them to note the epoch an attempt resumes from).
FINETUNE_CHECKPOINTS: dict[str, str] = {"finetune": "finetune.pt", "unfrozen": "unfrozen.pt"}


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning: transfer plan, learning rates, early stopping (docs/science.md §4).

    ``unfrozen_lr`` is the initial learning rate of the second run of ``freeze_then_unfreeze``
    (default: ``lr``). Early stopping: absolute min delta on the Dice loss, which lies in [0, 1]
    at every image size.
    """

    scope: str = "none"
    schedule: str = "at_once"
    lr: float = 1e-3
    unfrozen_lr: float | None = None
    patience: int = 10
    min_delta: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("lr", "unfrozen_lr"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < 1):
                raise SpecError(f"fine-tuning {name}={value!r} must be a learning rate in (0, 1)")

    @property
    def plan(self) -> TransferPlan:
        return TransferPlan(self.scope, self.schedule)


@dataclass
class FinetuneResult:
    model: UNet
    fits: list[FitResult]
    transfer: TransferReport | None
    frozen: FreezeReport | None
    paused: bool = False  # stopped at ``until_epoch`` with budget left: a later call resumes it

    @property
    def steps(self) -> int:
        return sum(f.steps for f in self.fits)

    @property
    def step_seconds(self) -> float:
        return sum(f.step_seconds for f in self.fits)


def dice_val_loss(
    dataset: Dataset, val_ids: Sequence[str], settings: TrainSettings, train_ids: Sequence[str] = ()
) -> Callable[[nn.Module], float]:
    """Mean soft Dice loss over the validation slices, batch by batch (as Keras reports val_loss).
    The slices are held after the first call when they fit the cache budget beside ``train_ids``'."""
    batches = validation_batches(dataset, val_ids, settings, with_masks=True, train_ids=train_ids)

    def val_loss(model: nn.Module) -> float:
        losses, weights = [], []
        for batch in batches:
            logits = network_forward(model, settings.to_device(batch["image"]), settings)
            losses.append(float(soft_dice_loss(logits, settings.to_device(batch["mask"]))))
            weights.append(batch["image"].shape[0])
        return sum(loss * weight for loss, weight in zip(losses, weights)) / sum(weights)

    return val_loss


def _dice_step(settings: TrainSettings) -> Callable[[nn.Module, dict[str, Tensor]], Tensor]:
    def step(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        logits = network_forward(model, settings.to_device(batch["image"]), settings)
        return soft_dice_loss(logits, settings.to_device(batch["mask"]))

    return step


def finetune(
    dataset: Dataset,
    train_ids: Sequence[str],
    *,
    val_ids: Sequence[str],
    unet: UNetConfig,
    config: FinetuneConfig,
    settings: TrainSettings,
    pretrained: Mapping[str, Tensor] | None = None,
    workdir: Path | None = None,
    on_epoch: Callable[[str, dict[str, float]], None] | None = None,
    until_epoch: int | None = None,
) -> FinetuneResult:
    """Fine-tune a segmentation U-Net on ``train_ids``; returns the model at its best weights.

    ``unet.out_channels`` must equal the number of classes. ``pretrained`` is the state dict of an
    inpainting U-Net of the same widths; it is required unless the scope is ``none``. With
    ``workdir`` each stage checkpoints there and a repeated call resumes. ``on_epoch(stage, record)``
    receives every epoch's learning-curve record, stage ``"finetune"`` or ``"unfrozen"``.
    ``until_epoch`` pauses after that many epochs over all stages (a pruning rung; with ``workdir``
    a later call continues from there, so a paused and resumed fine-tuning equals an uninterrupted
    one); the result is then ``paused``, with the best weights so far.
    """
    if unet.out_channels != len(dataset.class_names):
        raise SpecError(f"segmentation head has {unet.out_channels} channels for {len(dataset.class_names)} classes")
    plan = config.plan
    if plan.scope != "none" and pretrained is None:
        raise SpecError(f"transfer scope {plan.scope!r} needs a pretrained model")
    model = settings.place(UNet(unet, seed=settings.seed))
    report = (
        transfer_weights(pretrained, model, plan.scope) if plan.scope != "none" and pretrained is not None else None
    )
    frozen = freeze(model, plan.frozen_groups) if plan.frozen_groups else None

    generator = torch.Generator().manual_seed(settings.seed)
    batches = train_batches(dataset, train_ids, settings, generator, with_masks=True)
    stages = [("finetune", config.lr)]
    if plan.schedule == "freeze_then_unfreeze":
        stages.append(("unfrozen", config.unfrozen_lr or config.lr))
    val_loss = dice_val_loss(dataset, val_ids, settings, train_ids)  # one for both stages: read once
    fits: list[FitResult] = []
    paused = False
    for stage, lr in stages:
        budget = settings
        if until_epoch is not None:
            left = until_epoch - sum(f.epochs_run for f in fits)
            if left <= 0:
                paused = True
                break
            budget = replace(settings, max_epochs=min(settings.max_epochs, left))
        if stage == "unfrozen":
            model.load_state_dict(fits[-1].best_state)  # the second run starts from the first's best
            unfreeze(model)
        result = fit(
            model,
            batches=batches,
            step_loss=_dice_step(settings),
            val_loss=val_loss,
            schedule=StepDecay(lr),
            stopper=EarlyStopping(config.patience, config.min_delta, mode="absolute"),
            settings=budget,
            generator=generator,
            checkpoint=None if workdir is None else workdir / FINETUNE_CHECKPOINTS[stage],
            on_epoch=None if on_epoch is None else (lambda record, s=stage: on_epoch(s, record)),
        )
        fits.append(result)
        if budget.max_epochs < settings.max_epochs and result.stop_reason == "max_epochs":
            paused = True
            break
    model.load_state_dict(fits[-1].best_state)
    return FinetuneResult(model=model, fits=fits, transfer=report, frozen=frozen, paused=paused)
