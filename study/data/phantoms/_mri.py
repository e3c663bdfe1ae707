"""Knee qDESS phantom: a sagittal volume with cartilage, menisci, bone, fluid, fat and muscle.

Tissues get proton density, T1 and T2 (per-subject jitter, spatial variation in cartilage); the two
echoes come from :func:`study.data.qdess.dess_echoes`, so :func:`study.data.qdess.estimate_t2`
with the T1 map recovers the stored T2 exactly from noise-free echoes. The acquisition (``noise``
> 0) then adds a smooth coil bias field, a little blur (partial volume) and Rician noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from study.data.phantoms._knee import Femur, Meniscus, Patella, Tibia, anterior_surface, to_subject
from study.data.phantoms._shapes import (
    SmoothField,
    check_int,
    check_noise,
    check_rng,
    ellipsoid_sdf,
    rotate,
    segment_distance,
    smooth_union,
    smoothstep,
)
from study.data.qdess import QDessParams, dess_echoes

MRI_CLASSES: tuple[str, ...] = ("patellar_cartilage", "femoral_cartilage", "tibial_cartilage", "meniscus")

FOV_MM = 120.0  # in-plane field of view (rows and columns)
SLAB_MM = 96.0  # mediolateral coverage of the slices

_RENDER_FIELDS = ("fc", "tc", "pc", "t2", "septa", "fluid", "body", "sc")
AIR, FAT, MUSCLE, FLUID, MARROW, CORTEX, LIGAMENT, VESSEL, CARTILAGE, MENISCUS = range(10)
# Nominal (PD, T1 ms, T2 ms) per tissue code. PD is an effective amplitude chosen so the first echo
# ranks fluid > cartilage > fat > muscle > marrow > meniscus > ligament, as in a water-excited
# qDESS; cortex and air give (almost) no signal.
_NOMINAL = np.array(
    [
        [0.0, 1000.0, 0.0],  # air (T1 is a placeholder so the map can be passed to estimate_t2)
        [0.08, 350.0, 80.0],  # fat (water excitation leaves little)
        [0.34, 1400.0, 35.0],  # muscle
        [1.6, 3000.0, 250.0],  # joint fluid
        [0.11, 380.0, 45.0],  # fatty bone marrow
        [0.05, 1000.0, 0.8],  # cortical bone
        [0.14, 800.0, 6.0],  # tendon and ligament
        [0.3, 1600.0, 120.0],  # popliteal vessels
        [0.5, 1200.0, 38.0],  # hyaline cartilage (T2 replaced by the subject's map)
        [0.2, 1000.0, 12.0],  # meniscus
    ]
)


@dataclass(frozen=True)
class MriPhantom:
    """One knee scan (one subject). Arrays are (S, H, W): sagittal slices from medial to lateral
    (or reversed for a left knee), rows superior to inferior, columns anterior to posterior.

    echo1, echo2: float32 DESS echo magnitudes (arbitrary units, with bias, blur and Rician noise
    unless ``noise=0``). t2_ms, t1_ms: float32 true relaxation maps used to make the echoes (T2 is
    0 where there is no signal; T1 is positive everywhere). labels: uint8, 0 background, then
    :data:`MRI_CLASSES` as 1..4. spacing_mm: (slice, row, col). params: the scan's qDESS settings.
    """

    echo1: np.ndarray
    echo2: np.ndarray
    t2_ms: np.ndarray
    t1_ms: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    params: QDessParams


@dataclass(frozen=True, eq=False)
class _Knee:
    shift: tuple[float, float, float]  # (z, y, x) of the knee in the scanner frame
    scale: float
    tilt: float  # rad, sagittal rotation of the whole knee
    yaw: float  # rad, rotation about the vertical axis: slices oblique to the condyles
    side: float  # +1 right knee, -1 left (mirrors z)
    flexion: float  # rad, femur about the condyle centre
    centre: tuple[float, float]  # (y, x) condyle centre, subject frame
    femur: Femur
    tibia: Tibia
    menisci: tuple[Meniscus, Meniscus]
    patella: Patella
    thickness: tuple[float, float, float]  # femoral, tibial, patellar cartilage (mm)
    meniscus_gap: float
    soft: tuple[float, float, float]  # anterior and posterior soft-tissue depth, subcutaneous fat
    effusion: float  # 0..1
    bursa: tuple[float, float, float, float, float, float]  # femur frame centre and radii
    cyst: tuple[float, ...] | None  # Baker's cyst (subject frame centre and radii) or None
    lesions: tuple[tuple[float, ...], ...]  # (z, y, x, radius, dT2, full-thickness) femur frame
    meniscus_degeneration: float  # ms added in the medial posterior horn
    fields: dict[str, SmoothField]
    tissues: np.ndarray  # (10, 3) this subject's (PD, T1, T2)
    params: QDessParams
    noise_rel: float  # noise sigma relative to the cartilage's first-echo signal


def _sample_knee(rng: np.random.Generator) -> _Knee:
    u = rng.uniform
    r_med = u(19.0, 24.0)
    r_lat = r_med * u(0.85, 0.95)
    femur = Femur(r_med, r_lat, -u(20.0, 24.0), u(19.0, 23.0), u(13.0, 16.5), u(12.0, 15.0), u(2.0, 5.0))
    t_fc, t_tc, t_pc = u(3.0, 4.5), u(2.6, 4.0), u(3.6, 5.4)
    gap = u(0.0, 0.6)  # the plates usually touch: no visible joint space between them
    centre = (-r_med - u(-3.0, 3.0), u(-3.0, 4.0))
    y_med = centre[0] + r_med + t_fc + t_tc + gap
    y_lat = centre[0] + r_lat + t_fc + t_tc + gap
    half_z = 0.5 * abs(femur.z_lat - femur.z_med) + u(15.0, 18.0)
    tibia = Tibia(
        femur.z_med,
        femur.z_lat,
        y_med,
        y_lat,
        centre[1],
        centre[1] + u(-2.0, 3.0),
        half_z,
        1.15 * femur.r_mean * u(0.95, 1.1),
        np.tan(np.deg2rad(u(4.0, 10.0))),
        u(0.5, 2.0),
        u(5.0, 9.0),
    )
    inner = u(0.5, 0.65)
    menisci = tuple(
        Meniscus(
            zc, centre[1], max(half_z - abs(zc - tibia.z_mid) - 1.0, 8.0), 0.95 * tibia.half_x, inner, u(5.0, 8.0), bulk
        )
        for zc, bulk in ((femur.z_med, u(0.2, 0.45)), (femur.z_lat, u(-0.1, 0.1)))
    )
    flexion = np.deg2rad(u(0.0, 20.0))
    # The patella rests on the trochlea at a subject-specific height (alta / baja).
    z_p = femur.z_mid + np.sign(femur.z_lat - femur.z_med) * u(1.0, 5.0)
    y_p = -u(0.6, 1.0) * femur.r_mean
    radii_p = (u(18.0, 23.0), u(16.0, 21.0), u(9.0, 12.0))
    x_s, normal = anterior_surface(femur, z_p, y_p)
    lift = t_fc + u(0.4, 1.2) + t_pc + radii_p[2]
    patella = Patella((z_p, y_p + lift * normal[0], x_s + lift * normal[1]), normal, radii_p)
    effusion = u(0.0, 1.0) ** 1.5
    y_b = patella.pole(+1)[0] - u(4.0, 10.0) - 6.0 * effusion
    x_b, _ = anterior_surface(femur, femur.z_mid, y_b)
    bursa = (
        femur.z_mid,
        y_b,
        x_b - 2.0 - (1.0 + 3.0 * effusion),
        16.0 + 8.0 * effusion,
        6.0 + 10.0 * effusion,
        1.0 + 3.0 * effusion,
    )
    cyst = None
    if u() < 0.3:
        cyst = (
            0.8 * femur.z_med,
            centre[0] + u(-5.0, 10.0),
            centre[1] + r_med + u(6.0, 12.0),
            u(5.0, 10.0),
            u(8.0, 16.0),
            u(4.0, 8.0),
        )
    lesions = []
    for _ in range(rng.poisson(1.2)):
        zc, rz = (femur.z_med, femur.rz_med) if u() < 0.6 else (femur.z_lat, femur.rz_lat)
        phi, r = u(-0.6, 1.2), (femur.r_med if zc == femur.z_med else femur.r_lat) + 0.5 * t_fc
        lesions.append(
            (zc + u(-0.5, 0.5) * rz, r * np.cos(phi), r * np.sin(phi), u(2.5, 5.0), u(8.0, 25.0), float(u() < 0.25))
        )
    fields = {
        name: SmoothField.draw(rng, 3, scale)
        for name, scale in (
            ("fc", 12.0),
            ("tc", 10.0),
            ("pc", 10.0),
            ("t2", 6.0),
            ("marrow", 1.5),
            ("texture", 8.0),
            ("septa", 14.0),
            ("fluid", 10.0),
            ("body", 25.0),
            ("sc", 15.0),
            ("bias", 60.0),
        )
    }
    tissues = _NOMINAL * np.column_stack([u(0.85, 1.15, 10), u(0.93, 1.07, 10), u(0.9, 1.1, 10)])
    tissues[CARTILAGE, 2] = u(30.0, 45.0)
    tissues[MENISCUS, 2] = u(10.0, 15.0)
    tissues[FLUID, 2] = u(200.0, 400.0)
    params = QDessParams(u(17.8, 18.6), u(5.6, 6.0), 20.0, u(3000.0, 3250.0), u(1500.0, 1620.0))
    return _Knee(
        shift=(u(-4.0, 4.0), u(-5.0, 5.0), u(-4.0, 6.0)),
        scale=u(0.92, 1.08),
        tilt=np.deg2rad(u(-7.0, 7.0)),
        yaw=np.deg2rad(u(-8.0, 8.0)),
        side=1.0 if u() < 0.5 else -1.0,
        flexion=flexion,
        centre=centre,
        femur=femur,
        tibia=tibia,
        menisci=menisci,
        patella=patella,
        thickness=(t_fc, t_tc, t_pc),
        meniscus_gap=u(0.0, 0.8),
        soft=(u(7.0, 14.0), u(60.0, 90.0), u(3.0, 9.0)),
        effusion=effusion,
        bursa=bursa,
        cyst=cyst,
        lesions=tuple(lesions),
        meniscus_degeneration=u(5.0, 15.0) * (u() < 0.35),
        fields=fields,
        tissues=tissues,
        params=params,
        noise_rel=u(0.05, 0.09),
    )


def _render(k: _Knee, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue codes, labels and the cartilage/meniscus T2 map at scanner coordinates (mm).

    z, y, x broadcast to the output shape. Later painting wins, so the order below is the
    anatomy's stacking order: soft tissue, fluid, tendons, meniscus, bone, cartilage.
    """
    # Scanner -> subject frame.
    zs, ys, xs = k.side * (z - k.shift[0]), y - k.shift[1], x - k.shift[2]
    xs, zs = rotate(xs, zs, k.yaw)
    ys, xs = rotate(ys, xs, k.tilt)
    Z, Y, X = zs / k.scale, ys / k.scale, xs / k.scale
    Z, Y, X = np.broadcast_arrays(Z, Y, X)
    yf, xf = rotate(Y - k.centre[0], X - k.centre[1], -k.flexion)
    fem, tib, pat = k.femur, k.tibia, k.patella
    # Random fields are anchored to the scanner grid (separable, hence cheap): they are random
    # per subject anyway, so which frame they move with does not matter.
    f = {name: field.on_grid(z, y, x) for name, field in k.fields.items() if name in _RENDER_FIELDS}
    t_fc0, t_tc0, t_pc0 = k.thickness
    d_fem, d_tib, d_pat = fem.sdf(Z, yf, xf), tib.sdf(Z, Y, X), pat.sdf(Z, yf, xf)
    t_fc = t_fc0 * (1.0 + 0.22 * np.clip(f["fc"], -2, 2))
    t_tc = t_tc0 * (1.0 + 0.22 * np.clip(f["tc"], -2, 2))
    w_p, v_p, _ = pat.local(Z, yf, xf)
    t_pc = (
        t_pc0
        * (1.0 + 0.18 * np.clip(f["pc"], -2, 2))
        * np.sqrt(np.clip(1.0 - (v_p / pat.radii[1]) ** 2 - (w_p / pat.radii[0]) ** 2, 0.15, 1.0))
    )
    top, foot = tib.top(Z, X), tib.footprint(Z, Y, X)
    fem_art, pat_art = fem.articular(Z, yf, xf), pat.articular(Z, yf, xf)

    # Tendons: patellar (pole to tuberosity) and quadriceps (pole upwards), flat bands in z.
    lo, hi = to_subject(*pat.pole(-1), k.centre, k.flexion), to_subject(*pat.pole(+1), k.centre, k.flexion)
    z_pat = pat.centre[0]
    band = np.clip(1.0 - ((Z - z_pat) / 14.0) ** 2, 0.0, 1.0) ** 0.5
    d_tendon = np.minimum(
        segment_distance(Y, X, lo, tib.tuberosity_front()) - 3.0 * band,
        segment_distance(Y, X, hi, (hi[0] - 80.0, hi[1] - 6.0)) - 4.0 * band,
    )

    # Body outline: an inflated union of the bones, thin in front and thick behind.
    inner = smooth_union(smooth_union(d_fem, d_tib, 20.0), smooth_union(d_pat, d_tendon, 10.0), 20.0)
    t_ant, t_post, sc0 = k.soft
    depth = (t_ant + (t_post - t_ant) * smoothstep(-15.0, 25.0, X - k.centre[1])) * (1 + 0.12 * f["body"])
    tissue = np.full(Z.shape, AIR, dtype=np.uint8)
    tissue[inner < depth] = MUSCLE
    tissue[(tissue == MUSCLE) & (np.abs(f["septa"]) < 0.04)] = FAT  # intermuscular septa
    y_joint = 0.5 * (tib.y_med + tib.y_lat)
    hoffa = ellipsoid_sdf((Z - tib.z_mid, Y - y_joint + 4.0, X - tib.x_centre + tib.half_x + 2.0), (22.0, 15.0, 13.0))
    popliteal = ellipsoid_sdf(
        (Z - tib.z_mid, Y - y_joint + 5.0, X - k.centre[1] - fem.r_med - 24.0), (18.0, 30.0, 11.0)
    )
    tissue[(inner < depth) & ((hoffa < 0) | (popliteal < 0))] = FAT
    tissue[(inner < depth) & (inner > depth - sc0 * (1 + 0.3 * f["sc"]))] = FAT
    tissue[(inner < depth) & (inner > depth - 1.0)] = MUSCLE  # skin

    vessel_x = k.centre[1] + fem.r_med + 22.0
    tissue[np.hypot(Z - tib.z_mid - 3.0, X - vessel_x) < 3.5] = VESSEL
    tissue[np.hypot(Z - tib.z_mid + 2.0, X - vessel_x - 7.0) < 4.5] = VESSEL

    # Fluid: a patchy film on the articular surfaces, the suprapatellar bursa, maybe a cyst.
    film = 2.5 * k.effusion * np.clip(0.4 + f["fluid"], 0.0, 1.5)
    fluid = (d_fem > 0) & (d_fem < t_fc + film) & fem_art
    fluid |= (d_pat > 0) & (d_pat < t_pc + film) & pat_art
    fluid |= (top - Y > 0) & (top - Y < t_tc + film) & (foot < 0)
    # Where the plates do not touch, the joint space between them holds a film of fluid.
    fluid |= (d_fem > 0) & (d_fem < t_fc + 3.0) & (top - Y > 0) & (top - Y < t_tc + 3.0) & (foot < 0)
    b = k.bursa
    fluid |= ellipsoid_sdf((Z - b[0], yf - b[1], xf - b[2]), b[3:]) < 0
    if k.cyst is not None:
        c = k.cyst
        fluid |= ellipsoid_sdf((Z - c[0], Y - c[1], X - c[2]), c[3:]) < 0
    tissue[fluid & (inner < depth)] = FLUID

    tissue[d_tendon < 0] = LIGAMENT
    for (ty, tx), (fy, fx), r, dz in (
        # (tibial end, femoral end in the femur frame, radius, z offset): PCL, then ACL
        ((y_joint + 10.0, tib.x_centre + 0.75 * tib.half_x), (0.1 * fem.r_mean, -0.35 * fem.r_mean), 3.5, -2.0),
        ((y_joint - 1.0, tib.x_centre - 0.35 * tib.half_x), (-0.2 * fem.r_mean, 0.55 * fem.r_mean), 2.8, 2.0),
    ):
        end = to_subject(fy, fx, k.centre, k.flexion)
        tissue[(segment_distance(Y, X, (ty, tx), end) < r) & (np.abs(Z - tib.z_mid - dz) < 4.5)] = LIGAMENT

    labels = np.zeros(Z.shape, dtype=np.uint8)
    t2 = np.zeros(Z.shape)
    for men in k.menisci:
        rho = men.rho(Z, X)
        base = np.where(rho < 0.88, top - t_tc, top)  # on the cartilage centrally, on bone at the rim
        m = (Y < base) & (Y > top - t_tc - men.height_at(Z, X)) & (d_fem > t_fc + k.meniscus_gap)
        m &= (np.abs(Z - tib.z_mid) > 4.0) & (foot < 0.5)
        tissue[m], labels[m] = MENISCUS, 4
        degenerate = smoothstep(0.2, 0.6, (X - men.x_centre) / men.half_x) * (men is k.menisci[0])
        t2 = np.where(m, k.tissues[MENISCUS, 2] * (1 + 0.1 * f["t2"]) + k.meniscus_degeneration * degenerate, t2)

    for d in (d_fem, d_tib, d_pat):
        tissue[d < 0] = CORTEX
        tissue[d < -1.3] = MARROW
    fib = ellipsoid_sdf(
        (
            Z - fem.z_lat - np.sign(fem.z_lat - fem.z_med) * 12.0,
            Y - y_joint - 22.0,
            X - tib.x_centre - 0.6 * tib.half_x,
        ),
        (9.0, 11.0, 9.0),
    )  # fibular head
    tissue[fib < 0], tissue[fib < -1.3] = CORTEX, MARROW
    tissue[(d_fem < -1.3) & (np.abs(yf + 1.2 * fem.r_mean + 3.0 * np.cos(Z / 9.0)) < 0.7)] = CORTEX  # physeal scar
    tissue[(d_tib < -1.3) & (np.abs(Y - y_joint - 17.0 - 2.0 * np.cos(X / 8.0)) < 0.7)] = CORTEX

    # Cartilage, with T2 rising from the bone to the surface and focal lesions.
    t2_cart = k.tissues[CARTILAGE, 2] * (1.0 + 0.12 * f["t2"])
    plates = (
        (2, (d_fem > 0) & (d_fem < t_fc) & fem_art, d_fem / t_fc),
        (
            3,
            (top - Y > 0)
            & (top - Y < t_tc)
            & (foot < -1.5)
            & (np.abs(Z - tib.z_mid) > 5.0)
            & (np.minimum(k.menisci[0].rho(Z, X), k.menisci[1].rho(Z, X)) < 0.95),
            (top - Y) / t_tc,
        ),
        (1, (d_pat > 0) & (d_pat < t_pc) & pat_art, d_pat / t_pc),
    )
    for label, mask, frac in plates:
        tissue[mask], labels[mask] = CARTILAGE, label
        t2 = np.where(mask, t2_cart * (0.8 + 0.4 * np.clip(frac, 0, 1)), t2)
    for lz, ly, lx, lr, dt2, full in k.lesions:
        inside = (labels == 2) & (ellipsoid_sdf((Z - lz, yf - ly, xf - lx), (lr, lr, lr)) < 0)
        t2 = np.where(inside, t2 + dt2, t2)
        if full:  # a full-thickness defect: the cartilage is gone, fluid fills the gap
            tissue[inside], labels[inside] = FLUID, 0
    return tissue, labels, np.clip(t2, 0.0, 90.0)


def make_mri_phantom(rng: np.random.Generator, size: int = 64, n_slices: int = 16, noise: float = 1.0) -> MriPhantom:
    """A knee qDESS volume of ``n_slices`` sagittal slices of ``size`` x ``size`` pixels.

    The field of view is 120 mm in-plane and 96 mm across the slices. ``noise`` scales the
    acquisition: 0 gives ideal echoes (no bias field, blur or noise), 1 the realistic default.
    All randomness comes from ``rng``; the anatomy is drawn before any pixel noise.
    """
    rng = check_rng(rng)
    size = check_int("size", size, 32, 512)
    n_slices = check_int("n_slices", n_slices, 1, 512)
    noise = check_noise(noise)
    knee = _sample_knee(rng)
    d_slice, d_pix = SLAB_MM / n_slices, FOV_MM / size
    z = ((np.arange(n_slices) + 0.5) * d_slice - SLAB_MM / 2)[:, None, None]
    yx = (np.arange(size) + 0.5) * d_pix - FOV_MM / 2
    shape = (n_slices, size, size)
    tissue, labels, t2_special = np.empty(shape, np.uint8), np.empty(shape, np.uint8), np.empty(shape)
    step = max(1, 2**19 // (size * size))  # bounds the temporaries at 512 px
    for s in range(0, n_slices, step):
        sl = slice(s, s + step)
        tissue[sl], labels[sl], t2_special[sl] = _render(knee, z[sl], yx[None, :, None], yx[None, None, :])

    pd, t1, t2 = (knee.tissues[tissue, i] for i in range(3))
    t2 = np.where((tissue == CARTILAGE) | (tissue == MENISCUS), t2_special, t2)
    texture = 1.0 + 0.08 * knee.fields["texture"].on_grid(z, yx, yx)
    pd = pd * np.where(tissue == MARROW, 1.0 + 0.15 * knee.fields["marrow"].on_grid(z, yx, yx), texture)
    echo1, echo2 = dess_echoes(pd, t1, t2, knee.params)
    if noise > 0:
        # Coil sensitivity: smooth, and stronger at the front where the coil sits closest.
        bias = np.exp(0.2 * knee.fields["bias"].on_grid(z, yx, yx) - 0.15 * yx / (FOV_MM / 2))
        ref = dess_echoes(
            np.array(knee.tissues[CARTILAGE, 0]),
            knee.tissues[CARTILAGE, 1],
            np.array(knee.tissues[CARTILAGE, 2]),
            knee.params,
        )[0]
        sigma = noise * knee.noise_rel * float(ref)
        echoes = []
        for e in (echo1, echo2):
            e = ndimage.gaussian_filter(e * bias, sigma=(0.0, 0.6, 0.6))
            n = rng.normal(0.0, sigma, (2, *shape))
            echoes.append(np.hypot(e + n[0], n[1]))  # Rician magnitude
        echo1, echo2 = echoes
    return MriPhantom(
        echo1=echo1.astype(np.float32),
        echo2=echo2.astype(np.float32),
        t2_ms=t2.astype(np.float32),
        t1_ms=t1.astype(np.float32),
        labels=labels,
        spacing_mm=(float(d_slice), float(d_pix), float(d_pix)),
        params=knee.params,
    )
