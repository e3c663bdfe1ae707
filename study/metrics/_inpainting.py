"""Inpainting quality: L2 norm of the inpainted image error (P Table 2, docs/science.md §5)."""

from __future__ import annotations

from typing import Any

import numpy as np

from study.metrics._dice import to_numpy


def inpainting_l2(restored: Any, original: Any) -> np.ndarray:
    """Per-image L2 norm ‖restored − original‖₂, as float64 of shape (B,).

    ``restored``: (B, C, H, W) model outputs; ``original``: (B, C, H, W) uncorrupted images, both in
    the z-scored units the model is trained on (numpy or torch). The norm runs over every pixel of
    the image, corrupted or not, since the model outputs the whole image.

    For a multi-channel image (CT: three HU windows) the norm is taken per channel and then averaged
    over the channels, as the paper states: "the L2 norm value was computed per channel and averaged
    across all channels" (P §2.5.2). For C = 1 this is the plain image norm.

    Unlike :func:`~study.train._losses.inpainting_loss` (a squared sum) this is a norm, so it grows
    with √(H·W): compare values only between runs at the same image size.
    """
    restored = to_numpy(restored).astype(np.float64, copy=False)
    original = to_numpy(original).astype(np.float64, copy=False)
    if restored.shape != original.shape:
        raise ValueError(f"restored shape {restored.shape} differs from original shape {original.shape}")
    if restored.ndim != 4:
        raise ValueError(f"images have shape {restored.shape}; expected (B, C, H, W)")
    error = (restored - original).reshape(*restored.shape[:2], -1)
    per_channel = np.sqrt(np.square(error).sum(axis=2))  # (B, C)
    return per_channel.mean(axis=1)
