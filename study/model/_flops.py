"""Arithmetic cost of a UNet forward pass, counted from the config.

Used to report how much of an accelerator's matrix throughput a training run reaches. Only
convolutions and transposed convolutions are counted (multiply-accumulates of the weights with the
activations), the convention of ``torch.utils.flop_counter``; GroupNorm, ReLU, pooling,
concatenation and weight standardisation are elementwise and add well under 1 %.

The size of a model's state dict is counted here too, so a study can say how much disk its weights
and checkpoints take before it builds a single model.
"""

from __future__ import annotations

from typing import NamedTuple

from study.model._config import UNetConfig


def unet_macs(config: UNetConfig, height: int, width: int) -> int:
    """Multiply-accumulates of one forward pass for one (C_in, height, width) image.

    FLOPs are twice this; a training step (forward, gradient of activations, gradient of weights)
    costs about three times the forward pass.
    """
    config.check_input_size(height, width)
    w = config.widths
    macs = 0

    def conv(c_in: int, c_out: int, k: int, pixels: int) -> int:
        return pixels * c_in * c_out * k * k

    for i in range(config.levels):  # encoder levels and the bottleneck
        pixels = (height >> i) * (width >> i)
        c_in = config.in_channels if i == 0 else w[i - 1]
        macs += conv(c_in, w[i], 3, pixels) + conv(w[i], w[i], 3, pixels)
    for i in range(1, config.levels):  # decoder level i, at the resolution of encoder level i
        pixels = (height >> (i - 1)) * (width >> (i - 1))
        # A stride-2 transposed convolution applies its whole k x k kernel at every input pixel.
        macs += conv(w[i], w[i - 1], config.up_kernel, pixels // 4)
        macs += conv(2 * w[i - 1], w[i - 1], 3, pixels) + conv(w[i - 1], w[i - 1], 3, pixels)
    macs += conv(w[0], config.out_channels, config.head_kernel, height * width)
    return macs


class StateSize(NamedTuple):
    elements: int  # parameters, and the running statistics of a ``norm_running_stats`` model
    tensors: int


def unet_state_size(config: UNetConfig) -> StateSize:
    """Elements and tensors of a UNet's state dict; in float32 a weights file holds 4 bytes per
    element and a few hundred bytes of index per tensor."""
    w, g = config.widths, config.groups
    norms = 1 if config.block == "conv_relu_norm" else 2
    per_norm = (2, 2 * g) if config.norm_running_stats else (0, 0)  # (tensors, elements) of the statistics

    def block(c_in: int, c: int) -> StateSize:
        return StateSize(
            c_in * c * 9 + c + c * c * 9 + c + norms * (2 * c + per_norm[1]), 4 + norms * (2 + per_norm[0])
        )

    parts = [block(config.in_channels if i == 0 else w[i - 1], w[i]) for i in range(config.levels)]
    for i in range(1, config.levels):
        parts += [StateSize(w[i] * w[i - 1] * config.up_kernel**2 + w[i - 1], 2), block(2 * w[i - 1], w[i - 1])]
    parts.append(StateSize(w[0] * config.out_channels * config.head_kernel**2 + config.out_channels, 2))
    return StateSize(sum(p.elements for p in parts), sum(p.tensors for p in parts))
