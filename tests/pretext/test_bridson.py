from __future__ import annotations

import numpy as np
import pytest

from study.pretext._bridson import _FORWARD_CELLS, _ExclusionRaster, _resolve, grow_poisson_disc


@pytest.mark.parametrize("k", [1, 3, 8, 13])
def test_exclusion_raster_matches_brute_force_distances(k: int) -> None:
    rows, cols, r2 = 41, 57, 2 * k * k  # sides that are not multiples of 8
    rng = np.random.default_rng(k)
    raster = _ExclusionRaster(2, rows, cols, r2)
    points = rng.integers(0, [rows, cols], size=(6, 2))
    owner = np.array([0, 0, 0, 1, 1, 1])
    raster.paint(owner, points + raster.pad)
    pad = raster.pad
    ys, xs = np.mgrid[-pad : rows + pad, -pad : cols + pad]  # every position a candidate can take
    for s in (0, 1):
        mine = points[owner == s]
        d2 = (ys[..., None] - mine[:, 0]) ** 2 + (xs[..., None] - mine[:, 1]) ** 2
        inside = (ys >= 0) & (ys < rows) & (xs >= 0) & (xs < cols)
        expected = inside & (d2 >= r2).all(axis=-1)
        base = raster.base(np.array([s]))[:, None]
        free = raster.free(base, (ys + pad).reshape(1, -1), (xs + pad).reshape(1, -1)).reshape(ys.shape)
        np.testing.assert_array_equal(free, expected)


def sequential_greedy(points: np.ndarray, r2: int) -> list[int]:
    kept: list[int] = []
    for i, p in enumerate(points):
        if all(((p - points[j]) ** 2).sum() >= r2 for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(5))
def test_conflicts_among_proposals_resolve_to_a_valid_greedy_set(seed: int) -> None:
    k, r2 = 4, 32
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, 2, size=60)
    prop = rng.integers(0, 40, size=(60, 2))
    grid_rows = grid_cols = 40 // k + 4
    grid = np.full(2 * grid_rows * grid_cols, -1, dtype=np.int64)
    offsets = _FORWARD_CELLS[:, 0] * grid_cols + _FORWARD_CELLS[:, 1]
    won = _resolve(owner, prop, r2, k, np.random.default_rng(seed), grid, grid_rows, grid_cols, offsets)
    assert (grid == -1).all()  # scratch space left clean
    for s in (0, 1):
        mine = won[owner[won] == s]
        d2 = ((prop[mine, None] - prop[None, mine]) ** 2).sum(-1) + np.eye(len(mine), dtype=int) * r2
        assert (d2 >= r2).all()  # no two accepted proposals conflict
        # a rejected proposal conflicts with an accepted one, or shared its grid cell
        others = np.setdiff1d(np.flatnonzero(owner == s), mine)
        d2 = ((prop[others, None] - prop[None, mine]) ** 2).sum(-1)
        cell = owner * 1000 + (prop[:, 0] // k) * 100 + prop[:, 1] // k
        shared = (cell[others, None] == cell[None, :]).sum(axis=1) > 1
        assert ((d2 < r2).any(axis=1) | shared).all()
        assert (d2 < r2).any(axis=1).sum() >= len(others) // 2  # and most rejections are conflicts


def test_resolve_equals_the_sequential_greedy_rule_when_cells_are_unshared() -> None:
    k, r2 = 4, 32
    rng = np.random.default_rng(0)
    # one proposal per 4 x 4 cell, jittered, so no cell is shared
    cells = np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="ij"), -1).reshape(-1, 2)
    prop = cells * k + rng.integers(0, k, size=cells.shape)
    owner = np.zeros(len(prop), dtype=np.int64)
    grid_rows = grid_cols = 10 + 4
    grid = np.full(grid_rows * grid_cols, -1, dtype=np.int64)
    offsets = _FORWARD_CELLS[:, 0] * grid_cols + _FORWARD_CELLS[:, 1]
    order = np.random.default_rng(1).permutation(len(prop))  # the permutation _resolve will draw
    won = _resolve(owner, prop, r2, k, np.random.default_rng(1), grid, grid_rows, grid_cols, offsets)
    expected = order[sequential_greedy(prop[order], r2)]
    np.testing.assert_array_equal(won, expected)


def test_growth_stops_at_the_limit_and_sets_are_independent() -> None:
    sets = grow_poisson_disc(4, (200, 150), 6, 120, 10, np.random.default_rng(0))
    assert [len(s) for s in sets] == [120] * 4
    for s in sets:
        assert (s >= 0).all() and (s[:, 0] < 200).all() and (s[:, 1] < 150).all()
        d2 = ((s[:, None] - s[None]) ** 2).sum(-1) + np.eye(len(s), dtype=int) * 72
        assert d2.min() >= 72
    assert not np.array_equal(sets[0], sets[1])


def test_growth_to_saturation_leaves_no_room_near_the_accepted_points() -> None:
    # Bridson is not maximal, but a saturated set has no free position within 2r of its seed
    (points,) = grow_poisson_disc(1, (60, 60), 5, None, 30, np.random.default_rng(0))
    ys, xs = np.mgrid[0:60, 0:60]
    d2 = (ys[..., None] - points[:, 0]) ** 2 + (xs[..., None] - points[:, 1]) ** 2
    free = (d2 >= 50).all(axis=-1)
    near_seed = (ys - points[0, 0]) ** 2 + (xs - points[0, 1]) ** 2 < 4 * 50
    assert not (free & near_seed).any()
