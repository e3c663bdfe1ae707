"""How big a trial is, and the training objects that size implies.

``profile: laptop`` (the built-in phantoms on a CPU) or ``paper`` (512 x 512, the paper's U-Net and
budgets, for GPUs); any field can be set on top. A scale is data: the training objects it implies are
made by :mod:`study.execution.configs`, so parsing a scale imports no torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from study.constants import DEFAULT_PAD_MODE, PAPER_IMAGE_SIZE, PAPER_WIDTHS, PadMode, check_pad_mode


class Strict(BaseModel):
    """Every spec model: unknown fields refused, frozen, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Scale(Strict):
    """How big a trial is. ``profile: laptop`` (the built-in phantoms on a CPU) or ``paper``
    (512 x 512, the paper's U-Net, budgets and learning rates, for GPUs); any field can be set on
    top. The scale also names the network variant and the pretraining's early-stopping rule, the
    settings every trial of a study shares."""

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
    pad_mode: PadMode = Field(
        DEFAULT_PAD_MODE,
        description="how slices whose H or W is not a multiple of 2 ** (levels - 1) are padded for "
        "the network (zero, the mean of a z-scored image, by default); outputs are cropped back",
    )

    # Learning rates for an lr axis the spec leaves out: the paper's 1e-3 (docs/science.md §4) suits
    # its 500-epoch runs; the laptop's runs of a few hundred steps need ten times more.
    pretrain_lr: float = Field(0.01, gt=0, lt=1, description="the pretraining lr when the spec's axis names none")
    finetune_lr: float = Field(0.01, gt=0, lt=1, description="the fine-tuning and baseline lr when the spec names none")
    pretrain_min_delta_mode: Literal["relative", "absolute"] = Field(
        "relative", description="pretraining early stopping: improve by min_delta x |best| (relative) or by min_delta"
    )
    pretrain_min_delta: float = Field(
        1e-3, ge=0, description="relative: a fraction in [0, 1); absolute mode defaults to the authors' 50"
    )
    architecture: Literal["default", "authors"] = Field("default", description="the U-Net variant (docs/science.md §3)")
    norm_running_stats: bool = Field(False, description="GroupNorm keeps running statistics for evaluation (authors)")
    # How a CPU computes: each changes the numbers (other trial ids), so neither is a speed field.
    # A CUDA trial always runs bf16 autocast in channels_last and ignores both.
    cpu_channels_last: bool = Field(
        False,
        description="channels_last tensors on a CPU: a faster oneDNN step, "
        "numbers that differ from NCHW's in the low digits (BENCHMARKS.md)",
    )
    cpu_bf16: bool = Field(
        False, description="bf16 autocast on a CPU: other Dice, and no faster without AMX (BENCHMARKS.md)"
    )

    # How fast, never what: a trial's numbers do not depend on these (on a CPU), so they stay out of
    # trial ids and pretraining keys (SPEED_FIELDS) and a study resumes when they change.
    # The laptop's slices are a few MB: read once, they save a laptop trial 11 % of its CPU time,
    # spent in lazy h5 reads (BENCHMARKS.md); a data set larger than the budget is read lazily.
    cache_gb: float = Field(
        0.5,
        ge=0,
        description="GiB of host RAM a trial may fill with its training slices, "
        "then its validation slices, each read once (0: lazy h5 reads every epoch)",
    )
    gpu_cache_gb: float = Field(
        0,
        ge=0,
        description="GiB of the trial's GPU memory the cache may take instead, "
        "so no batch crosses the bus (counted in the GPU memory check)",
    )
    data_workers: int = Field(0, ge=0, description="DataLoader workers of the lazy reads, when no cache fits")
    compile: bool = Field(False, description="torch.compile the model on CUDA (a CPU ignores it)")

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"profile": value}
        if isinstance(value, dict):
            value = {**_implied(value.get("profile"), value.get("pretrain_min_delta_mode")), **value}
        return value

    @field_validator("pad_mode", mode="before")
    @classmethod
    def _pad_mode(cls, value: Any) -> Any:
        return check_pad_mode(value)  # before the Literal's own check: the one message a pad mode gets

    @model_validator(mode="after")
    def _relative_margin(self) -> Scale:
        if self.pretrain_min_delta_mode == "relative" and self.pretrain_min_delta >= 1:
            raise ValueError(
                f"pretrain_min_delta={self.pretrain_min_delta:g} must lie in [0, 1) in relative mode "
                "(a fraction of the best loss); with pretrain_min_delta_mode absolute it is a loss"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # Trial ids and pretraining keys hash this dump. A setting added after studies were run is
        # left out while it holds what its profile implies, so those studies keep their ids and resume.
        out = handler(self)
        implied = {**_FIELD_DEFAULTS, **_implied(self.profile, self.pretrain_min_delta_mode)}
        return {k: v for k, v in out.items() if k in _HASHED_FROM_THE_START or v != implied.get(k, _NOTHING)}

    def hashed(self) -> dict[str, Any]:
        """What trial ids and pretraining keys hash: the dump without the SPEED_FIELDS."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in SPEED_FIELDS}


PAPER_SCALE = {
    "image_size": PAPER_IMAGE_SIZE,
    "widths": PAPER_WIDTHS,
    "groups": 16,
    "batch_size": 9,
    "pretrain_max_epochs": 500,
    "finetune_max_epochs": 500,
    "steps_per_epoch": None,
    "pretrain_lr": 1e-3,
    "finetune_lr": 1e-3,
    "cache_gb": 16.0,
    "gpu_cache_gb": 2.0,
    "data_workers": 2,
}
AUTHORS_PRETRAIN_MIN_DELTA = 50.0  # the authors' absolute margin on the summed inpainting loss at 512 x 512


def _implied(profile: Any, min_delta_mode: Any) -> dict[str, Any]:
    """What a profile (and the pretraining's min-delta mode) bring unless the scale names them."""
    out = dict(PAPER_SCALE) if profile == "paper" else {}
    if min_delta_mode == "absolute":
        out["pretrain_min_delta"] = AUTHORS_PRETRAIN_MIN_DELTA
    return out


_HASHED_FROM_THE_START = (
    "profile",
    "image_size",
    "widths",
    "groups",
    "batch_size",
    "pretrain_max_epochs",
    "finetune_max_epochs",
    "steps_per_epoch",
    "pretrain_patience",
    "finetune_patience",
    "n_masks",
)
SPEED_FIELDS = ("cache_gb", "gpu_cache_gb", "data_workers", "compile")
_FIELD_DEFAULTS = {name: f.default for name, f in Scale.model_fields.items()}
_NOTHING = object()
