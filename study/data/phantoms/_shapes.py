"""Geometry shared by the phantoms: signed distances, smooth random fields, argument checks.

Everything works on broadcastable coordinate arrays in millimetres, so a shape is defined once in
physical units and can be evaluated on any grid (any matrix size, or a handful of probe points).
Signed distances are negative inside a shape and approximately Euclidean near its surface, which
is what thin shells (cartilage, cortex, skin) need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from study.errors import SpecError

MIN_SIZE, MAX_SIZE = 32, 512


def check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise SpecError(f"rng={type(rng).__name__} must be a numpy.random.Generator (np.random.default_rng(seed))")
    return rng


def check_int(name: str, value: object, low: int, high: int) -> int:
    """``value`` as an int in [low, high], else a SpecError naming ``name``, value and range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise SpecError(f"{name}={value!r} must be an integer between {low} and {high}")
    return int(value)


def check_noise(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise SpecError(f"noise={value!r} must be a number between 0 and 10")
    if not (np.isfinite(value) and 0.0 <= float(value) <= 10.0):
        raise SpecError(f"noise={value!r} must be a number between 0 and 10")
    return float(value)


@dataclass(frozen=True, eq=False)
class SmoothField:
    """A smooth random scalar field, zero mean and unit variance (random Fourier features).

    A sum of cosines with Gaussian-distributed wave vectors approximates a Gaussian random field
    with a Gaussian correlation of length ``scale_mm``. It is drawn once from the subject's
    generator and then evaluated at any coordinates, so it does not depend on the matrix size.
    """

    wavevectors: np.ndarray  # (n_terms, n_dims), rad/mm
    phases: np.ndarray  # (n_terms,), rad

    @classmethod
    def draw(cls, rng: np.random.Generator, n_dims: int, scale_mm: float, n_terms: int = 12) -> SmoothField:
        return cls(rng.normal(0.0, 1.0 / scale_mm, (n_terms, n_dims)), rng.uniform(0, 2 * np.pi, n_terms))

    def __call__(self, *coords: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(*(np.shape(c) for c in coords)))
        for k, phase in zip(self.wavevectors, self.phases):
            out += np.cos(phase + sum(float(ki) * c for ki, c in zip(k, coords)))
        return out * np.sqrt(2.0 / len(self.phases))

    def on_grid(self, *axes: np.ndarray) -> np.ndarray:
        """The field on the grid spanned by 1-D ``axes`` (shape ``(len(a0), len(a1), ...)``).

        A cosine of a sum is the real part of a product of per-axis exponentials, so the grid
        costs one small complex matrix product instead of a cosine per term and voxel.
        """
        axes = tuple(np.ravel(a) for a in axes)
        first = np.exp(1j * (np.outer(axes[0], self.wavevectors[:, 0]) + self.phases))  # (n0, K)
        rest = np.ones((len(self.phases), 1), dtype=complex)
        for d, a in enumerate(axes[1:], start=1):
            factor = np.exp(1j * np.outer(self.wavevectors[:, d], a))  # (K, len(a))
            rest = (rest[:, :, None] * factor[:, None, :]).reshape(len(self.phases), -1)
        # Re(first @ rest) as one real product. einsum, not BLAS: for these thin matrices a
        # multi-threaded BLAS on a busy machine is ten times slower than a plain loop.
        out = np.einsum(
            "ik,kj->ij", np.concatenate([first.real, -first.imag], 1), np.concatenate([rest.real, rest.imag], 0)
        )
        out = out.reshape(tuple(len(a) for a in axes))
        return out * np.sqrt(2.0 / len(self.phases))


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1, a C1 ramp between."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Union of two signed distances with a fillet of radius ~k (polynomial smooth minimum)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def ellipsoid_sdf(offsets: tuple[np.ndarray, ...], radii: tuple[float, ...]) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipsoid (any number of dimensions).

    ``offsets`` are the coordinates relative to the centre. Uses the k0 (k0 - 1) / k1 bound, which
    is exact on the surface and close to Euclidean near it (thin shells keep their thickness).
    """
    k0 = np.sqrt(sum((o / r) ** 2 for o, r in zip(offsets, radii)))
    k1 = np.sqrt(sum((o / (r * r)) ** 2 for o, r in zip(offsets, radii)))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def segment_distance(py: np.ndarray, px: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Euclidean distance (mm) from points (py, px) to the segment a-b, each given as (y, x)."""
    ay, ax = a
    dy, dx = b[0] - ay, b[1] - ax
    t = np.clip(((py - ay) * dy + (px - ax) * dx) / max(dy * dy + dx * dx, 1e-9), 0.0, 1.0)
    return np.hypot(py - ay - t * dy, px - ax - t * dx)


def rotate(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u, v) rotated by ``angle`` radians (counter-clockwise in the u-v plane)."""
    c, s = np.cos(angle), np.sin(angle)
    return c * u - s * v, s * u + c * v


def periodic_profile(rng: np.random.Generator, n_harmonics: int, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of a random smooth periodic function of an angle (see :func:`eval_profile`)."""
    k = np.arange(1, n_harmonics + 1)
    return rng.normal(0.0, amplitude, n_harmonics) / k, rng.uniform(0, 2 * np.pi, n_harmonics)


def eval_profile(coeffs: tuple[np.ndarray, np.ndarray], theta: np.ndarray) -> np.ndarray:
    amps, phases = coeffs
    out = np.zeros_like(theta)
    for k, (amp, phase) in enumerate(zip(amps, phases), start=1):
        out += amp * np.cos(k * theta + phase)
    return out
