"""qDESS signal model and T2 estimation (the DOSMA formula, Sveinsson et al. 2017).

Scan parameters are kept in the units the scanner stores them in (ms, degrees, µs); conversion to
seconds and radians happens here only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from study.errors import DataError

GYROMAGNETIC_HZ_PER_GAUSS = 4258.0
DIFFUSIVITY = 1.25e-9  # m^2/s, the value DOSMA assumes for cartilage
T2_VALID_RANGE_MS = (0.0, 100.0)


@dataclass(frozen=True)
class QDessParams:
    """Scan parameters of a qDESS acquisition, as stored in the DICOM header / SKM-TEA metadata.

    repetition_time, echo_time: ms. flip_angle: degrees. spoiler_area: gradient area as stored
    (``SpoilerGradientArea``). spoiler_time: µs (``SpoilerGradientTime``).
    """

    repetition_time: float
    echo_time: float
    flip_angle: float
    spoiler_area: float
    spoiler_time: float

    def __post_init__(self) -> None:
        for name in ("repetition_time", "echo_time", "flip_angle", "spoiler_area", "spoiler_time"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise DataError(f"qDESS parameter {name}={value!r} must be a positive number")
        if self.echo_time >= self.repetition_time:
            raise DataError(
                f"qDESS echo_time={self.echo_time} ms must be shorter than repetition_time={self.repetition_time} ms"
            )

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


def _constants(params: QDessParams, t1_ms: float | np.ndarray) -> tuple:
    tr = params.repetition_time / 1e3
    te = params.echo_time / 1e3
    tg = params.spoiler_time / 1e6
    t1 = np.asarray(t1_ms, dtype=np.float64) / 1e3
    alpha = np.deg2rad(params.flip_angle)
    gl = params.spoiler_area / (tg * 1e6) * 100
    dk = GYROMAGNETIC_HZ_PER_GAUSS * 2 * np.pi * gl * tg
    e = np.exp(-tr / t1 - tr * dk**2 * DIFFUSIVITY)
    k = np.sin(alpha / 2) ** 2 * (1 + e) / (1 - np.cos(alpha) * e)
    c1 = (tr - tg / 3) * dk**2 * DIFFUSIVITY
    return tr, te, t1, alpha, k, c1


def dess_echoes(
    proton_density: np.ndarray,
    t1_ms: float | np.ndarray,
    t2_ms: np.ndarray,
    params: QDessParams,
) -> tuple[np.ndarray, np.ndarray]:
    """The two DESS echoes (S1, S2) of tissue with the given PD, T1 and T2 maps (any equal shapes).

    S1 follows the steady-state FISP magnitude with T2 decay to the echo time; S2 is S1 scaled by
    exactly the ratio the DOSMA formula inverts, so :func:`estimate_t2` recovers ``t2_ms`` from
    noise-free echoes. Voxels with T2 <= 0 (no signal, e.g. air) give zero in both echoes.
    """
    tr, te, t1, alpha, k, c1 = _constants(params, t1_ms)
    t2 = np.asarray(t2_ms, dtype=np.float64) / 1e3
    safe_t2 = np.where(t2 > 0, t2, 1.0)
    e1 = np.exp(-tr / t1)
    s1 = proton_density * np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1) * np.exp(-te / safe_t2)
    s2 = s1 * k * np.exp(-2 * (tr - te) / safe_t2) * np.exp(-c1)
    s1 = np.where(t2 > 0, s1, 0.0)
    s2 = np.where(t2 > 0, s2, 0.0)
    return s1.astype(np.float32), s2.astype(np.float32)


def estimate_t2(
    echo1: np.ndarray,
    echo2: np.ndarray,
    params: QDessParams,
    t1_ms: float | np.ndarray = 1200.0,
    valid_range_ms: tuple[float, float] = T2_VALID_RANGE_MS,
) -> np.ndarray:
    """T2 map in ms from the two qDESS echoes (DOSMA formula).

    T2 = -2000 (TR - TE) / (ln(|S2/S1| / k) + c1), with TR, TE in s. Voxels where the ratio is not
    defined (zero echo) or T2 falls outside ``valid_range_ms`` are NaN, so a tissue's mean T2 is
    ``np.nanmean`` over its mask. ``t1_ms`` may be a map (e.g. 1000 ms in the meniscus).
    """
    tr, te, _, _, k, c1 = _constants(params, t1_ms)
    s1 = np.abs(np.asarray(echo1, dtype=np.float64))
    s2 = np.abs(np.asarray(echo2, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((s1 > 0) & (s2 > 0), s2 / s1, np.nan)
        t2 = -2000.0 * (tr - te) / (np.log(ratio / k) + c1)
    low, high = valid_range_ms
    t2 = np.where((t2 >= low) & (t2 <= high), t2, np.nan)
    return t2.astype(np.float32)
