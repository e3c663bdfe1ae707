from __future__ import annotations

import numpy as np
import pytest

from study.data.preprocess import ct_input, mri_input, root_sum_of_squares
from study.errors import SpecError


def test_ct_windows_clip_to_width_and_level() -> None:
    hu = np.array([[[-1000.0, -150.0, 50.0, 250.0, 2000.0]]])  # (S=1, H=1, W=5)
    x = ct_input(hu, windows=[(400, 50)])
    clipped = np.array([-150.0, -150.0, 50.0, 250.0, 250.0])
    expected = (clipped - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(x[0, 0, 0], expected, rtol=1e-5)


def test_ct_default_windows_are_three_channels_zscored_per_slice_and_channel() -> None:
    rng = np.random.default_rng(0)
    hu = rng.normal(0, 300, size=(4, 16, 20))  # (S, H, W)
    x = ct_input(hu)
    assert x.shape == (4, 3, 16, 20) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(2, 3)), 1, atol=1e-4)
    # The bone window (1800/400) spans [-500, 1300]: it keeps values the soft-tissue one clips.
    assert not np.allclose(x[:, 0], x[:, 1])


def test_constant_ct_channel_gives_zeros_not_nan() -> None:
    x = ct_input(np.full((1, 4, 4), -1000.0))
    assert np.isfinite(x).all() and np.all(x == 0)


def test_mri_input_is_rss_zscored_over_the_volume() -> None:
    rng = np.random.default_rng(0)
    e1, e2 = rng.uniform(0, 5, (2, 3, 8, 8))
    x = mri_input(e1, e2)
    assert x.shape == (3, 1, 8, 8)
    rss = np.sqrt(e1**2 + e2**2)
    np.testing.assert_allclose(x[:, 0], (rss - rss.mean()) / rss.std(), rtol=1e-4, atol=1e-5)
    # Per volume, not per slice: slice means differ from zero while the volume mean is zero.
    assert abs(float(x.mean())) < 1e-5
    np.testing.assert_allclose(root_sum_of_squares(np.array([3.0]), np.array([4.0])), [5.0])


@pytest.mark.parametrize(
    "windows, message", [([(0, 50)], "width=0.0 must be > 0"), ([(400,)], r"ct_windows\[0\]"), ([], "at least one")]
)
def test_bad_ct_windows_are_refused(windows: list, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        ct_input(np.zeros((1, 2, 2)), windows)
