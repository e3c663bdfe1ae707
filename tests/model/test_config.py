from __future__ import annotations

import pytest

from study.errors import SpecError
from study.model import PAPER_WIDTHS, UNetConfig


def test_defaults_are_the_paper_scale() -> None:
    config = UNetConfig()
    assert config.widths == PAPER_WIDTHS == (32, 64, 128, 256, 512)
    assert (config.levels, config.size_multiple, config.groups) == (5, 16, 16)


def test_widths_from_yaml_list_become_a_tuple() -> None:
    config = UNetConfig(widths=[8, 16, 32, 64], groups=8)  # type: ignore[arg-type]
    assert config.widths == (8, 16, 32, 64)
    hash(config)  # frozen and hashable, usable as a cache key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # width 8 cannot hold 16 groups: refused, the valid choices are named
        (dict(widths=(8, 16, 32, 64)), r"widths\[0\] = 8 is not divisible by groups = 16.*\[1, 2, 4, 8\]"),
        (
            dict(widths=(24, 48), groups=16),
            r"widths\[0\] = 24 .*groups dividing all widths: \[1, 2, 3, 4, 6, 8, 12, 24\]",
        ),
        (dict(widths=(32,)), r"widths must have at least 2 levels"),
        (dict(widths=(32, 0)), r"widths\[1\] must be an integer >= 1, got 0"),
        (dict(in_channels=0), r"in_channels must be an integer >= 1, got 0"),
        (dict(out_channels=True), r"out_channels must be an integer >= 1, got True"),
        (dict(groups=2.0), r"groups must be an integer >= 1, got 2.0"),
        (dict(block="conv_bn_relu"), r"block must be one of \('conv_norm_relu', 'conv_relu_norm'\)"),
        (dict(up_kernel=4), r"up_kernel must be 2 or 3, got 4"),
        (dict(head_kernel=2), r"head_kernel must be 1 or 3, got 2"),
        (dict(ws_eps=0.0), r"ws_eps must be in \(0, 0.1\], got 0.0"),
    ],
)
def test_bad_config_is_refused_naming_field_and_value(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        UNetConfig(**kwargs)


@pytest.mark.parametrize(
    ("widths", "size", "ok"),
    [
        ((8, 16, 32, 64), (64, 48), True),  # multiples of 2^3
        ((8, 16, 32, 64), (64, 44), False),  # 44 / 8 is not whole
        ((32, 64, 128, 256, 512), (512, 512), True),
        ((32, 64, 128, 256, 512), (520, 512), False),  # 520 = 8 * 65, not a multiple of 16
    ],
)
def test_check_input_size(widths: tuple[int, ...], size: tuple[int, int], ok: bool) -> None:
    config = UNetConfig(widths=widths, groups=8)
    if ok:
        config.check_input_size(*size)
    else:
        with pytest.raises(SpecError, match=rf"\(H, W\) = \({size[0]}, {size[1]}\) is not divisible by"):
            config.check_input_size(*size)


def test_an_unknown_architecture_is_refused() -> None:
    with pytest.raises(SpecError, match=r"architecture must be one of \('default', 'authors'\), got 'keras'"):
        UNetConfig.for_architecture("keras", inpainting=True)  # type: ignore[arg-type]
