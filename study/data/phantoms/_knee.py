"""Knee anatomy of the MRI phantom: bones, cartilage plates and menisci as signed distances.

Frames (all in mm, axes ordered (z, y, x) like the volume (S, H, W)):

- *subject*: z mediolateral (medial compartment at negative z), y inferior, x posterior; the joint
  line is near y = 0. Tibia, menisci and soft tissue live here.
- *femur*: the subject frame moved to the common centre of the femoral condyles and rotated by the
  knee's flexion. The condyles are circular in the sagittal plane, so flexing about their centre
  keeps them resting on the tibial plateau. Femur and patella live here.

Each part is a small frozen dataclass with ``sdf`` (negative inside) and, for articular surfaces,
the region where cartilage covers the bone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from study.data.phantoms._shapes import ellipsoid_sdf, rotate, smooth_union, smoothstep


def _condyle(dz: np.ndarray, radial: np.ndarray, r: float, rz: float) -> np.ndarray:
    """Signed distance (approximate) to a condyle: circular in the sagittal plane with a flat,
    broad bottom across z (a quartic profile), so it rests on the plateau over most of its width."""
    profile = np.sqrt(np.clip(1.0 - (dz / rz) ** 4, 0.0, 1.0))
    return np.maximum(radial - r * profile, np.abs(dz) - rz)


@dataclass(frozen=True)
class Femur:
    """Distal femur in the femur frame: two condyles, the trochlea and the shaft."""

    r_med: float  # sagittal radius of the medial condyle
    r_lat: float
    z_med: float  # condyle centres along z
    z_lat: float
    rz_med: float  # mediolateral half-width of each condyle
    rz_lat: float
    groove: float  # depth of the trochlear groove

    @property
    def z_mid(self) -> float:
        return 0.5 * (self.z_med + self.z_lat)

    @property
    def r_mean(self) -> float:
        return 0.5 * (self.r_med + self.r_lat)

    @property
    def notch_half(self) -> float:
        """Half-width of the intercondylar notch at the condyle centres."""
        return max(0.5 * abs(self.z_lat - self.z_med) - 0.5 * (self.rz_med + self.rz_lat), 2.0)

    def sdf(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        r, zc = self.r_mean, self.z_mid
        med = _condyle(z - self.z_med, np.hypot(y, x), self.r_med, self.rz_med)
        lat = _condyle(z - self.z_lat, np.hypot(y, x), self.r_lat, self.rz_lat)
        width = 0.5 * abs(self.z_lat - self.z_med) + 0.5 * (self.rz_med + self.rz_lat)
        # The trochlea sits anterior-superior; its groove is where the patella rides.
        xg = x - self.groove * np.exp(-(((z - zc) / 9.0) ** 2))
        troch = ellipsoid_sdf((z - zc, y + 0.6 * r, xg + 0.45 * r), (0.85 * width, 0.85 * r, 0.8 * r))
        shaft = np.maximum(ellipsoid_sdf((z - zc, x + 0.2 * r), (0.8 * r, 0.62 * r)), y + 1.3 * r)
        distal = smooth_union(smooth_union(med, lat, 3.0), troch, 6.0)
        return smooth_union(distal, shaft, 12.0)

    def articular(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Where femoral cartilage may cover the bone: condyles below and behind, trochlea in front,
        not the notch roof and not the epicondyles."""
        phi = np.arctan2(x, y)  # 0 inferior, positive posterior
        in_angle = (phi > np.deg2rad(-150)) & (phi < np.deg2rad(110))
        on_condyle = (np.abs(z - self.z_med) < 0.9 * self.rz_med) | (np.abs(z - self.z_lat) < 0.9 * self.rz_lat)
        width = 0.5 * abs(self.z_lat - self.z_med) + 0.5 * (self.rz_med + self.rz_lat)
        on_trochlea = (np.abs(z - self.z_mid) < 0.65 * width) & (phi < np.deg2rad(-60))
        in_notch = (np.abs(z - self.z_mid) < self.notch_half) & (phi > np.deg2rad(-80))
        return in_angle & (on_condyle | on_trochlea) & ~in_notch


@dataclass(frozen=True)
class Tibia:
    """Proximal tibia in the subject frame: a sloped plateau (medial concave, lateral convex) with
    the intercondylar eminence, narrowing into the shaft, plus the tibial tuberosity."""

    z_med: float
    z_lat: float
    y_med: float  # plateau height under each condyle (y at the contact point)
    y_lat: float
    x_contact: float  # x of the contact points (below the condyle centre)
    x_centre: float  # centre of the plateau footprint
    half_z: float
    half_x: float
    slope: float  # posterior slope, dy/dx
    concavity: float  # mm of medial dish / lateral dome at the footprint edge
    eminence: float  # mm the tibial spines rise

    @property
    def z_mid(self) -> float:
        return 0.5 * (self.z_med + self.z_lat)

    def top(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Height y of the bony plateau surface at (z, x)."""
        w = smoothstep(-6.0, 6.0, (z - self.z_mid) * np.sign(self.z_lat - self.z_med))  # 0 medial, 1 lateral
        dx = x - self.x_contact
        bowl = self.concavity * (dx / self.half_x) ** 2 * (0.5 * w - (1.0 - w))
        spines = self.eminence * np.exp(-(((z - self.z_mid) / 5.0) ** 2) - ((dx + 2.0) / 10.0) ** 2)
        return self.y_med * (1.0 - w) + self.y_lat * w + self.slope * dx + bowl - spines

    def footprint(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Signed distance to the side wall, which narrows from the plateau into the shaft."""
        depth = y - min(self.y_med, self.y_lat)
        f = 1.0 - 0.4 * smoothstep(10.0, 40.0, depth)
        return ellipsoid_sdf((z - self.z_mid, x - self.x_centre), (self.half_z * f, self.half_x * f))

    def sdf(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        body = np.maximum(self.top(z, x) - y, self.footprint(z, y, x))
        y_top = 0.5 * (self.y_med + self.y_lat)
        tub = ellipsoid_sdf(
            (z - self.z_mid - 3.0, y - y_top - 26.0, x - self.x_centre + 0.85 * self.half_x), (12.0, 12.0, 7.0)
        )
        return smooth_union(body, tub, 5.0)

    def tuberosity_front(self) -> tuple[float, float]:
        """(y, x) of the anterior tuberosity, where the patellar tendon inserts."""
        return 0.5 * (self.y_med + self.y_lat) + 26.0, self.x_centre - 0.85 * self.half_x - 6.0


@dataclass(frozen=True)
class Meniscus:
    """One meniscus: a C-shaped wedge on the plateau rim. In a sagittal slice through its
    compartment it shows as two triangles (anterior and posterior horn); near the compartment's
    edge as one band (the body); outside the compartment not at all."""

    z_centre: float
    x_centre: float
    half_z: float
    half_x: float
    inner: float  # normalised radius of the free inner edge
    height: float  # mm at the outer rim
    posterior_bulk: float  # relative extra height of the posterior horn

    def rho(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.sqrt(((z - self.z_centre) / self.half_z) ** 2 + ((x - self.x_centre) / self.half_x) ** 2)

    def height_at(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        rho = self.rho(z, x)
        # A wedge: height grows from the free inner edge to the rim, which is rounded off.
        rim = np.clip((rho - self.inner) / (0.95 - self.inner), 0.0, 1.0) ** 0.7
        rim = rim * (1.0 - 0.5 * smoothstep(0.93, 1.0, rho))
        horn = 1.0 + self.posterior_bulk * np.clip((x - self.x_centre) / self.half_x, -1.0, 1.0)
        return np.where((rho >= self.inner) & (rho <= 1.0), self.height * rim * horn, 0.0)


@dataclass(frozen=True)
class Patella:
    """Patella in the femur frame: an ellipsoid whose thickness axis follows the trochlear normal."""

    centre: tuple[float, float, float]  # (z, y, x)
    normal: tuple[float, float]  # (y, x) unit vector from the femur towards the patella
    radii: tuple[float, float, float]  # (mediolateral, height, thickness) half-axes

    def local(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(w, v, u): mediolateral, along the height (positive superior) and along the normal."""
        ny, nx = self.normal
        dy, dx = y - self.centre[1], x - self.centre[2]
        return z - self.centre[0], dy * nx - dx * ny, dy * ny + dx * nx

    def sdf(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return ellipsoid_sdf(self.local(z, y, x), self.radii)

    def articular(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        w, v, u = self.local(z, y, x)
        rz, rv, ru = self.radii
        return (u < -0.3 * ru) & (np.abs(w) < 0.85 * rz) & (np.abs(v) < 0.85 * rv)

    def pole(self, sign: float) -> tuple[float, float]:
        """(y, x) femur-frame point at the superior (+1) or inferior (-1) pole."""
        ny, nx = self.normal
        rv = self.radii[1]
        return self.centre[1] + sign * rv * nx, self.centre[2] - sign * rv * ny


def anterior_surface(femur: Femur, z: float, y: float) -> tuple[float, tuple[float, float]]:
    """x of the femur's anterior surface at height y (femur frame) and its outward unit normal."""
    xs = np.linspace(-3.5 * femur.r_mean, 0.0, 701)
    inside = femur.sdf(np.float64(z), np.float64(y), xs) < 0
    x_s = float(xs[np.argmax(inside)]) if inside.any() else 0.0
    e = 0.25
    gy = float(femur.sdf(z, y + e, x_s) - femur.sdf(z, y - e, x_s))
    gx = float(femur.sdf(z, y, x_s + e) - femur.sdf(z, y, x_s - e))
    norm = float(np.hypot(gy, gx)) or 1.0
    return x_s, (gy / norm, gx / norm)


def to_subject(yf: float, xf: float, centre: tuple[float, float], flexion: float) -> tuple[float, float]:
    """A femur-frame point (y, x) in the subject frame."""
    y, x = rotate(np.float64(yf), np.float64(xf), flexion)
    return float(y) + centre[0], float(x) + centre[1]
