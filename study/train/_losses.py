"""Training losses: inpainting L2 and batch-pooled soft Dice (docs/science.md §4).

Both follow the authors' Keras code (C), which the paper summarises as "L2 norm loss for inpainting
and Dice loss, aggregated over mini-batches per segmentation class, for segmentation" (P §2.3).
"""

from __future__ import annotations

import math

import torch

from study.errors import SpecError

DICE_EPS = 1e-5


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    # Sums over a 9 x 512 x 512 batch overflow float16 (max 65504); under autocast the network's
    # outputs arrive in half precision, so the reductions run in float32 (float64 stays float64).
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], layout: str) -> None:
    # A silent broadcast of (B, C, H, W) against (B, 1, H, W) would train on the wrong loss; refuse.
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} shape {tuple(a.shape)} differs from {names[1]} shape {tuple(b.shape)}; both must be {layout}"
        )
    if a.ndim < 3:
        raise ValueError(f"{names[0]} has shape {tuple(a.shape)}; expected {layout}")


def inpainting_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over all pixels, averaged over batch and channels (docs/science.md §4, C).

    ``pred`` is the restored image, ``target`` the uncorrupted one, both (B, C, H, W) in the
    z-scored intensity units the model sees (no activation on the inpainting head).

    The sum over pixels (not a mean) is the reference definition, so the loss grows with H·W: a
    512 × 512 image gives 64 times the loss of a 64 × 64 one at the same per-pixel error. Anything
    that compares loss values across image sizes must allow for that; early stopping does so with a
    relative min delta (:class:`~study.train._early_stopping.EarlyStopping`).

    Returns a scalar tensor, float32 for half-precision inputs.
    """
    _check_pair(pred, target, ("pred", "target"), "(B, C, H, W)")
    spatial = tuple(range(2, pred.ndim))
    error = _at_least_float32(pred) - _at_least_float32(target)
    return error.pow(2).sum(dim=spatial).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = DICE_EPS) -> torch.Tensor:
    """1 − mean over classes of the soft Dice, with all pixels of the batch pooled per class.

    ``logits``: (B, K, H, W) raw scores of the K sigmoid channels (no background channel,
    docs/science.md §3); the sigmoid is applied here. ``target``: (B, K, H, W) binary masks
    (bool or 0/1 float).

    For class k, with p = sigmoid(logits) and the sums running over batch and pixels together::

        dice_k = (2 Σ p·t + eps) / (Σ p + Σ t + eps)
        loss   = 1 − mean_k dice_k

    Pooling over the batch (the paper's "aggregated over mini-batches per segmentation class") is
    not the mean of per-image Dice: a slice with only a few pixels of a class weighs as little as
    those pixels, instead of as much as a whole slice.

    ``eps`` (default 1e-5) smooths numerator and denominator alike. It keeps the loss finite when
    a class is absent from the whole batch: then dice_k = eps / (Σ p + eps), which is ≈ 1 only when
    the network predicts (almost) nothing for that class and falls towards 0 as Σ p grows past
    eps, so an absent class pulls its probabilities down rather than being skipped. When the class
    is present (Σ t ≥ 1), eps shifts dice_k by at most eps.

    Returns a scalar tensor (float32 for half-precision inputs); gradients flow to ``logits``.
    """
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise SpecError(f"soft_dice_loss eps={eps!r} must be a finite number > 0")
    _check_pair(logits, target, ("logits", "target"), "(B, K, H, W)")
    probs = torch.sigmoid(_at_least_float32(logits))
    target = target.to(probs.dtype)
    pooled = (0, *range(2, logits.ndim))  # batch and every spatial axis: one sum per class
    intersection = (probs * target).sum(dim=pooled)
    denominator = probs.sum(dim=pooled) + target.sum(dim=pooled)
    dice = (2 * intersection + eps) / (denominator + eps)  # (K,)
    return 1 - dice.mean()
