"""The U-Net's shape, checked once at construction.

Dominic et al. 2023 (Sec. 2.3, Fig. 2) use a 2D U-Net with filters 32-64-128-256-512, GroupNorm,
weight standardisation and He initialisation; the same code must also run at laptop scale, so the
widths (and with them the depth) are a setting. The defaults are the paper scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from study.constants import PAPER_WIDTHS
from study.errors import SpecError

Block = Literal["conv_norm_relu", "conv_relu_norm"]
BLOCKS: tuple[str, ...] = ("conv_norm_relu", "conv_relu_norm")
Architecture = Literal["default", "authors"]
ARCHITECTURES: tuple[str, ...] = ("default", "authors")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`study.model.UNet`.

    Args:
        in_channels: image channels C_in (1 for qDESS MRI, 3 windows for CT).
        out_channels: channels of the head: C_in for inpainting (a linear image), 4 for segmentation
            (logits of the 4 tissue classes, no background channel; the sigmoid belongs to the loss
            and the evaluation).
        widths: feature channels per level from full resolution down; the last entry is the
            bottleneck. ``len(widths)`` levels need H and W divisible by ``2 ** (len(widths) - 1)``.
        groups: GroupNorm groups (the paper: 16). Every width must be divisible by it; a width that
            is not is refused rather than silently normalised with fewer groups.
        block: order inside a level. ``"conv_norm_relu"`` (default): 2 x (WS conv 3x3 -> GroupNorm ->
            ReLU), the pairing of weight standardisation with GroupNorm of Qiao et al. 2019.
            ``"conv_relu_norm"``: the authors' Keras code (MedSegPy ``ContextUNet``): conv 3x3 ->
            ReLU -> WS conv 3x3 -> ReLU -> GroupNorm, one norm per level and WS on the second conv.
        up_kernel: kernel of the stride-2 transposed convolution, 2 (default) or 3 (authors' code).
        head_kernel: kernel of the final convolution, 1 (default) or 3 (authors' inpainting head).
        ws_eps: added to the per-output-channel standard deviation in weight standardisation.
        norm_eps: GroupNorm epsilon.
        norm_running_stats: GroupNorm also keeps running averages of its per-group mean and
            variance while training and normalises with them in ``eval()`` mode, as the authors'
            Keras ``GroupNormalization`` does (:class:`study.model._layers.RunningGroupNorm`).
            Off by default: plain GroupNorm gives the same output for a slice in training and
            evaluation, whatever else is in the batch.
    """

    in_channels: int = 1
    out_channels: int = 4
    widths: tuple[int, ...] = PAPER_WIDTHS
    groups: int = 16
    block: Block = "conv_norm_relu"
    up_kernel: int = 2
    head_kernel: int = 1
    ws_eps: float = 1e-5
    norm_eps: float = 1e-5
    norm_running_stats: bool = False

    @classmethod
    def for_architecture(cls, architecture: Architecture, *, inpainting: bool, **fields: object) -> UNetConfig:
        """The config of a named architecture (docs/science.md §3): ``"default"`` is the dataclass
        default; ``"authors"`` is the authors' Keras U-Net: conv -> ReLU -> WS conv -> ReLU ->
        GroupNorm per level, 3 x 3 transposed convolutions, and a 3 x 3 head for inpainting (their
        segmentation head stays 1 x 1). ``fields`` are the remaining UNetConfig fields."""
        if architecture == "authors":
            fields = {"block": "conv_relu_norm", "up_kernel": 3, "head_kernel": 3 if inpainting else 1, **fields}
        elif architecture != "default":
            raise SpecError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        return cls(**fields)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        # Accept a list from YAML but store a tuple, so the config stays hashable and frozen.
        object.__setattr__(self, "widths", tuple(self.widths))
        _positive_int("in_channels", self.in_channels)
        _positive_int("out_channels", self.out_channels)
        _positive_int("groups", self.groups)
        if len(self.widths) < 2:
            raise SpecError(
                f"UNetConfig.widths must have at least 2 levels (one down level and the "
                f"bottleneck), got {self.widths!r}"
            )
        for i, width in enumerate(self.widths):
            _positive_int(f"widths[{i}]", width)
            if width % self.groups:
                common = math.gcd(*self.widths)
                divisors = [g for g in range(1, common + 1) if common % g == 0]
                raise SpecError(
                    f"UNetConfig.widths[{i}] = {width} is not divisible by groups = {self.groups}; "
                    f"GroupNorm needs every width to be a multiple of groups (groups dividing all "
                    f"widths: {divisors})"
                )
        if self.block not in BLOCKS:
            raise SpecError(f"UNetConfig.block must be one of {BLOCKS}, got {self.block!r}")
        if self.up_kernel not in (2, 3):
            raise SpecError(f"UNetConfig.up_kernel must be 2 or 3, got {self.up_kernel!r}")
        if self.head_kernel not in (1, 3):
            raise SpecError(f"UNetConfig.head_kernel must be 1 or 3, got {self.head_kernel!r}")
        if not isinstance(self.norm_running_stats, bool):
            raise SpecError(f"UNetConfig.norm_running_stats must be true or false, got {self.norm_running_stats!r}")
        for name in ("ws_eps", "norm_eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value <= 1e-1):
                raise SpecError(f"UNetConfig.{name} must be in (0, 0.1], got {value!r}")

    @property
    def levels(self) -> int:
        """Number of resolution levels, the bottleneck included."""
        return len(self.widths)

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this: each of the ``levels - 1`` poolings halves them."""
        return 2 ** (self.levels - 1)

    def check_input_size(self, height: int, width: int) -> None:
        """Refuse an image size the pooling cannot halve exactly down to the bottleneck.

        Cropping or padding is the data pipeline's choice (it knows what the border means), so the
        model does not pad silently; call this when a study is specified to fail before training.
        """
        m = self.size_multiple
        if height % m or width % m or height <= 0 or width <= 0:
            raise SpecError(
                f"image size (H, W) = ({height}, {width}) is not divisible by 2 ** (levels - 1) = {m} "
                f"for {self.levels} levels (widths {self.widths}); crop or pad the images to a "
                f"multiple of {m}, or use fewer levels"
            )


def _positive_int(name: str, value: object) -> None:
    # bool is an int subclass; True as a channel count is a YAML slip, not a 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"UNetConfig.{name} must be an integer >= 1, got {value!r}")
