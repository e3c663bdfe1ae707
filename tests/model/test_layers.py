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
    ref = F.conv2d(
        x,
        (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True, correction=0) + 1e-5),
        conv.bias,
        padding=1,
    )
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
    assert torch.autograd.gradcheck(
        lambda w: _Standardize.apply(w, 1e-3), (conv.weight.detach().clone().requires_grad_(),)
    )
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


def _authors(inpainting: bool, **fields) -> UNetConfig:
    return UNetConfig.for_architecture(
        "authors",
        inpainting=inpainting,
        in_channels=3,
        out_channels=3 if inpainting else 4,
        widths=(8, 16, 32),
        groups=4,
        **fields,
    )


@pytest.mark.parametrize("inpainting", [True, False])
def test_authors_architecture_standardises_only_the_last_conv_and_normalises_after_the_relu(inpainting: bool) -> None:
    from study.model import UNet

    model = UNet(_authors(inpainting), seed=0)
    blocks = [model.enc_1, model.enc_2, model.bottleneck, model.dec_2.block, model.dec_1.block]
    for block in blocks:
        assert [type(m).__name__ for m in block] == ["Conv2d", "ReLU", "WSConv2d", "ReLU", "GroupNorm"]
        assert not isinstance(block.conv1, WSConv2d) and isinstance(block.conv2, WSConv2d)
        assert block.conv1.kernel_size == block.conv2.kernel_size == (3, 3)
    standardised = sorted(n for n, m in model.named_modules() if isinstance(m, WSConv2d))
    assert standardised == sorted(f"{n}.conv2" for n in ("enc_1", "enc_2", "bottleneck", "dec_2.block", "dec_1.block"))
    for name in ("dec_2", "dec_1"):
        up = getattr(model, name).up
        assert isinstance(up, nn.ConvTranspose2d) and up.kernel_size == (3, 3) and up.stride == (2, 2)
    assert model.head.kernel_size == ((3, 3) if inpainting else (1, 1))  # their segmentation head is 1 x 1
    assert not isinstance(model.head, WSConv2d)
    assert model(torch.randn(2, 3, 16, 12)).shape == (2, model.config.out_channels, 16, 12)


def test_default_architecture_is_the_dataclass_default() -> None:
    default = UNetConfig.for_architecture(
        "default", inpainting=True, in_channels=1, out_channels=1, widths=(8, 16), groups=4
    )
    assert default == UNetConfig(in_channels=1, out_channels=1, widths=(8, 16), groups=4)
    assert (default.block, default.up_kernel, default.head_kernel, default.norm_running_stats) == (
        "conv_norm_relu",
        2,
        1,
        False,
    )


def test_running_group_norm_trains_as_group_norm_and_evaluates_with_its_running_statistics() -> None:
    from study.model import RunningGroupNorm

    torch.manual_seed(0)
    norm = RunningGroupNorm(2, 4, momentum=0.1)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5]))
        norm.bias.copy_(torch.tensor([0.0, 0.1, -0.2, 0.3]))
    x = torch.randn(3, 4, 5, 6) * 2 + 1
    torch.testing.assert_close(norm(x), F.group_norm(x, 2, norm.weight, norm.bias, 1e-5))
    groups = x.reshape(3, 2, -1)
    mean, var = groups.mean(-1).mean(0), groups.var(-1, correction=1).mean(0)  # per group, unbiased
    torch.testing.assert_close(norm.running_mean, 0.1 * mean)
    torch.testing.assert_close(norm.running_var, 0.9 * torch.ones(2) + 0.1 * var)

    norm.eval()
    y = norm(x)
    m, v = norm.running_mean.repeat_interleave(2), norm.running_var.repeat_interleave(2)
    expected = (x - m.view(1, 4, 1, 1)) / torch.sqrt(v.view(1, 4, 1, 1) + 1e-5) * norm.weight.view(
        1, 4, 1, 1
    ) + norm.bias.view(1, 4, 1, 1)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(norm(x[:1]), y[:1])  # one slice evaluates alike whatever else is in the batch


def test_a_frozen_running_group_norm_keeps_its_statistics() -> None:
    from study.model import RunningGroupNorm

    norm = RunningGroupNorm(2, 4)
    norm.requires_grad_(False)
    norm(torch.randn(2, 4, 3, 3) + 5)
    assert torch.equal(norm.running_mean, torch.zeros(2)) and torch.equal(norm.running_var, torch.ones(2))


def test_running_statistics_are_a_setting_and_state_of_the_level() -> None:
    from study.model import RunningGroupNorm, UNet

    plain, running = UNet(_authors(False)), UNet(_authors(False, norm_running_stats=True))
    assert not any(isinstance(m, RunningGroupNorm) for m in plain.modules())
    assert "enc_1.norm2.running_mean" not in plain.state_dict()
    assert {"enc_1.norm2.running_mean", "enc_1.norm2.running_var", "dec_1.block.norm2.running_var"} <= set(
        running.state_dict()
    )
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in running.named_parameters()]
