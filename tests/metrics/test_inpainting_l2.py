"""Tests for study/metrics/_inpainting.py: the per-image L2 norm of the inpainting error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.metrics import inpainting_l2


def test_l2_of_a_hand_case():
    # (1, 1, 1, 2): error (3, 4) -> 5
    assert inpainting_l2(np.array([[[[3.0, 4.0]]]]), np.zeros((1, 1, 1, 2))) == pytest.approx([5.0])


def test_l2_matches_numpy_norm_per_image():
    rng = np.random.default_rng(0)
    restored = rng.normal(size=(3, 1, 7, 5))  # (B, C, H, W), odd sizes
    original = rng.normal(size=(3, 1, 7, 5))
    expected = [np.linalg.norm(restored[b] - original[b]) for b in range(3)]
    assert inpainting_l2(restored, original) == pytest.approx(expected)


def test_l2_of_multichannel_images_averages_per_channel_norms():
    # (1, 3, 1, 2): channel norms 5, 0 and 1 -> mean 2 (P: "computed per channel and averaged").
    restored = np.array([[[[3.0, 4.0]], [[0.0, 0.0]], [[1.0, 0.0]]]])
    assert inpainting_l2(restored, np.zeros_like(restored)) == pytest.approx([2.0])


def test_l2_accepts_tensors():
    restored = torch.ones(2, 3, 4, 4, requires_grad=True)  # (B, C, H, W)
    out = inpainting_l2(restored, torch.zeros(2, 3, 4, 4))
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    assert out == pytest.approx([4.0, 4.0])


def test_l2_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"restored shape \(2, 1, 4, 4\) differs from original shape \(2, 3, 4, 4\)"):
        inpainting_l2(np.zeros((2, 1, 4, 4)), np.zeros((2, 3, 4, 4)))


def test_l2_refuses_missing_batch_axis():
    with pytest.raises(ValueError, match=r"images have shape \(1, 4, 4\); expected \(B, C, H, W\)"):
        inpainting_l2(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
