"""Slices of any size: padded for the U-Net, every loss and metric on the slice's own grid.

The geometry is checked against hand arithmetic, what the network sees against numpy's own
``np.pad``, and the evaluation against Dice, areas and L2 norms computed by hand on the original
grid, with models whose outputs are known in advance.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from study.data import DatasetWriter, Split, open_dataset
from study.data.padding import NetworkPadding
from study.design.spec_loading import validate
from study.errors import SpecError
from study.model import UNet, UNetConfig
from study.train import TrainSettings, evaluate_inpainting, evaluate_segmentation
from study.train._padding import network_forward

CLASSES = ("muscle", "imat", "vat", "sat")
THRESHOLDS = (-0.5, 0.0, 0.5, 1.0)  # a negative one predicts the zero padding as foreground
SPACING = (3.0, 0.7, 0.8)


@pytest.mark.parametrize(
    "size, levels, padded, pads",
    [
        ((197, 233), 4, (200, 240), (1, 2, 3, 4)),  # 3 rows and 7 columns, the odd pixel after
        ((197, 233), 5, (208, 240), (5, 6, 3, 4)),
        ((61, 90), 4, (64, 96), (1, 2, 3, 3)),
        ((64, 64), 4, (64, 64), (0, 0, 0, 0)),
        ((512, 512), 5, (512, 512), (0, 0, 0, 0)),
        ((5, 9), 2, (6, 10), (0, 1, 0, 1)),
    ],
)
def test_padding_reaches_the_next_multiple_split_evenly(size, levels, padded, pads) -> None:
    geometry = NetworkPadding(*size, levels)
    assert geometry.padded == padded and geometry.pads == pads
    assert geometry.needed == (padded != size)


def test_the_description_names_sizes_depth_and_mode() -> None:
    assert (
        NetworkPadding(197, 233, 4).describe("constant")
        == "197 x 233 px padded to 200 x 240 for a U-Net of 4 levels (constant)"
    )
    assert NetworkPadding(64, 64, 4).describe("reflect") == "64 x 64 px, no padding for a U-Net of 4 levels"


def test_reflection_needs_more_pixels_than_it_adds() -> None:
    NetworkPadding(61, 90, 4).check("reflect")
    NetworkPadding(3, 90, 4).check("constant")
    with pytest.raises(SpecError, match=r"scale.pad_mode=reflect: 3 x 90 px is too small"):
        NetworkPadding(3, 90, 4).check("reflect")  # 5 rows to add: 2 above, 3 below a 3-row slice


def test_an_unknown_pad_mode_is_refused_with_one_message_in_the_spec_and_the_training_settings() -> None:
    message = re.escape("'reflct' is not one of constant, reflect, replicate; did you mean 'reflect'?")
    with pytest.raises(SpecError, match=rf"^spec: scale\.pad_mode: {message} \(got 'reflct'\)$"):
        validate({"name": "p", "datasets": ["mri"], "scale": {"pad_mode": "reflct"}})
    with pytest.raises(SpecError, match=rf"^pad_mode: {message}$"):
        TrainSettings(pad_mode="reflct")


def _seen_by(model: UNet) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    return seen


@pytest.mark.parametrize("mode, numpy_mode", [("constant", "constant"), ("reflect", "reflect"), ("replicate", "edge")])
def test_the_network_sees_the_slice_padded_and_answers_on_its_grid(mode: str, numpy_mode: str) -> None:
    model = UNet(UNetConfig(in_channels=1, out_channels=4, widths=(4, 8, 16, 32), groups=4), seed=0)
    seen = _seen_by(model)
    x = torch.randn(2, 1, 61, 90, generator=torch.Generator().manual_seed(0))
    out = network_forward(model, x, TrainSettings(pad_mode=mode))
    assert out.shape == (2, 4, 61, 90)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 2), (3, 3)), mode=numpy_mode)
    np.testing.assert_array_equal(seen[0].numpy(), expected)


def test_a_slice_that_needs_no_padding_takes_the_very_same_path() -> None:
    model = UNet(UNetConfig(in_channels=1, out_channels=4, widths=(4, 8, 16, 32), groups=4), seed=0)
    seen = _seen_by(model)
    x = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    out = network_forward(model, x, TrainSettings())
    assert seen[0] is x  # no copy, no pad: the built-in phantoms' numbers cannot change
    assert torch.equal(out, model(x))


class KnownSegmentation(UNet):
    """Logits ``x - THRESHOLDS[k]`` on the first channel: the prediction of each class is known
    without training, and it needs the U-Net's input size (``_check_input``), as a real one does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return torch.cat([x[:, :1] - t for t in THRESHOLDS], dim=1)


class ConstantRestoration(UNet):
    """Restores every pixel, padded or not, as 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return torch.ones_like(x)


def _ct_slices(out: Path) -> Path:
    """Five one-slice CT cases of 61 x 90 px: image channels, labels, raw HU."""
    rng = np.random.default_rng(3)
    with DatasetWriter(out, "odd", "ct", CLASSES, 3, {"ct_windows": []}) as writer:
        for i in range(5):
            image = rng.normal(0, 1, size=(1, 3, 61, 90)).astype(np.float32)
            labels = rng.integers(0, 5, size=(1, 61, 90)).astype(np.uint8)
            hu = rng.normal(0, 100, size=(1, 61, 90)).astype(np.float32)
            writer.add_scan(f"c{i}", f"p{i}", image, labels, {"hu": hu}, SPACING)
        return writer.finish(Split(train=("c0", "c1"), val=("c2",), test=("c3", "c4")))


def test_dice_and_areas_are_counted_on_the_original_grid(tmp_path: Path) -> None:
    dataset = open_dataset(_ct_slices(tmp_path / "odd"))
    model = KnownSegmentation(UNetConfig(in_channels=3, out_channels=4, widths=(4, 8, 16, 32), groups=4))
    seen = _seen_by(model)
    table = evaluate_segmentation(model, dataset, ["c3", "c4"], TrainSettings(batch_size=1))
    assert {tuple(x.shape[-2:]) for x in seen} == {(64, 96)}
    for case in ("c3", "c4"):
        image = dataset.read_image(case)[0, 0]  # (61, 90)
        truth = dataset.read_labels(case)[0]
        for k, (name, threshold) in enumerate(zip(CLASSES, THRESHOLDS)):
            pred, true = image > threshold, truth == k + 1
            row = table[(table["case_id"] == case) & (table["class"] == name)].iloc[0]
            assert row["dice"] == pytest.approx(2 * (pred & true).sum() / (pred.sum() + true.sum()), abs=1e-12)
            assert row["area_cm2_pred"] == pytest.approx(pred.sum() * 0.7 * 0.8 / 100, rel=1e-12)
            assert row["area_cm2_true"] == pytest.approx(true.sum() * 0.7 * 0.8 / 100, rel=1e-12)


def test_inpainting_l2_is_counted_on_the_original_grid(tmp_path: Path) -> None:
    dataset = open_dataset(_ct_slices(tmp_path / "odd"))
    model = ConstantRestoration(UNetConfig(in_channels=3, out_channels=3, widths=(4, 8, 16, 32), groups=4))
    table = evaluate_inpainting(model, lambda x, _g: x, dataset, ["c3", "c4"], TrainSettings(), seed=0)
    for case in ("c3", "c4"):
        image = dataset.read_image(case)[0].astype(np.float64)  # (3, 61, 90)
        per_channel = np.sqrt(((1.0 - image) ** 2).sum(axis=(1, 2)))
        assert table[table["case_id"] == case]["l2"].item() == pytest.approx(per_channel.mean(), rel=1e-9)
