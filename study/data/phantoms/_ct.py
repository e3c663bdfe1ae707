"""Abdominal CT phantom: one axial slice at the L3 level in Hounsfield units, with the four
body-composition classes of the L3 data set (muscle, intramuscular, visceral, subcutaneous fat).

The body is built in layers inward from the skin (skin, subcutaneous fat, abdominal wall), then the
retroperitoneum around the third lumbar vertebra (psoas, quadratus lumborum, paraspinal muscles,
kidneys, aorta, vena cava), then bowel loops packed into the peritoneal cavity with visceral fat
between them. Three latent subject traits drive the variation: adiposity (fat thickness, visceral
fat), muscularity (muscle size) and myosteatosis (intramuscular fat, lower muscle HU).

Layout: rows anterior (top) to posterior (bottom), columns patient right (left of the image) to
patient left, as radiologists view an axial slice. Labels are taken at pixel centres; HU is the
mean over a 3 x 3 sub-pixel grid when pixels are coarse (partial volume), then noise is added.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from study.data.phantoms._shapes import (
    SmoothField,
    check_int,
    check_noise,
    check_rng,
    ellipsoid_sdf,
    eval_profile,
    periodic_profile,
    rotate,
    segment_distance,
)

CT_CLASSES: tuple[str, ...] = ("muscle", "intramuscular_fat", "visceral_fat", "subcutaneous_fat")
MUSCLE, IMAT, VAT, SAT = 1, 2, 3, 4


@dataclass(frozen=True)
class CtPhantom:
    """One L3 slice (one subject).

    hu: (H, W) float32 Hounsfield units (air -1000, fat about -100, muscle about 40, bone to ~900),
    with noise unless ``noise=0``. labels: (H, W) uint8, 0 background, then :data:`CT_CLASSES` as
    1..4. spacing_mm: (row, col) pixel size.
    """

    hu: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float]


@dataclass(frozen=True, eq=False)
class _Abdomen:
    fov: float  # mm across the image
    centre: tuple[float, float]  # (y, x) of the body ellipse
    half_axes: tuple[float, float]  # (b, a): anterior-posterior and left-right half-axes
    back: float  # y of the flattened back (the patient lies on the table)
    outline: tuple[np.ndarray, np.ndarray]  # periodic perturbation of the skin
    skin: float
    sat: tuple[float, tuple[np.ndarray, np.ndarray], float]  # mean thickness, profile, pannus
    wall: tuple[float, tuple[np.ndarray, np.ndarray]]  # mean muscle thickness, profile
    linea_alba: float  # half-width
    vertebra: tuple[float, float, float, float]  # (y, x) of the body centre, half-width, half-depth
    muscles: tuple[tuple[float, ...], ...]  # ellipses (y, x, ry, rx, angle): psoas, QL, paraspinal
    organs: tuple[tuple[float, ...], ...]  # ellipses (y, x, ry, rx, angle, HU)
    loops: tuple[tuple[float, ...], ...]  # (y, x, r1, r2, angle, wall, kind, level) bowel loops
    vessels: tuple[tuple[float, float, float], ...]  # mesenteric (y, x, r)
    blobs: tuple[tuple[float, float, float], ...]  # intramuscular fat (y, x, r)
    hu: dict[str, float]
    myosteatosis: float
    fields: dict[str, SmoothField]
    noise_hu: float


def _ellipse(y: np.ndarray, x: np.ndarray, e: tuple[float, ...]) -> np.ndarray:
    v, u = rotate(y - e[0], x - e[1], e[4])
    return ellipsoid_sdf((v, u), (e[2], e[3]))


def _depth(ab: _Abdomen, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth below the skin (mm, approximately along the normal) and the elliptical angle."""
    (b, a), (y0, x0) = ab.half_axes, ab.centre
    v, u = (y - y0) / b, (x - x0) / a
    theta = np.arctan2(v, u)  # -pi/2 anterior, +pi/2 posterior
    radius = 1.0 + eval_profile(ab.outline, theta) + ab.sat[2] * np.clip(-np.sin(theta), 0, 1) ** 2
    depth = (radius - np.hypot(u, v)) * np.hypot(a * np.cos(theta), b * np.sin(theta))
    return np.minimum(depth, ab.back - y), theta


def _layers(ab: _Abdomen, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Depth, angle, and the depths where subcutaneous fat and the abdominal wall end."""
    depth, theta = _depth(ab, y, x)
    s = np.sin(theta)
    sat = np.maximum(ab.sat[0] * (1.0 + eval_profile(ab.sat[1], theta)), 2.0)
    wall = ab.wall[0] * (1.0 + eval_profile(ab.wall[1], theta)) * np.where(s > 0.55, 0.35, 1.0)
    wall = wall * (1.0 + 0.35 * np.exp(-(((theta + np.pi / 2) / 0.45) ** 2)))  # rectus is thicker
    return depth, theta, ab.skin + sat, ab.skin + sat + np.maximum(wall, 2.0)


def _cavity(ab: _Abdomen, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Inside the abdominal wall and not in a retroperitoneal structure or organ."""
    depth, _, _, wall_end = _layers(ab, y, x)
    free = depth > wall_end + 1.0
    for e in ab.muscles + ab.organs:
        free &= _ellipse(y, x, e) > 1.0
    yv, xv, hw, hd = ab.vertebra
    return free & (ellipsoid_sdf((y - yv - 0.6 * hd, x - xv), (2.2 * hd, 1.3 * hw)) > 0)


def _muscle_region(ab: _Abdomen, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    depth, theta, sat_end, wall_end = _layers(ab, y, x)
    region = (depth > sat_end) & (depth < wall_end)
    for e in ab.muscles:
        region |= _ellipse(y, x, e) < 0
    return region


def _sample_points(
    rng: np.random.Generator, ab: _Abdomen, n: int, inside: Callable, box: tuple[float, float, float, float]
) -> np.ndarray:
    """Up to n points (y, x) drawn uniformly in ``box`` = (y0, y1, x0, x1) where ``inside`` holds."""
    cand = np.column_stack([rng.uniform(box[0], box[1], 8 * n + 16), rng.uniform(box[2], box[3], 8 * n + 16)])
    return cand[inside(ab, cand[:, 0], cand[:, 1])][:n]


def _sample_abdomen(rng: np.random.Generator) -> _Abdomen:
    u = rng.uniform
    adip, musc, myo = rng.beta(2.0, 2.0), u(), rng.beta(2.0, 3.0)
    a = u(125.0, 145.0) + 55.0 * adip + 15.0 * musc
    b = a * u(0.62, 0.8)
    fov = float(np.clip(2.0 * a / u(0.8, 0.93), 358.0, 461.0))
    a = min(a, 0.46 * fov)
    centre = (u(-8.0, 4.0) - 0.04 * fov, u(-6.0, 6.0))
    back = centre[0] + b * u(0.86, 0.95)
    sat0 = 6.0 + 42.0 * adip**1.3 * u(0.7, 1.3)
    sat = (sat0, periodic_profile(rng, 4, 0.25), 0.1 * adip * u())
    wall = (7.0 + 8.0 * musc, periodic_profile(rng, 4, 0.2))
    skin = u(1.5, 3.0)
    sat_post, depth_pa = sat0 * 0.9, u(38.0, 48.0) * (0.85 + 0.3 * musc)
    hw, hd = u(21.0, 26.0), u(14.0, 18.0)
    xv, yv = centre[1] + u(-3.0, 3.0), back - skin - sat_post - 3.0 - depth_pa - hd - 10.0
    ps_w = u(17.0, 24.0) * (0.85 + 0.3 * musc)
    muscles = []
    for side in (-1.0, 1.0):
        muscles += [
            # (y, x, ry, rx, angle): psoas beside the vertebral body, quadratus lumborum, erector spinae
            (yv + 1.0, xv + side * (hw + 11.0 + 3.0 * musc), 10.0 + 5.0 * musc, 10.0 + 4.0 * musc, side * u(0.1, 0.4)),
            (yv + hd + 8.0, xv + side * (hw + 36.0 + 6.0 * musc), 8.0, u(13.0, 18.0), -side * u(0.2, 0.5)),
            (
                yv + hd + 10.0 + 0.5 * depth_pa,
                xv + side * (5.0 + ps_w),
                0.5 * depth_pa + 1.0,
                ps_w,
                side * u(-0.1, 0.15),
            ),
        ]
    contrast = u() < 0.6  # portal-venous phase: enhancing kidneys, liver, vessels, bowel wall
    r_aorta = u(9.0, 13.0)
    organs = [  # (y, x, ry, rx, angle, HU): aorta, inferior vena cava, kidneys, liver tip
        (yv - hd - 13.0, xv + u(6.0, 14.0), r_aorta, r_aorta, 0.0, u(160, 260) if contrast else u(35, 50)),
        (yv - hd - 10.0, xv - u(16.0, 24.0), u(7.0, 10.0), u(10.0, 14.0), 0.2, u(110, 160) if contrast else u(35, 50)),
    ]
    for side in (-1.0, 1.0):
        if u() < 0.75:
            organs.append(
                (
                    yv - 2.0 + u(-6, 6),
                    xv + side * (hw + 40.0 + 8.0 * adip),
                    u(14.0, 18.0),
                    u(22.0, 28.0),
                    side * u(0.4, 0.8),
                    u(140, 200) if contrast else u(28, 38),
                )
            )
    if u() < 0.5:  # the inferior tip of the liver, on the patient's right
        organs.append(
            (
                centre[0] - 0.1 * b,
                centre[1] - 0.6 * a,
                0.35 * b,
                0.22 * a,
                u(-0.3, 0.3),
                u(100, 120) if contrast else u(50, 65),
            )
        )
    # Loops, vessels and fat blobs are placed by asking where the cavity and muscles are.
    ab = _Abdomen(
        fov=fov,
        centre=centre,
        half_axes=(b, a),
        back=back,
        outline=periodic_profile(rng, 6, 0.03),
        skin=skin,
        sat=sat,
        wall=wall,
        linea_alba=u(3.0, 8.0),
        vertebra=(yv, xv, hw, hd),
        muscles=tuple(muscles),
        organs=tuple(organs),
        loops=(),
        vessels=(),
        blobs=(),
        hu={},
        myosteatosis=myo,
        fields={},
        noise_hu=0.0,
    )
    box = (centre[0] - b, back, centre[1] - a, centre[1] + a)

    # Bowel: lean subjects have loops packed tight, obese ones much fat between them.
    cav_area = np.pi * (a - sat0 - 15.0) * (b - sat0 - 15.0) * 0.7
    fill = u(0.55, 0.9) * (1.0 - 0.55 * adip)
    n_loops = int(np.clip(fill * cav_area / (np.pi * 8.5**2), 5, 160))  # overlaps and clipping waste some
    oral = u() < 0.5
    kinds = np.array([0, 1, 2, 3])  # collapsed, fluid, gas with a fluid level, oral contrast
    p_kind = np.array([0.3, 0.35, 0.15, 0.2 if oral else 0.0])
    loops = []
    for cy, cx in _sample_points(rng, ab, n_loops, _cavity, box):
        r = u(6.0, 14.0)
        loops.append(
            (
                cy,
                cx,
                r,
                r * u(0.55, 1.0),
                u(0, np.pi),
                u(1.5, 3.0),
                float(rng.choice(kinds, p=p_kind / p_kind.sum())),
                u(-0.3, 0.6),
            )
        )
    for side, p_present in ((-1.0, 0.8), (1.0, 0.7)):  # ascending and descending colon, with stool
        if u() < p_present:
            r = u(14.0, 22.0)
            loops.append(
                (
                    centre[0] + u(-0.1, 0.2) * b,
                    centre[1] + side * u(0.45, 0.6) * (a - sat0),
                    r,
                    r * u(0.7, 1.0),
                    u(0, np.pi),
                    2.0,
                    4.0,
                    0.0,
                )
            )
    vessels = [(py, px, u(1.5, 3.0)) for py, px in _sample_points(rng, ab, int(u(8, 25)), _cavity, box)]
    n_blobs = int(10 + 90 * myo)
    blobs = [(py, px, u(1.2, 3.5)) for py, px in _sample_points(rng, ab, n_blobs, _muscle_region, box)]
    fat = u(-110.0, -88.0)
    hu = {
        "fat_sat": fat - u(0, 8),
        "fat_vat": fat + u(0, 8),
        "imat": fat + u(10, 35),
        "muscle": u(36.0, 55.0) - 14.0 * myo,
        "skin": u(30.0, 60.0),
        "wall": 40.0 + 30.0 * contrast,
        "fluid": u(0.0, 20.0),
        "oral": u(150.0, 350.0),
        "cancellous": u(110.0, 260.0),
        "cortical": u(450.0, 900.0),
    }
    fields = {
        name: SmoothField.draw(rng, 2, scale)
        for name, scale in (("fat", 20.0), ("muscle", 6.0), ("marble", 4.0), ("septa", 15.0), ("stool", 2.5))
    }
    return dataclasses.replace(
        ab, loops=tuple(loops), vessels=tuple(vessels), blobs=tuple(blobs), hu=hu, fields=fields, noise_hu=u(10.0, 20.0)
    )


def _window(ys: np.ndarray, xs: np.ndarray, cy: float, cx: float, r: float) -> tuple[slice, slice]:
    """Index ranges of the grid (sorted 1-D axes) covering a disc of radius r around (cy, cx)."""
    return (
        slice(np.searchsorted(ys, cy - r), np.searchsorted(ys, cy + r, side="right")),
        slice(np.searchsorted(xs, cx - r), np.searchsorted(xs, cx + r, side="right")),
    )


def _render(ab: _Abdomen, ys: np.ndarray, xs: np.ndarray, min_blob: float) -> tuple[np.ndarray, np.ndarray]:
    """HU (noise-free) and labels on the grid spanned by the 1-D axes ys (rows), xs (cols), mm.

    Intramuscular fat blobs are drawn at least ``min_blob`` mm in radius, so that they stay
    visible (and labelled) on coarse grids instead of vanishing between pixel centres. At 64 px a
    radius of 0.55 pixel left them so faint after partial-volume blurring that a model learnt the
    class on some seeds only (test Dice 0.12 to 0.48 at 100 % labels); 0.8 pixel is learnable.
    """
    y, x = ys[:, None], xs[None, :]
    shape = (len(ys), len(xs))
    f = {name: field.on_grid(ys, xs) for name, field in ab.fields.items()}
    h = ab.hu
    hu = np.full(shape, -1000.0)
    lab = np.zeros(shape, dtype=np.uint8)

    table = ab.back + 3.0 - x**2 / 1400.0
    hu[(y > table) & (y < table + 2.0)] = 250.0  # carbon-fibre table: two shells round a foam core
    hu[(y >= table + 2.0) & (y < table + 12.0)] = -600.0
    hu[(y >= table + 12.0) & (y < table + 14.0)] = 250.0

    depth, theta, sat_end, wall_end = _layers(ab, y, x)
    body = depth > 0
    hu[body], lab[body] = h["skin"], 0
    sat = body & (depth > ab.skin) & (depth <= sat_end)
    septa = np.abs(f["septa"]) < 0.05  # fibrous septa and Scarpa's fascia in the fat
    hu[sat] = np.where(septa, -45.0, h["fat_sat"] + 6.0 * f["fat"])[sat]
    lab[sat] = SAT
    muscle_hu = h["muscle"] + 6.0 * f["muscle"]
    wall = body & (depth > sat_end) & (depth <= wall_end)
    hu[wall], lab[wall] = muscle_hu[wall], MUSCLE
    # Fat planes between the oblique muscles of the flank.
    q = (depth - sat_end) / np.maximum(wall_end - sat_end, 1e-3)
    plane = wall & (np.abs(np.cos(theta)) > 0.6) & ((np.abs(q - 0.35) < 0.06) | (np.abs(q - 0.68) < 0.06))
    hu[plane], lab[plane] = h["imat"], IMAT
    alba = wall & (np.abs(x - ab.centre[1]) < ab.linea_alba) & (y < ab.centre[0])
    hu[alba], lab[alba] = 50.0, 0

    cavity = body & (depth > wall_end)
    hu[cavity], lab[cavity] = h["fat_vat"] + 6.0 * f["fat"][cavity], VAT
    for vy, vx, r in ab.vessels:
        w = _window(ys, xs, vy, vx, r)
        m = np.hypot(y[w[0]] - vy, x[:, w[1]] - vx) < r
        hu[w][m], lab[w][m] = h["wall"] + 60.0, 0
    for cy, cx, r1, r2, angle, t, kind, level in ab.loops:
        w = _window(ys, xs, cy, cx, max(r1, r2))
        v, u = rotate(y[w[0]] - cy, x[:, w[1]] - cx, angle)
        inside = (np.hypot(v / r1, u / r2) < 1.0) & cavity[w]
        lumen = np.hypot(v / max(r1 - t, 0.5), u / max(r2 - t, 0.5)) < 1.0
        yy = np.broadcast_to(y[w[0]], lumen.shape)
        content = {
            0: np.full(lumen.shape, h["wall"]),
            1: np.full(lumen.shape, h["fluid"]),
            2: np.where(yy < cy + level * r1, -950.0, h["fluid"]),
            3: np.full(lumen.shape, h["oral"]),
            4: np.where(f["stool"][w] > 0.9, -900.0, -20.0 + 40.0 * f["stool"][w]),
        }[int(kind)]
        hu[w][inside] = np.where(lumen, content, h["wall"])[inside]
        lab[w][inside] = 0
    for e in ab.organs:
        m = _ellipse(y, x, e) < 0
        hu[m], lab[m] = e[5], 0
    muscle = np.zeros(shape, dtype=bool)
    for e in ab.muscles:
        m = (_ellipse(y, x, e) < 0) & (depth > sat_end)
        muscle |= m
        hu[m], lab[m] = muscle_hu[m], MUSCLE
    # Fatty infiltration (marbling) of the psoas and back muscles, more with myosteatosis.
    marble = muscle & (f["marble"] > 2.3 - 1.5 * ab.myosteatosis)
    hu[marble], lab[marble] = h["imat"], IMAT
    for by, bx, r in ab.blobs:
        r = max(r, min_blob)
        w = _window(ys, xs, by, bx, r)
        m = (np.hypot(y[w[0]] - by, x[:, w[1]] - bx) < r) & (lab[w] == MUSCLE)
        hu[w][m], lab[w][m] = h["imat"], IMAT

    # The L3 vertebra: body, arch round the canal, spinous and transverse processes.
    yv, xv, hw, hd = ab.vertebra
    canal_y = yv + hd + 7.0
    canal = np.hypot((y - canal_y) / 0.8, x - xv)  # the canal is wider than deep
    vb = np.maximum(ellipsoid_sdf((y - yv, x - xv), (hd, hw)), 10.0 - canal)  # posterior wall is concave
    arch = np.zeros(shape, dtype=bool)
    for side in (-1.0, 1.0):
        for a_pt, b_pt, r in (
            ((yv + 0.6 * hd, xv + side * 0.55 * hw), (canal_y, xv + side * 11.0), 3.5),  # pedicle
            ((canal_y, xv + side * 11.0), (canal_y + 13.0, xv + side * 2.0), 2.8),  # lamina
            ((canal_y - 1.0, xv + side * 11.0), (canal_y + 4.0, xv + side * 40.0), 2.5),  # transverse process
        ):
            arch |= segment_distance(y, x, a_pt, b_pt) < r
    arch |= segment_distance(y, x, (canal_y + 12.0, xv), (canal_y + 36.0, xv)) < 2.8  # spinous process
    bone = (vb < 0) | arch
    hu[bone], lab[bone] = np.where(vb < -2.0, h["cancellous"], h["cortical"])[bone], 0
    hu[(canal < 9.0) & ~bone] = 15.0  # thecal sac
    return hu, lab


def make_ct_phantom(rng: np.random.Generator, size: int = 64, noise: float = 1.0) -> CtPhantom:
    """An L3 abdominal CT slice of ``size`` x ``size`` pixels.

    The field of view (358-461 mm, i.e. 0.70-0.90 mm pixels at 512) follows the body's width, as
    a technologist would set it. ``noise`` scales the Gaussian, slightly correlated image noise
    (about 10-20 HU at 1); 0 gives the noise-free image.
    """
    rng = check_rng(rng)
    size = check_int("size", size, 32, 512)
    noise = check_noise(noise)
    ab = _sample_abdomen(rng)
    pixel = ab.fov / size
    ss = 3 if pixel > 1.2 else 1  # sub-pixels for partial volume where pixels are coarse
    axis = (np.arange(size * ss) + 0.5) * (pixel / ss) - ab.fov / 2
    hu, lab = _render(ab, axis, axis, min_blob=0.8 * pixel)
    if ss > 1:  # partial volume with a tent-shaped point spread, sharper than a box
        tent = np.array([1.0, 3.0, 1.0]) / 5.0
        hu = np.einsum("iajb,a,b->ij", hu.reshape(size, ss, size, ss), tent, tent)
        lab = lab[ss // 2 :: ss, ss // 2 :: ss]
    if noise > 0:
        white = ndimage.gaussian_filter(rng.normal(size=(size, size)), 0.7)
        hu = hu + noise * ab.noise_hu * white / white.std()
    return CtPhantom(hu=hu.astype(np.float32), labels=np.ascontiguousarray(lab), spacing_mm=(pixel, pixel))
