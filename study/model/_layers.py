"""Building blocks of the U-Net: a weight-standardised convolution, one level's convolutions and
one decoder level.

All tensors are (B, C, H, W). Weight standardisation (Qiao et al. 2019, "Micro-Batch Training with
Batch-Channel Normalization and Weight Standardization") is paired with GroupNorm in Dominic et al.
2023 (Sec. 2.3); neither depends on batch statistics, which suits their batch of 9 slices.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from study.model._config import UNetConfig


class _Standardize(torch.autograd.Function):
    """W -> (W - mean) / (std + eps) over dims (1, 2, 3), with a hand-written backward.

    ``torch.std_mean`` (Welford's algorithm) takes about 13 ms on a 512 x 512 x 3 x 3 weight on
    one core of the 2-core CPU this was tuned on, against 0.1 ms for a mean and 0.2 ms for a norm of
    the centred weight: two stable passes here. Autograd through the composite also runs about ten
    small backward kernels; the hand-written backward runs four. Together WS went from about 11 %
    of a paper-scale training step to a few percent (benchmarks/unet_vs_monai.py). ``torch.compile``
    traces this function and fuses it like any other.
    """

    @staticmethod
    def forward(ctx: Any, weight: Tensor, eps: float) -> Tensor:
        dims = (1, 2, 3)
        n = weight[0].numel()
        centred = weight - weight.mean(dims, keepdim=True)
        std = torch.linalg.vector_norm(centred, dim=dims, keepdim=True) / math.sqrt(n)  # population std
        inv = 1.0 / (std + eps)
        out = centred.mul_(inv)
        ctx.save_for_backward(out, std, inv)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        out, std, inv = ctx.saved_tensors
        # With c = W - mean, d = std + eps, out = c / d and d std / d c = c / (n std):
        #   dL/dW = (g - mean(g) - out * mean(g * out) * d / std) / d.
        # The clamp only matters for a constant channel (std = 0), where out = 0 and the term is 0.
        dims = (1, 2, 3)
        k = (grad * out).mean(dims, keepdim=True) / (std.clamp_min(torch.finfo(std.dtype).tiny) * inv)
        grad_weight = grad - grad.mean(dims, keepdim=True)
        grad_weight.addcmul_(out, k, value=-1.0)
        return grad_weight.mul_(inv), None


class WSConv2d(nn.Conv2d):
    """A 3x3 (by default) "same" convolution whose weight is standardised per output channel.

    In every forward pass the weight W of shape (C_out, C_in, k, k) is replaced by
    (W - mean) / (std + eps), mean and population std taken over (C_in, k, k) of each output
    channel, as the authors' Keras ``ConvStandardized2D`` does (Qiao et al.'s PyTorch code takes the
    unbiased std, larger by sqrt(n / (n - 1)): 6 % for a 1-channel input's n = 9, nil beyond). The stored
    parameter stays unstandardised, so optimiser and checkpoints see the raw weight, and the
    standardisation is differentiated through.

    The cost is a few passes over the weight, small next to the convolution over the activations
    (a 512 x 512 x 3 x 3 weight has 2.4 M elements; one 64 x 64 feature map of a batch of 9 at 512
    channels has 19 M). Under autocast the statistics are taken in the parameter's float32 and only
    the standardised weight is cast to the compute dtype by ``F.conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, eps: float = 1e-5) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.eps = eps

    def standardized_weight(self) -> Tensor:
        """The weight actually convolved: zero mean, unit std per output channel (up to eps)."""
        return _Standardize.apply(self.weight, self.eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding)


class RunningGroupNorm(nn.GroupNorm):
    """GroupNorm that also keeps running per-group statistics and normalises with them in ``eval()``.

    The authors' Keras ``GroupNormalization`` (MedSegPy, from keras-contrib): in training each
    sample is normalised with its own per-group mean and variance, exactly as ``nn.GroupNorm``, and
    the batch averages of those statistics update ``running_mean`` and ``running_var`` (one value
    per group; the variance made unbiased, n / (n - 1) over the group's C/G x H x W values) with
    ``new = (1 - momentum) * old + momentum * batch``; their Keras momentum 0.99 is ``momentum =
    0.01`` here. In ``eval()`` mode every sample is normalised with the running statistics.

    A frozen layer (weight without ``requires_grad``) leaves its statistics as they were: freezing a
    transferred group must freeze everything that came with it (``study.model.freeze``).
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, momentum: float = 0.01) -> None:
        super().__init__(num_groups, num_channels, eps)
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_groups))
        self.register_buffer("running_var", torch.ones(num_groups))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self._normalise_with_running_stats(x)
        if self.weight.requires_grad:
            with torch.no_grad():
                groups = x.detach().float().reshape(x.shape[0], self.num_groups, -1)  # (B, G, C/G * H * W)
                n = groups.shape[-1]
                var, mean = torch.var_mean(groups, dim=-1, correction=1 if n > 1 else 0)  # (B, G) each
                self.running_mean.lerp_(mean.mean(0), self.momentum)
                self.running_var.lerp_(var.mean(0), self.momentum)
        return super().forward(x)

    def _normalise_with_running_stats(self, x: Tensor) -> Tensor:
        per_group = x.shape[1] // self.num_groups
        mean = self.running_mean.repeat_interleave(per_group)  # (C,)
        scale = self.weight / torch.sqrt(self.running_var.repeat_interleave(per_group) + self.eps)
        shift = self.bias - mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def group_norm(channels: int, config: UNetConfig) -> nn.GroupNorm:
    """The level's GroupNorm: plain, or keeping running statistics (``config.norm_running_stats``)."""
    kind = RunningGroupNorm if config.norm_running_stats else nn.GroupNorm
    return kind(config.groups, channels, config.norm_eps)


def level_block(in_channels: int, out_channels: int, config: UNetConfig) -> nn.Sequential:
    """The two 3x3 convolutions of one level, (B, in_channels, H, W) -> (B, out_channels, H, W).

    Children are named ``conv1``, ``norm1``, ``conv2``, ``norm2`` so state-dict keys read
    ``enc_1.conv2.weight``. ReLUs are in place: the tensors they overwrite (a GroupNorm output, or a
    convolution output) are not needed by the backward pass of the layer before, and the saved
    memory matters at 512 x 512.
    """
    if config.block == "conv_norm_relu":
        layers = OrderedDict(
            conv1=WSConv2d(in_channels, out_channels, 3, config.ws_eps),
            norm1=group_norm(out_channels, config),
            relu1=nn.ReLU(inplace=True),
            conv2=WSConv2d(out_channels, out_channels, 3, config.ws_eps),
            norm2=group_norm(out_channels, config),
            relu2=nn.ReLU(inplace=True),
        )
    else:  # "conv_relu_norm", the authors' Keras block: WS on the last conv, one norm per level
        layers = OrderedDict(
            conv1=nn.Conv2d(in_channels, out_channels, 3, padding=1),
            relu1=nn.ReLU(inplace=True),
            conv2=WSConv2d(out_channels, out_channels, 3, config.ws_eps),
            relu2=nn.ReLU(inplace=True),
            norm2=group_norm(out_channels, config),
        )
    return nn.Sequential(layers)


class DecoderLevel(nn.Module):
    """Upsample, concatenate the encoder's skip, convolve.

    ``up`` is a stride-2 transposed convolution (B, C_deep, h, w) -> (B, C, 2h, 2w), linear as in the
    authors' code; its output is concatenated with the skip (B, C, 2h, 2w) to (B, 2C, 2h, 2w), and
    ``block`` (the level's two convolutions) brings it back to (B, C, 2h, 2w).
    """

    def __init__(self, deep_channels: int, channels: int, config: UNetConfig) -> None:
        super().__init__()
        k = config.up_kernel
        # padding and output_padding make the output exactly 2h x 2w for k = 2 and for k = 3.
        self.up = nn.ConvTranspose2d(deep_channels, channels, k, stride=2, padding=(k - 1) // 2, output_padding=k % 2)
        self.block = level_block(2 * channels, channels, config)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)  # (B, C, 2h, 2w)
        return self.block(torch.cat((x, skip), dim=1))  # (B, 2C, 2h, 2w) -> (B, C, 2h, 2w)
