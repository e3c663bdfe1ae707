from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from study.model import UNetConfig, WSConv2d
from study.model._layers import DecoderLevel, _Standardize, level_block


def test_standardized_weight_has_zero_mean_unit_std_per_output_channel() -> None:
    torch.manual_seed(0)
    conv = WSConv2d(5, 7)
    with torch.no_grad():  # an off-centre, badly scaled raw weight
        conv.weight.mul_(13.0).add_(torch.arange(7.0).view(7, 1, 1, 1))
    w = conv.standardized_weight().detach()
    assert w.shape == (7, 5, 3, 3)
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.zeros(7), atol=1e-6, rtol=0)
    torch.testing.assert_close(w.std(dim=(1, 2, 3), correction=0), torch.ones(7), atol=1e-4, rtol=0)


def test_ws_conv_convolves_the_standardized_weight_and_trains_the_raw_one() -> None:
    torch.manual_seed(0)
    conv = WSConv2d(3, 4)
    x = torch.randn(2, 3, 9, 11)  # odd sizes: "same" padding keeps them
    y = conv(x)
    assert y.shape == (2, 4, 9, 11)
    w = conv.weight
    ref = F.conv2d(x, (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True, correction=0) + 1e-5), conv.bias, padding=1)
    torch.testing.assert_close(y, ref)
    y.square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    # The output is invariant to the raw weight's per-channel scale and offset, so the gradient
    # is orthogonal to both: it sums to zero per output channel.
    g = conv.weight.grad
    assert (g.sum((1, 2, 3)).abs() < 1e-5 * g.abs().sum((1, 2, 3))).all()


def test_default_block_is_ws_conv_groupnorm_relu_twice() -> None:
    block = level_block(3, 16, UNetConfig(widths=(16, 32), groups=4))
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["WSConv2d", "GroupNorm", "ReLU", "WSConv2d", "GroupNorm", "ReLU"]
    assert [m.num_groups for m in block if isinstance(m, nn.GroupNorm)] == [4, 4]
    assert all(m.kernel_size == (3, 3) for m in block if isinstance(m, nn.Conv2d))


def test_reference_block_follows_the_authors_keras_order() -> None:
    block = level_block(3, 16, UNetConfig(widths=(16, 32), groups=4, block="conv_relu_norm"))
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["Conv2d", "ReLU", "WSConv2d", "ReLU", "GroupNorm"]
    assert dict(block.named_children()).keys() >= {"conv1", "conv2", "norm2"}


@pytest.mark.parametrize("up_kernel", [2, 3])
def test_decoder_level_doubles_size_and_concatenates_the_skip(up_kernel: int) -> None:
    config = UNetConfig(widths=(8, 16), groups=4, up_kernel=up_kernel)
    level = DecoderLevel(16, 8, config)
    deep, skip = torch.randn(2, 16, 5, 7), torch.randn(2, 8, 10, 14)  # (B, C_deep, h, w), (B, C, 2h, 2w)
    assert level(deep, skip).shape == (2, 8, 10, 14)
    assert level.up.kernel_size == (up_kernel, up_kernel)
    assert level.block.conv1.in_channels == 16  # up output and skip, concatenated


def test_hand_written_backward_matches_autograd_of_the_formula() -> None:
    torch.manual_seed(0)
    conv = WSConv2d(6, 5, eps=1e-3).double()
    assert torch.autograd.gradcheck(lambda w: _Standardize.apply(w, 1e-3), (conv.weight.detach().clone().requires_grad_(),))
    w = conv.weight.detach().clone().requires_grad_()
    ref = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True, correction=0) + 1e-3)
    g = torch.randn_like(ref)
    (ref_grad,) = torch.autograd.grad(ref, w, g)
    out = conv.standardized_weight()
    torch.testing.assert_close(out, ref)
    (grad,) = torch.autograd.grad(out, conv.weight, g)
    torch.testing.assert_close(grad, ref_grad)


def test_standardisation_works_on_a_channels_last_weight() -> None:
    conv = WSConv2d(4, 8).to(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    w = conv.standardized_weight()
    torch.testing.assert_close(w.mean((1, 2, 3)), torch.zeros(8), atol=1e-6, rtol=0)
    w.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.shape == conv.weight.shape
