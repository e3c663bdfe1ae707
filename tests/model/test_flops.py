from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from study.errors import SpecError
from study.model import UNet, UNetConfig, unet_macs


def test_hand_counted_two_level_net() -> None:
    config = UNetConfig(in_channels=1, out_channels=2, widths=(4, 8), groups=4)
    # enc_1 at 8x8: 64 * (1*4*9 + 4*4*9); bottleneck at 4x4: 16 * (4*8*9 + 8*8*9);
    # dec_1: up 16 * 8*4*2*2, block 64 * (8*4*9 + 4*4*9); head 64 * 4*2
    assert unet_macs(config, 8, 8) == 11520 + 13824 + 2048 + 27648 + 512


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(in_channels=1, out_channels=4, widths=(8, 16, 32, 64), groups=8),
        UNetConfig(
            in_channels=3,
            out_channels=3,
            widths=(4, 8, 16),
            groups=4,
            block="conv_relu_norm",
            up_kernel=3,
            head_kernel=3,
        ),
    ],
)
def test_matches_torch_flop_counter(config: UNetConfig) -> None:
    model = UNet(config)
    x = torch.randn(2, config.in_channels, 32, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert counter.get_total_flops() == 2 * 2 * unet_macs(config, 32, 16)  # batch 2, 2 FLOPs per MAC


def test_paper_scale_cost() -> None:
    # 5 levels, 32-512, one 512 x 512 slice: about 96 GFLOP forward
    assert 2 * unet_macs(UNetConfig(), 512, 512) / 1e9 == pytest.approx(96.318, abs=1e-3)


def test_refuses_a_size_the_net_cannot_take() -> None:
    with pytest.raises(SpecError, match="not divisible"):
        unet_macs(UNetConfig(), 500, 512)


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(in_channels=1, out_channels=4, widths=(8, 16, 32, 64), groups=8),
        UNetConfig(),
        UNetConfig.for_architecture(
            "authors", inpainting=True, in_channels=3, out_channels=3, widths=(4, 8, 16), groups=4
        ),
        UNetConfig.for_architecture(
            "authors",
            inpainting=False,
            in_channels=1,
            out_channels=4,
            widths=(8, 16, 32),
            groups=4,
            norm_running_stats=True,
        ),
        UNetConfig(in_channels=1, out_channels=1, widths=(4, 8), groups=2, norm_running_stats=True),
    ],
)
def test_state_size_counts_every_tensor_of_the_state_dict(config: UNetConfig) -> None:
    from study.model import unet_state_size

    state = UNet(config).state_dict()
    assert unet_state_size(config) == (sum(v.numel() for v in state.values()), len(state))
