"""Building the mask bank: vectorised Poisson-disc growth vs a plain pure-Python Bridson.

The setting of the paper's optimum at full scale: 512 x 512 images, K = 8 (N = 1024 patches per
mask, the largest count), context restoration, the reference (one-seed, stop-at-N) Poisson-disc
sampler, 100 masks. The comparison is a straightforward pure-Python Bridson of the same rule
written below (background grid, lists, ``random``): integer corners, candidates area-uniform in the
annulus [r, 2r) and rounded, ``dy^2 + dx^2 >= 2 K^2``, 10 candidates per active point, one seed,
stop at N. Rounds alternate the two so that load from other processes hits both alike, and the
figures are the best round of each (as ``timeit`` reports), with the medians beside them.

Run: ``python benchmarks/mask_bank.py [--rounds 3] [--python-masks 100]``; the last line printed
is one JSON object. Goal: the bank builds at least 20x faster than the pure-Python sampler alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import time

import numpy as np
import torch
from scipy.spatial import cKDTree

from study.pretext import CorruptionConfig, MaskBank, PoissonDiscSampler

SIZE, K, N_MASKS, CANDIDATES = 512, 8, 100, 10


def bridson_python(height: int, width: int, k: int, n: int, rng: random.Random) -> list[tuple[int, int]]:
    """Pure-Python Bridson: corners in [0, H-K] x [0, W-K], centres >= K*sqrt(2) apart, from one
    seed, stopping at ``n`` points (or when no point is active, then fewer)."""
    rows, cols = height - k + 1, width - k + 1
    r2 = 2 * k * k
    grid_rows, grid_cols = -(-rows // k), -(-cols // k)  # cell side K: one point per cell at most
    grid = [[-1] * grid_cols for _ in range(grid_rows)]
    seed = (rng.randrange(rows), rng.randrange(cols))
    points = [seed]
    grid[seed[0] // k][seed[1] // k] = 0
    active = [0]
    while active and len(points) < n:
        i = rng.randrange(len(active))
        py, px = points[active[i]]
        for _ in range(CANDIDATES):
            radius = math.sqrt(rng.uniform(r2, 4 * r2))
            angle = rng.uniform(0.0, 2.0 * math.pi)
            y, x = py + round(radius * math.sin(angle)), px + round(radius * math.cos(angle))
            if not (0 <= y < rows and 0 <= x < cols):
                continue
            cy, cx = y // k, x // k
            free = True
            for gy in range(max(cy - 2, 0), min(cy + 3, grid_rows)):
                row = grid[gy]
                for gx in range(max(cx - 2, 0), min(cx + 3, grid_cols)):
                    j = row[gx]
                    if j >= 0 and (points[j][0] - y) ** 2 + (points[j][1] - x) ** 2 < r2:
                        free = False
                        break
                if not free:
                    break
            if free:
                grid[cy][cx] = len(points)
                active.append(len(points))
                points.append((y, x))
                break
        else:  # all candidates failed: retire the point
            active[i] = active[-1]
            active.pop()
    return points


def python_sampler(n_masks: int, seed: int) -> tuple[float, list[np.ndarray]]:
    """Seconds for ``n_masks`` pure-Python masks (regrowing a saturated one, as the sampler does)."""
    rng = random.Random(seed)
    n = SIZE * SIZE // (4 * K * K)
    start = time.perf_counter()
    masks = []
    while len(masks) < n_masks:
        points = bridson_python(SIZE, SIZE, K, n, rng)
        if len(points) == n:
            masks.append(np.array(points))
    return time.perf_counter() - start, masks


def mean_nearest_distance(masks: list[np.ndarray]) -> float:
    return float(np.mean([cKDTree(m).query(m, k=2)[0][:, 1].mean() for m in masks]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--python-masks", type=int, default=N_MASKS, help="pure-Python masks timed per round")
    args = parser.parse_args()
    config = CorruptionConfig("restoration", "poisson_disc", K, n_masks=N_MASKS)
    warm_up = CorruptionConfig("restoration", "poisson_disc", K, n_masks=2)
    MaskBank.build(warm_up, (SIZE, SIZE), 0)

    bank_s, sampling_s, python_s = [], [], []
    for round_ in range(args.rounds):
        start = time.perf_counter()
        bank = MaskBank.build(config, (SIZE, SIZE), seed=round_)
        bank_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        rng = np.random.default_rng(round_)
        vectorised = PoissonDiscSampler(K).sample_many(N_MASKS, SIZE, SIZE, rng, paired=True)
        sampling_s.append(time.perf_counter() - start)
        seconds, python_masks = python_sampler(args.python_masks, seed=round_)
        python_s.append(seconds * N_MASKS / args.python_masks)
        print(
            f"round {round_}: bank {bank_s[-1]:.3f} s, vectorised sampling {sampling_s[-1]:.3f} s, "
            f"pure Python {python_s[-1]:.2f} s for {N_MASKS} masks"
            + ("" if args.python_masks == N_MASKS else f" (extrapolated from {args.python_masks})")
        )

    bank_best, sampling_best, python_best = (min(v) for v in (bank_s, sampling_s, python_s))
    bank_med, sampling_med, python_med = (statistics.median(v) for v in (bank_s, sampling_s, python_s))
    speedup = python_best / bank_best
    nn_vec, nn_py = mean_nearest_distance(vectorised), mean_nearest_distance(python_masks)
    print(f"bank build (sampling + index rows): best {bank_best:.3f} s, median {bank_med:.3f} s")
    print(f"vectorised sampling alone: best {sampling_best:.3f} s, median {sampling_med:.3f} s")
    print(
        f"pure-Python Bridson, {N_MASKS} masks: best {python_best:.2f} s, median {python_med:.2f} s "
        f"({1e3 * python_best / N_MASKS:.1f} ms/mask)"
    )
    print(
        f"speedup (best rounds): bank {speedup:.1f}x, sampling {python_best / sampling_best:.1f}x; "
        f"medians: bank {python_med / bank_med:.1f}x (goal >= 20x)"
    )
    print(
        f"same rule: mean nearest-neighbour corner distance {nn_vec:.2f} px (vectorised) vs "
        f"{nn_py:.2f} px (pure Python), minimum allowed {K * math.sqrt(2):.2f} px"
    )
    print(
        f"bank memory: {bank.nbytes / 1e6:.1f} MB ({bank.n_masks} masks of int32 pixel indices; rotations are computed)"
    )
    print(
        json.dumps(
            {
                "benchmark": "mask_bank",
                "image": [SIZE, SIZE],
                "patch_size": K,
                "n_masks": N_MASKS,
                "patches_per_mask": SIZE * SIZE // (4 * K * K),
                "task": "restoration",
                "sampler": "poisson_disc (reference, one seed, stop at N)",
                "bank_build_s": round(bank_best, 4),
                "vectorised_sampling_s": round(sampling_best, 4),
                "pure_python_s": round(python_best, 3),
                "pure_python_extrapolated_from_masks": None if args.python_masks == N_MASKS else args.python_masks,
                "speedup_bank_vs_pure_python": round(speedup, 1),
                "speedup_sampling_vs_pure_python": round(python_best / sampling_best, 1),
                "median_s": {
                    "bank": round(bank_med, 4),
                    "sampling": round(sampling_med, 4),
                    "pure_python": round(python_med, 3),
                },
                "speedup_bank_medians": round(python_med / bank_med, 1),
                "timing": "best of rounds",
                "goal_speedup": 20,
                "goal_met": speedup >= 20,
                "mean_nn_distance_px": {"vectorised": round(nn_vec, 3), "pure_python": round(nn_py, 3)},
                "bank_mb": round(bank.nbytes / 1e6, 1),
                "rounds": args.rounds,
                "load_average_1min_at_end": round(os.getloadavg()[0], 2),
                "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.processor() or 'cpu'}",
                "numpy": np.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
