from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from study.errors import SpecError
from study.model import UNet, UNetConfig, group_of, parameter_groups

TINY = UNetConfig(in_channels=1, out_channels=4, widths=(8, 16, 32), groups=4)


@pytest.mark.parametrize(
    ("config", "size"),
    [
        (TINY, (16, 24)),  # 3 levels: multiples of 4, non-square
        (UNetConfig(in_channels=3, out_channels=3, widths=(8, 16, 32, 64), groups=8), (32, 32)),  # CT inpainting
        (UNetConfig(in_channels=1, out_channels=1, widths=(4, 8), groups=2), (6, 10)),  # 2 levels, odd halves
        (
            UNetConfig(widths=(8, 16, 32, 64, 128), groups=8, block="conv_relu_norm", up_kernel=3, head_kernel=3),
            (48, 16),
        ),
    ],
)
def test_output_has_head_channels_and_input_size(config: UNetConfig, size: tuple[int, int]) -> None:
    model = UNet(config, seed=0)
    x = torch.randn(2, config.in_channels, *size)  # (B, C_in, H, W)
    y = model(x)
    assert y.shape == (2, config.out_channels, *size)  # (B, out_channels, H, W)
    assert torch.isfinite(y).all()


def test_submodules_are_named_by_level() -> None:
    model = UNet(UNetConfig(widths=(8, 16, 32, 64), groups=8))
    names = [name for name, _ in model.named_children() if name != "pool"]
    assert names == ["enc_1", "enc_2", "enc_3", "bottleneck", "dec_3", "dec_2", "dec_1", "head"]


def test_size_not_divisible_by_the_depth_is_refused() -> None:
    model = UNet(TINY)
    with pytest.raises(SpecError, match=r"\(H, W\) = \(16, 18\) is not divisible by 2 \*\* \(levels - 1\) = 4"):
        model(torch.randn(1, 1, 16, 18))


def test_wrong_channel_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expects \(B, 1, H, W\) input, got shape \(1, 3, 16, 16\)"):
        UNet(TINY)(torch.randn(1, 3, 16, 16))


def test_he_normal_init_and_zero_biases() -> None:
    model = UNet(UNetConfig(widths=(8, 16, 32, 64), groups=8), seed=3)
    conv = model.bottleneck.conv2  # 64 x 64 x 3 x 3: 36864 draws
    fan_in = 64 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    assert abs(conv.weight.mean().item()) < 0.05 * math.sqrt(2 / fan_in)
    up = model.dec_3.up  # transposed conv (64 -> 32, 2 x 2): fan_in = C_out * k * k, as in Keras
    assert up.weight.std().item() == pytest.approx(math.sqrt(2 / (32 * 4)), rel=0.05)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
        if isinstance(module, nn.GroupNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


def test_every_level_has_groupnorm_with_the_configured_groups() -> None:
    model = UNet(UNetConfig(widths=(8, 16, 32), groups=2))
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 2 * (3 + 2)  # two per encoder level, bottleneck and decoder level
    assert {m.num_groups for m in norms} == {2}


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = UNet(TINY, seed=7), UNet(TINY, seed=7), UNet(TINY, seed=8)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["enc_1.conv1.weight"], sc["enc_1.conv1.weight"])


def test_unseeded_model_follows_the_global_seed() -> None:
    torch.manual_seed(5)
    d = UNet(TINY)
    torch.manual_seed(5)
    e = UNet(TINY)
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters()))


def test_parameter_groups_partition_all_parameters() -> None:
    model = UNet(UNetConfig(widths=(8, 16, 32, 64), groups=8, out_channels=3))
    groups = parameter_groups(model)
    assert set(groups) == {"encoder", "decoder", "head"}
    every = [name for names in groups.values() for name in names]
    assert sorted(every) == sorted(name for name, _ in model.named_parameters())
    assert len(every) == len(set(every))  # no overlap
    assert groups["head"] == ["head.weight", "head.bias"]
    assert all(n.startswith(("enc_", "bottleneck.")) for n in groups["encoder"])
    assert "bottleneck.norm2.weight" in groups["encoder"]  # GroupNorm affine belongs to its level
    assert all(n.startswith("dec_") for n in groups["decoder"])
    assert "dec_3.up.weight" in groups["decoder"]


def test_group_of_rejects_foreign_names() -> None:
    with pytest.raises(ValueError, match="'final_conv.weight' is not a UNet parameter name"):
        group_of("final_conv.weight")


def test_channels_last_and_bf16_autocast_match_fp32() -> None:
    model = UNet(TINY, seed=0).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        ref = model(x)
        model_cl = UNet(TINY, seed=0).eval().to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).norm() / ref.norm() < 5e-2


def test_compiles_without_graph_breaks() -> None:
    torch._dynamo.reset()
    model = UNet(TINY, seed=0)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 1, 16, 16)
    out = compiled(x)
    torch.testing.assert_close(out, model(x))
    out.sum().backward()
    assert model.enc_1.conv1.weight.grad is not None
    assert parameter_groups(compiled) == parameter_groups(model)
