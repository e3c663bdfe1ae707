"""Memory of one training step of a UNet, counted from its layer shapes, before any GPU is touched.

Weights, their gradients and Adam's two moments are 4 bytes per parameter each (the state-dict
count of ``_flops.unet_state_size``). Activations are what autograd keeps for the backward pass,
found by walking the forward pass layer by layer with what each layer saves:

- a convolution (transposed or not) saves its input in the compute dtype (under bf16 autocast a
  bf16 copy, unless the input already is bf16), and its weight: the standardised weight, its std
  and 1 / (std + eps) for a weight-standardised one, plus a bf16 copy of the weight under autocast;
- GroupNorm saves its input in the dtype it computes in, and a mean and 1 / std per sample and group;
- an in-place ReLU saves its output; max-pooling its input and int64 indices per output pixel;
- concatenation saves nothing, and a tensor saved by two layers is counted once.

The dtypes are a policy. On CUDA, autocast runs convolutions in bf16 and GroupNorm in float32 (the
"autocast to float32" list), so a normalised activation is a float32 copy beside the bf16 output:
bf16 keeps *more* activation bytes than float32 here. The float32 walk and a policy with GroupNorm
in bf16 (what CPU autocast does) are checked against autograd's saved tensors on a CPU
(tests/model/test_memory.py); the CUDA policy is the same walk, its dtypes from the autocast op lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from study.model._config import UNetConfig
from study.model._flops import unet_state_size

FLOAT32, BF16 = 4, 2


class Policy(NamedTuple):
    """Bytes per element of what a convolution and what a GroupNorm computes in."""

    conv: int
    norm: int


FP32 = Policy(FLOAT32, FLOAT32)
CUDA_BF16 = Policy(BF16, FLOAT32)  # torch.autocast("cuda", torch.bfloat16)
CPU_BF16 = Policy(BF16, BF16)  # torch.autocast("cpu", torch.bfloat16): GroupNorm runs in bf16 too


@dataclass
class _Tensor:
    elements: int
    size: int  # bytes per element
    saved: bool = False


class _Walk:
    """The forward pass of one batch, adding up what autograd saves."""

    def __init__(self, config: UNetConfig, batch: int, policy: Policy) -> None:
        self.config, self.batch, self.policy = config, batch, policy
        self.saved = 0

    def save(self, t: _Tensor) -> None:
        if not t.saved:
            t.saved = True
            self.saved += t.elements * t.size

    def cast(self, t: _Tensor, size: int) -> _Tensor:
        return t if t.size == size else _Tensor(t.elements, size)

    def conv(self, x: _Tensor, c_in: int, c_out: int, k: int, out_pixels: int, standardised: bool) -> _Tensor:
        self.save(self.cast(x, self.policy.conv))
        weight = c_out * c_in * k * k
        if standardised:
            self.saved += weight * FLOAT32 + 2 * c_out * FLOAT32
        if self.policy.conv != FLOAT32:
            self.saved += weight * self.policy.conv
        return _Tensor(self.batch * c_out * out_pixels, self.policy.conv)

    def norm(self, x: _Tensor) -> _Tensor:
        self.save(self.cast(x, self.policy.norm))
        self.saved += 2 * self.batch * self.config.groups * FLOAT32
        return _Tensor(x.elements, self.policy.norm)

    def relu(self, x: _Tensor) -> _Tensor:
        self.save(x)
        return x

    def pool(self, x: _Tensor) -> _Tensor:
        self.save(x)
        self.saved += x.elements // 4 * 8
        return _Tensor(x.elements // 4, x.size)

    def level(self, x: _Tensor, c_in: int, c: int, pixels: int) -> _Tensor:
        if self.config.block == "conv_norm_relu":
            x = self.relu(self.norm(self.conv(x, c_in, c, 3, pixels, standardised=True)))
            return self.relu(self.norm(self.conv(x, c, c, 3, pixels, standardised=True)))
        x = self.relu(self.conv(x, c_in, c, 3, pixels, standardised=False))
        return self.norm(self.relu(self.conv(x, c, c, 3, pixels, standardised=True)))


def activation_bytes(config: UNetConfig, batch: int, height: int, width: int, policy: Policy = FP32) -> int:
    """Bytes autograd keeps for the backward pass of one forward pass of ``batch`` images, the input
    batch itself and the loss left out."""
    config.check_input_size(height, width)
    w, walk = config.widths, _Walk(config, batch, policy)
    x = _Tensor(batch * config.in_channels * height * width, FLOAT32, saved=True)  # the batch: not an activation
    skips = []
    for i in range(config.levels - 1):
        x = walk.level(
            x if i == 0 else walk.pool(x),
            config.in_channels if i == 0 else w[i - 1],
            w[i],
            (height >> i) * (width >> i),
        )
        skips.append(x)
    x = walk.level(walk.pool(x), w[-2], w[-1], (height >> (config.levels - 1)) * (width >> (config.levels - 1)))
    for i in range(config.levels - 1, 0, -1):
        pixels = (height >> (i - 1)) * (width >> (i - 1))
        up = walk.conv(x, w[i], w[i - 1], config.up_kernel, pixels, standardised=False)
        skip = skips[i - 1]
        joined = _Tensor(up.elements + skip.elements, max(up.size, skip.size))
        x = walk.level(joined, 2 * w[i - 1], w[i - 1], pixels)
    walk.conv(x, w[0], config.out_channels, config.head_kernel, height * width, standardised=False)
    return walk.saved


class TrainingMemory(NamedTuple):
    """Bytes one training step holds on its device, by what holds them."""

    weights: int
    gradients: int
    adam: int
    activations: int
    backward: int  # gradients of activations alive at once in the backward pass, and the loss's tensors
    batch: int

    @property
    def total(self) -> int:
        return sum(self)


def training_memory(
    config: UNetConfig, batch: int, height: int, width: int, policy: Policy = CUDA_BF16
) -> TrainingMemory:
    """What one training step of ``batch`` images of ``height`` x ``width`` holds.

    Beyond the counted activations: ``backward`` allows four float32 feature maps of the first
    level, at full resolution (the gradient of a level's output and of its input, GroupNorm's
    temporaries) and two float32 maps of the output for the loss; ``batch`` is the input images and
    a target as large as the output (the masks, or the uncorrupted images). Both are allowances, not
    counts.
    """
    params = unet_state_size(config).elements
    top = batch * height * width
    return TrainingMemory(
        weights=FLOAT32 * params,
        gradients=FLOAT32 * params,
        adam=2 * FLOAT32 * params,
        activations=activation_bytes(config, batch, height, width, policy),
        backward=FLOAT32 * top * (4 * config.widths[0] + 2 * config.out_channels),
        batch=FLOAT32 * top * (config.in_channels + config.out_channels),
    )
