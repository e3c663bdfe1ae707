"""Tests for study/train/_losses.py: hand-computed inpainting and soft Dice losses."""

from __future__ import annotations

import pytest
import torch

from study.errors import SpecError
from study.train._losses import inpainting_loss, soft_dice_loss

BIG = 30.0  # sigmoid(±30) is 1 or 0 to float32 precision: a "perfect" logit


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        # (1, 1, 2, 2): squared errors 1, 4, 0, 0 summed over pixels -> 5
        ([[[[1.0, 2.0], [0.0, 0.0]]]], [[[[0.0, 0.0], [0.0, 0.0]]]], 5.0),
        # (2, 1, 1, 3): per image sums 3 and 12 -> mean over batch 7.5
        ([[[[1.0, 1.0, 1.0]]], [[[2.0, 2.0, 2.0]]]], [[[[0.0] * 3]], [[[0.0] * 3]]], 7.5),
        # (1, 2, 1, 1): per channel 9 and 1 -> mean over channels 5
        ([[[[3.0]], [[-1.0]]]], [[[[0.0]], [[0.0]]]], 5.0),
        # (1, 1, 1, 1): exact restoration
        ([[[[0.5]]]], [[[[0.5]]]], 0.0),
    ],
)
def test_inpainting_loss_sums_pixels_and_averages_batch_and_channels(pred, target, expected):
    loss = inpainting_loss(torch.tensor(pred), torch.tensor(target))
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected)


def test_inpainting_loss_grows_with_image_size():
    # Same per-pixel error, 4 times the pixels -> 4 times the loss (the paper's sum, kept on purpose).
    small = inpainting_loss(torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    large = inpainting_loss(torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    assert large.item() == pytest.approx(4 * small.item())


def test_losses_of_half_precision_inputs_do_not_overflow():
    # (1, 1, 300, 300): 90 000 pixels, past float16's largest value (65504) when summed.
    ones = torch.ones(1, 1, 300, 300, dtype=torch.float16)
    loss = inpainting_loss(2 * ones, 0 * ones)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(4 * 90_000)
    assert soft_dice_loss(30 * ones, ones.bool()).item() == pytest.approx(0.0, abs=1e-6)


def test_inpainting_loss_refuses_broadcast():
    with pytest.raises(ValueError, match=r"pred shape \(2, 3, 4, 4\) differs from target shape \(2, 1, 4, 4\)"):
        inpainting_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4))


def _logits(mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), torch.tensor(BIG), torch.tensor(-BIG))


def test_soft_dice_loss_of_hand_probabilities():
    # (1, 2, 1, 2). Class 0: p = (0.5, 0.5), t = (1, 0): dice = 2*0.5 / (1 + 1) = 0.5.
    # Class 1: p = (0.5, 0.5), t = (1, 1): dice = 2*1 / (1 + 2) = 2/3. Loss = 1 - (0.5 + 2/3) / 2.
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]])
    loss = soft_dice_loss(logits, target, eps=1e-12)
    assert loss.item() == pytest.approx(1 - (0.5 + 2 / 3) / 2, abs=1e-6)


def test_soft_dice_loss_pools_the_batch_rather_than_averaging_images():
    # (2, 1, 1, 4), one class. Image 0: 1 of 4 pixels, predicted wrongly. Image 1: 3 of 4, perfect.
    target = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]], [[[1.0, 1.0, 1.0, 0.0]]]])
    pred_mask = torch.tensor([[[[0.0, 1.0, 0.0, 0.0]]], [[[1.0, 1.0, 1.0, 0.0]]]])
    loss = soft_dice_loss(_logits(pred_mask), target, eps=1e-12).item()
    # Pooled: intersection 3, |P| + |T| = 4 + 4 -> dice 6/8 -> loss 0.25.
    assert loss == pytest.approx(0.25, abs=1e-6)
    # Averaging per-image Dice (0 and 1) would give loss 0.5: the two definitions differ.
    per_image_dice = [1 - soft_dice_loss(_logits(pred_mask[i : i + 1]), target[i : i + 1], eps=1e-12) for i in range(2)]
    per_image = 1 - torch.stack(per_image_dice).mean()
    assert per_image.item() == pytest.approx(0.5, abs=1e-6)


# (B, K, H, W), odd sizes
@pytest.mark.parametrize("shape", [(3, 4, 5, 7), (1, 1, 3, 3), (2, 2, 1, 9)])
def test_soft_dice_loss_is_zero_for_a_perfect_prediction(shape):
    target = torch.rand(shape, generator=torch.Generator().manual_seed(0)) > 0.5
    assert soft_dice_loss(_logits(target), target).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_dice_loss_of_an_absent_class_depends_on_its_predictions():
    # (1, 2, 2, 2): class 1 is absent from the batch. Predicting nothing for it costs nothing,
    # predicting it everywhere costs a full 1/2 (dice_1 ~ 0, averaged over 2 classes).
    target = torch.zeros(1, 2, 2, 2)
    target[:, 0] = 1
    quiet = _logits(target)
    loud = quiet.clone()
    loud[:, 1] = BIG
    assert soft_dice_loss(quiet, target).item() == pytest.approx(0.0, abs=1e-5)
    assert soft_dice_loss(loud, target).item() == pytest.approx(0.5, abs=1e-5)


def test_soft_dice_loss_gradient_reaches_every_logit():
    logits = torch.zeros(2, 3, 4, 5, requires_grad=True)  # (B, K, H, W)
    target = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(1)) > 0.5
    soft_dice_loss(logits, target).backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad != 0).all()
    # Descending the gradient moves each probability towards its target.
    assert (logits.grad[target] < 0).all() and (logits.grad[~target] > 0).all()


def test_soft_dice_loss_accepts_bool_targets():
    target = torch.tensor([[[[True, False]]]])
    assert soft_dice_loss(_logits(target), target).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan"), float("inf")])
def test_soft_dice_loss_refuses_bad_eps(eps):
    with pytest.raises(SpecError, match=r"soft_dice_loss eps=.* must be a finite number > 0"):
        soft_dice_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), eps=eps)


def test_soft_dice_loss_refuses_mismatched_classes():
    with pytest.raises(ValueError, match=r"logits shape \(1, 4, 2, 2\) differs from target shape \(1, 5, 2, 2\)"):
        soft_dice_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 5, 2, 2))
