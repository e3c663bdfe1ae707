"""Network-input preprocessing (Dominic et al. 2023, section 2.1; the authors' code).

MRI: root-sum-of-squares of the two qDESS echoes, z-scored per volume.
CT: raw HU clipped into three windows, stacked as channels, z-scored per slice and channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from study.errors import SpecError

# (width, level) in HU. The paper prints the bone window as 1800/40; the authors' code uses 400.
DEFAULT_CT_WINDOWS: tuple[tuple[float, float], ...] = ((400.0, 50.0), (1800.0, 400.0), (500.0, 50.0))
_EPS = 1e-6


def root_sum_of_squares(echo1: np.ndarray, echo2: np.ndarray) -> np.ndarray:
    """sqrt(echo1^2 + echo2^2), any equal shapes, float32."""
    e1 = echo1.astype(np.float32, copy=False)
    e2 = echo2.astype(np.float32, copy=False)
    return np.sqrt(e1 * e1 + e2 * e2)


def zscore(x: np.ndarray, mean: float | None = None, std: float | None = None) -> np.ndarray:
    """(x - mean) / std over the whole array (one volume); a constant array maps to zeros."""
    mean = float(x.mean(dtype=np.float64)) if mean is None else mean
    std = float(x.std(dtype=np.float64)) if std is None else std
    return ((x - mean) / max(std, _EPS)).astype(np.float32)


def mri_input(echo1: np.ndarray, echo2: np.ndarray) -> np.ndarray:
    """Echoes (S, H, W) -> network input (S, 1, H, W): RSS z-scored over the whole volume."""
    return zscore(root_sum_of_squares(echo1, echo2))[:, None]


def check_windows(windows: Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    """Validate CT windows given as (width, level) pairs in HU."""
    out = []
    for i, window in enumerate(windows):
        if len(window) != 2:
            raise SpecError(f"ct_windows[{i}]={list(window)!r} must be a (width, level) pair in HU")
        width, level = float(window[0]), float(window[1])
        if not width > 0:
            raise SpecError(f"ct_windows[{i}] width={width} must be > 0 HU")
        out.append((width, level))
    if not out:
        raise SpecError("ct_windows must name at least one (width, level) window")
    return tuple(out)


def ct_input(hu: np.ndarray, windows: Sequence[Sequence[float]] = DEFAULT_CT_WINDOWS) -> np.ndarray:
    """HU slices (S, H, W) -> network input (S, len(windows), H, W).

    Each window clips HU into [level - width/2, level + width/2]; every channel of every slice is
    then z-scored on its own (per slice and channel, as in the authors' code).
    """
    windows = check_windows(windows)
    hu = hu.astype(np.float32, copy=False)
    channels = [np.clip(hu, level - width / 2, level + width / 2) for width, level in windows]
    x = np.stack(channels, axis=1)  # (S, C, H, W)
    mean = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
    std = x.std(axis=(2, 3), keepdims=True, dtype=np.float64)
    return ((x - mean) / np.maximum(std, _EPS)).astype(np.float32)
