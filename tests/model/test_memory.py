"""The memory of a training step, counted from the U-Net's layer shapes: by hand, and against the
tensors autograd really saves on a CPU."""

from __future__ import annotations

import pytest
import torch

from study.model import UNet, UNetConfig, activation_bytes, training_memory, unet_state_size
from study.model._memory import CPU_BF16, CUDA_BF16, FP32


def test_hand_counted_two_level_net() -> None:
    config = UNetConfig(in_channels=1, out_channels=2, widths=(4, 8), groups=4)
    # batch 2 at 8 x 8, float32. A 4-channel map at 8 x 8 is 512 elements, 2048 bytes; each GroupNorm
    # adds its mean and 1/std (2 x batch 2 x 4 groups x 4 bytes = 64); a weight-standardised conv its
    # standardised weight, std and 1/(std + eps) (4 bytes each).
    enc_1 = (
        1 * 4 * 9 * 4
        + 2 * 4 * 4  # conv1: the input is the batch, not counted; WS weight
        + 2048
        + 64
        + 2048  # norm1 input, statistics; relu1 output
        + 4 * 4 * 9 * 4
        + 2 * 4 * 4  # conv2: input is relu1's, already saved; WS weight
        + 2048
        + 64
        + 2048
    )  # norm2, relu2
    pool = 128 * 8  # input saved by relu2; int64 indices of the 4 x 4 output
    bottleneck = (
        128 * 4
        + 8 * 4 * 9 * 4
        + 2 * 8 * 4  # conv1 saves the pooled map; WS weight
        + 1024
        + 64
        + 1024
        + 8 * 8 * 9 * 4
        + 2 * 8 * 4
        + 1024
        + 64
        + 1024
    )
    dec_1 = (
        0  # the transposed conv's input is the bottleneck's relu output; its weight a parameter
        + 1024 * 4
        + 4 * 8 * 9 * 4
        + 2 * 4 * 4  # conv1 saves the concatenation (8 channels)
        + 2048
        + 64
        + 2048
        + 4 * 4 * 9 * 4
        + 2 * 4 * 4
        + 2048
        + 64
        + 2048
    )
    assert activation_bytes(config, 2, 8, 8) == enc_1 + pool + bottleneck + dec_1 == 32656  # head: input saved

    memory = training_memory(config, 2, 8, 8, FP32)
    params = unet_state_size(config).elements
    assert (memory.weights, memory.gradients, memory.adam) == (4 * params, 4 * params, 8 * params)
    # allowances: 4 float32 maps of 4 channels and 2 of the 2 outputs; the batch and its target
    assert memory.backward == 4 * 2 * 64 * (4 * 4 + 2 * 2) and memory.batch == 4 * 2 * 64 * (1 + 2)
    assert memory.total == sum(memory)


def _saved_bytes(config: UNetConfig, batch: int, height: int, width: int, bf16: bool) -> int:
    """Bytes of every distinct storage autograd saves in one forward pass on a CPU, parameters and
    the input batch left out."""
    model = UNet(config, seed=0)
    x = torch.randn(batch, config.in_channels, height, width)
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | {x.untyped_storage().data_ptr()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)
    return sum(n for ptr, n in seen.items() if ptr not in skip)


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(in_channels=1, out_channels=4, widths=(8, 16, 32), groups=4),
        UNetConfig.for_architecture(
            "authors", inpainting=True, in_channels=3, out_channels=3, widths=(8, 16, 32), groups=4
        ),
        UNetConfig(in_channels=3, out_channels=4, widths=(8, 16, 32, 64), groups=8, norm_running_stats=True),
    ],
)
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "cpu_bf16"])
def test_the_count_is_what_autograd_saves(config: UNetConfig, bf16: bool) -> None:
    counted = activation_bytes(config, 2, 32, 48, CPU_BF16 if bf16 else FP32)
    assert counted == _saved_bytes(config, 2, 32, 48, bf16)


def test_under_cuda_autocast_groupnorm_keeps_float32_copies() -> None:
    config = UNetConfig(in_channels=1, out_channels=4, widths=(8, 16, 32), groups=4)
    fp32, cuda = activation_bytes(config, 2, 32, 32, FP32), activation_bytes(config, 2, 32, 32, CUDA_BF16)
    assert activation_bytes(config, 2, 32, 32, CPU_BF16) < fp32 < cuda  # bf16 convs, float32 norms and their copies


def test_paper_scale_step() -> None:
    memory = training_memory(UNetConfig(in_channels=1, out_channels=4), 9, 512, 512)
    assert memory.activations / 2**30 == pytest.approx(6.00, abs=0.01)
    assert memory.total / 2**30 == pytest.approx(7.35, abs=0.01)
