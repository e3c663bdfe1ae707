"""How big a trial is, and the training objects that size implies.

``profile: laptop`` (the built-in phantoms on a CPU) or ``paper`` (512 x 512, the paper's U-Net and
budgets, for GPUs); any field can be set on top. Parsing a scale imports no torch: only the methods
that hand out :class:`~study.train.TrainSettings`, the configs and the U-Net do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from study.constants import PAPER_IMAGE_SIZE, PAPER_WIDTHS

if TYPE_CHECKING:
    from study.model import UNetConfig
    from study.train import FinetuneConfig, PretrainConfig, TrainSettings


class Strict(BaseModel):
    """Every spec model: unknown fields refused, frozen, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Scale(Strict):
    """How big a trial is. ``profile: laptop`` (the built-in phantoms on a CPU) or ``paper``
    (512 x 512, the paper's U-Net and budgets, for GPUs); any field can be set on top."""

    profile: Literal["laptop", "paper"] = "laptop"
    image_size: int = Field(64, ge=32, le=512, description="built-in phantoms only; real data keep their size")
    widths: tuple[int, ...] = (16, 32, 64, 128)
    groups: int = Field(8, ge=1)
    batch_size: int = Field(9, ge=1)
    pretrain_max_epochs: int = Field(6, ge=1)
    finetune_max_epochs: int = Field(18, ge=1)
    steps_per_epoch: int | None = Field(12, ge=1, description="batches per epoch; null: one pass over the data")
    pretrain_patience: int = Field(4, ge=1)
    finetune_patience: int = Field(10, ge=1)
    n_masks: int = Field(100, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"profile": value}
        if isinstance(value, dict) and value.get("profile") == "paper":
            return {**PAPER_SCALE, **value}
        return value

    # What a scale implies for one run; torch is imported only by these, never by parsing a spec.

    def train_settings(self, *, stage: Literal["pretrain", "finetune"], device: str, seed: int) -> TrainSettings:
        from study.train import TrainSettings

        epochs = self.pretrain_max_epochs if stage == "pretrain" else self.finetune_max_epochs
        return TrainSettings(batch_size=self.batch_size, max_epochs=epochs, steps_per_epoch=self.steps_per_epoch,
                             device=device, seed=seed)

    def pretrain_config(self, *, task: str, sampler: str, patch_size: int, extent: float, lr: float) -> PretrainConfig:
        from study.train import PretrainConfig

        return PretrainConfig(task=task, sampler=sampler, patch_size=patch_size, extent=extent, lr=lr,
                              patience=self.pretrain_patience, n_masks=self.n_masks)

    def finetune_config(self, *, scope: str, schedule: str, lr: float, unfrozen_lr: float | None) -> FinetuneConfig:
        from study.model import TransferPlan
        from study.train import FinetuneConfig

        return FinetuneConfig(plan=TransferPlan(scope, schedule), lr=lr, unfrozen_lr=unfrozen_lr,
                              patience=self.finetune_patience)

    def unet_config(self, *, in_channels: int, out_channels: int) -> UNetConfig:
        from study.model import UNetConfig

        return UNetConfig(in_channels=in_channels, out_channels=out_channels, widths=tuple(self.widths),
                          groups=self.groups)


PAPER_SCALE = {
    "image_size": PAPER_IMAGE_SIZE, "widths": PAPER_WIDTHS, "groups": 16, "batch_size": 9,
    "pretrain_max_epochs": 500, "finetune_max_epochs": 500, "steps_per_epoch": None,
}
