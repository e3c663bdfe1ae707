from __future__ import annotations

import numpy as np
import pytest

from study.data.qdess import QDessParams, dess_echoes, estimate_t2
from study.errors import DataError

PARAMS = QDessParams(18.176, 5.8, 20.0, 3132.0, 1560.0)


@pytest.mark.parametrize("t1_ms", [1200.0, 1000.0])
def test_estimate_t2_recovers_noise_free_t2(t1_ms: float) -> None:
    t2 = np.linspace(5, 95, 91, dtype=np.float32)  # (91,) the whole valid range
    echo1, echo2 = dess_echoes(np.full_like(t2, 500.0), t1_ms, t2, PARAMS)
    np.testing.assert_allclose(estimate_t2(echo1, echo2, PARAMS, t1_ms=t1_ms), t2, rtol=1e-4)


def test_t2_matches_the_dosma_formula_by_hand() -> None:
    # The formula written out once more, step by step in seconds, for one voxel.
    tr, te, tg, alpha, t1 = 18.176e-3, 5.8e-3, 1560e-6, np.deg2rad(20.0), 1.2
    gl = 3132.0 / (tg * 1e6) * 100
    dk = 4258 * 2 * np.pi * gl * tg
    e = np.exp(-tr / t1 - tr * dk**2 * 1.25e-9)
    k = np.sin(alpha / 2) ** 2 * (1 + e) / (1 - np.cos(alpha) * e)
    c1 = (tr - tg / 3) * dk**2 * 1.25e-9
    s1, s2 = np.array([2.0]), np.array([0.5])
    expected = -2000 * (tr - te) / (np.log(np.abs(s2 / s1) / k) + c1)
    np.testing.assert_allclose(estimate_t2(s1, s2, PARAMS), expected, rtol=1e-6)


def test_t2_outside_valid_range_and_zero_echoes_are_nan() -> None:
    t2 = np.array([150.0, 40.0], dtype=np.float32)
    echo1, echo2 = dess_echoes(np.ones(2), 1200.0, t2, PARAMS)
    out = estimate_t2(np.append(echo1, 0.0), np.append(echo2, 1.0), PARAMS)
    assert np.isnan(out[0]) and np.isnan(out[2])
    assert out[1] == pytest.approx(40.0, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"repetition_time": -1.0}, "repetition_time=-1.0"),
        ({"echo_time": 20.0}, "echo_time=20.0 ms must be shorter"),
        ({"spoiler_time": float("nan")}, "spoiler_time=nan"),
    ],
)
def test_bad_scan_parameters_are_refused(kwargs: dict, message: str) -> None:
    base = PARAMS.as_dict() | kwargs
    with pytest.raises(DataError, match=message):
        QDessParams(**base)
