"""Bridson's Poisson-disc growth (SIGGRAPH sketches 2007), vectorised over points and over sets.

The rule is the sequential algorithm's: integer points at least ``r = K * sqrt(2)`` apart
(``dy^2 + dx^2 >= 2 K^2``, tested exactly in integers), grown from one random seed point per set;
an active point draws up to ``candidates`` points uniformly (in area) from the annulus ``[r, 2r)``
around it, rounded to the pixel grid; the first one far enough from every accepted point is
accepted and becomes active, and an active point whose candidates all fail is retired. Growth
stops at ``limit`` points or when no point is active.

What is vectorised, and how. Every round handles every active point of every set at once:

* **Exclusion raster.** Instead of looking up the background-grid cells around each candidate
  (21 distance tests), every accepted point paints the positions closer than r to it into a
  bit raster, and a candidate is tested with one word read. Bits are packed in 8 x 8 pixel
  blocks, one ``uint64`` each, so the disc of about ``2 pi K^2`` positions costs about
  ``(2 sqrt(2) K / 8 + 1)^2`` word ORs (12 for K = 8). The domain's surroundings are painted
  from the start, so candidates need no bounds test.
* **First free candidate.** Each active point proposes the first free one of its candidates, as
  the sequential inner loop would accept it. Candidates are drawn in two stages, the later ones
  only for points whose first few all failed (same first free candidate, less work).
* **Conflicts among simultaneous proposals.** Two proposals closer than r cannot both be
  accepted. Proposals get a random priority; of proposals sharing a background cell of side K
  (always closer than r) one keeps the cell; among the rest, the greedy rule "accepted unless an
  accepted proposal of higher priority is closer than r" is resolved exactly in a few vectorised
  sweeps over the conflicting pairs, found in the neighbouring cells. A proposer that loses stays
  active and tries again next round; new points join the active set, so growth spreads outward
  from the seed as in the sequential algorithm.

Growing many sets at once (a whole mask bank) amortises numpy's per-call cost. See
``benchmarks/mask_bank.py`` for the comparison with a pure-Python Bridson of the same rule.
"""

from __future__ import annotations

import math

import numpy as np

# Offsets of the background-grid cells that can hold a point closer than r = K*sqrt(2) to a point
# in the centre cell (the 5 x 5 block without its corners, where both offsets exceed K), keeping
# only the forward half: a pair of cells is then looked at once.
_FORWARD_CELLS = np.array(
    [(dy, dx) for dy in range(3) for dx in range(-2, 3) if abs(dy) + abs(dx) < 4 and (dy, dx) > (0, 0)],
    dtype=np.int64,
)
# Bounds the (active x candidates) arrays of one round; beyond it a random subset goes first.
_MAX_ACTIVE = 1 << 17
# Candidates drawn for every active point before the rest are drawn for those still without one.
_FIRST_STAGE = 3


def grow_poisson_disc(
    n_sets: int,
    domain: tuple[int, int],
    patch_size: int,
    limit: int | None,
    candidates: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Grow ``n_sets`` independent Poisson-disc sets of integer points, each from one seed.

    Args:
        n_sets: number of sets grown side by side.
        domain: ``(rows, cols)``; points take values in ``[0, rows) x [0, cols)``.
        patch_size: K; the minimum distance is ``r = K * sqrt(2)``.
        limit: stop a set as soon as it holds this many points; None grows to saturation.
        candidates: candidates per active point and round (Bridson's k).
        rng: the only source of randomness.

    Returns:
        one int64 array ``(M_i, 2)`` of ``(row, col)`` per set, in acceptance order; ``M_i`` below
        ``limit`` means the set saturated first.
    """
    rows, cols = domain
    k = patch_size
    r2 = 2 * k * k
    capacity = -(-rows // k) * -(-cols // k)  # at most one point per cell of side K
    target = np.full(n_sets, capacity if limit is None else min(limit, capacity), dtype=np.int64)
    raster = _ExclusionRaster(n_sets, rows, cols, r2)
    pad = raster.pad  # points are kept in the raster's padded coordinates until returned
    grid_rows = -(-(rows + 2 * pad) // k) + 4  # 2 empty cells on every side
    grid_cols = -(-(cols + 2 * pad) // k) + 4
    proposal_grid = np.full(n_sets * grid_rows * grid_cols, -1, dtype=np.int64)
    cell_offsets = _FORWARD_CELLS[:, 0] * grid_cols + _FORWARD_CELLS[:, 1]

    # Points of all sets in one list, in acceptance order; point i belongs to set owner[i].
    points = np.zeros((int(target.sum()), 2), dtype=np.int32)
    owner = np.zeros(points.shape[0], dtype=np.int64)
    seeds = np.stack([rng.integers(rows, size=n_sets), rng.integers(cols, size=n_sets)], axis=1)
    points[:n_sets] = seeds + pad
    owner[:n_sets] = np.arange(n_sets)
    raster.paint(owner[:n_sets], points[:n_sets])
    total = n_sets
    count = np.ones(n_sets, dtype=np.int64)
    active = np.arange(n_sets)

    while active.size:
        if active.size > _MAX_ACTIVE:
            order = rng.permutation(active.size)
            active, waiting = active[order[:_MAX_ACTIVE]], active[order[_MAX_ACTIVE:]]
        else:
            waiting = active[:0]

        stay, prop = _first_free(points[active], owner[active], candidates, r2, raster, rng)
        stay = active[stay]
        prop_set = owner[stay]
        won = _resolve(prop_set, prop, r2, k, rng, proposal_grid, grid_rows, grid_cols, cell_offsets)
        new_set, new = prop_set[won], prop[won]

        # A set about to pass its limit keeps its proposals of highest priority (won's order).
        gained = np.bincount(new_set, minlength=n_sets)
        if np.any(count + gained > target):
            order = np.argsort(new_set, kind="stable")
            rank = np.empty(new_set.size, dtype=np.int64)
            rank[order] = np.arange(new_set.size) - np.searchsorted(new_set[order], new_set[order])
            keep = rank < (target - count)[new_set]
            new_set, new = new_set[keep], new[keep]
            gained = np.bincount(new_set, minlength=n_sets)
        added = np.arange(total, total + new_set.size)
        points[added], owner[added] = new, new_set
        total += new_set.size
        count += gained
        raster.paint(new_set, new)

        active = np.concatenate([waiting, stay, added])
        active = active[(count < target)[owner[active]]]

    order = np.argsort(owner[:total], kind="stable")
    return np.split(points[order].astype(np.int64) - pad, np.cumsum(count)[:-1])


def _first_free(
    centre: np.ndarray,
    owner: np.ndarray,
    candidates: int,
    r2: int,
    raster: _ExclusionRaster,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """For active points ``centre (A, 2)`` (padded coordinates) of sets ``owner (A,)``: the
    indices of those with a free candidate among their ``candidates`` draws, and that first free
    candidate ``(P, 2)``.

    Candidates are area-uniform in the annulus ``[r, 2r)``, rounded to the pixel grid. They are
    drawn in two stages, the later ones only for points whose first draws all failed: the first
    free candidate of an i.i.d. sequence is the same either way, and most points that succeed do
    so early. float32 is exact enough for offsets below 2r and much faster in sin and cos.
    """
    todo = np.arange(centre.shape[0])
    base = raster.base(owner)
    found, first_free = [], []
    for stage in (min(candidates, _FIRST_STAGE), candidates - _FIRST_STAGE):
        if stage <= 0 or todo.size == 0:
            break
        shape = (todo.size, stage)
        radius = np.sqrt(np.float32(r2) * (1 + 3 * rng.random(shape, dtype=np.float32)))
        angle = np.float32(2 * np.pi) * rng.random(shape, dtype=np.float32)
        cy = centre[todo, 0, None] + np.rint(radius * np.sin(angle)).astype(np.int32)
        cx = centre[todo, 1, None] + np.rint(radius * np.cos(angle)).astype(np.int32)
        free = raster.free(base[todo, None], cy, cx)
        first = free.argmax(axis=1)
        hit = free[np.arange(todo.size), first]
        found.append(todo[hit])
        first_free.append(np.stack([cy[hit, first[hit]], cx[hit, first[hit]]], axis=1))
        todo = todo[~hit]
    return np.concatenate(found), np.concatenate(first_free)


class _ExclusionRaster:
    """One bit per position and set, set where no point may go: closer than r to an accepted
    point, or outside the domain.

    Bits are packed in 8 x 8 pixel blocks, one ``uint64`` per block, so the disc of about
    ``2 pi K^2`` positions around a point is painted with about ``(2 sqrt(2) K / 8 + 1)^2`` word
    ORs (12 for K = 8, instead of 400 byte writes) and a candidate is tested with one word read.
    The domain is padded by more than 2r on every side and the padding painted from the start, so
    every candidate (at most 2r from a point) lands in the raster and needs no bounds test.
    """

    def __init__(self, n_sets: int, rows: int, cols: int, r2: int) -> None:
        self.pad = math.isqrt(4 * r2) + 1
        self.block_rows = -(-(rows + 2 * self.pad) // 8)
        self.block_cols = -(-(cols + 2 * self.pad) // 8)
        outside = np.ones((self.block_rows * 8, self.block_cols * 8), dtype=bool)
        outside[self.pad : self.pad + rows, self.pad : self.pad + cols] = False
        self.words = np.tile(_pack_blocks(outside[None])[0].ravel(), n_sets)
        self.offsets, self.bits = _disc_stencil(r2, self.block_cols)

    def base(self, owner: np.ndarray) -> np.ndarray:
        """Index of the first word of each set in ``owner``."""
        return (owner * (self.block_rows * self.block_cols)).astype(np.int32)

    def free(self, base: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Whether padded position ``(y, x)`` of the set starting at ``base`` may be accepted."""
        word = base + (y >> 3) * self.block_cols + (x >> 3)
        bit = (((y & 7) << 3) | (x & 7)).astype(np.uint64)
        return ((self.words[word] >> bit) & np.uint64(1)) == 0

    def paint(self, owner: np.ndarray, pts: np.ndarray) -> None:
        """Exclude the disc of radius r around each padded point ``pts[i]`` of set ``owner[i]``."""
        y, x = pts[:, 0], pts[:, 1]
        word = self.base(owner) + (y >> 3) * self.block_cols + (x >> 3)
        phase = ((y & 7) << 3) | (x & 7)
        index = word[:, None] + self.offsets[phase]
        bits = self.bits[phase]
        used = bits != 0  # skip the padding entries
        # ufunc.at, not fancy assignment: discs painted in one call share words.
        np.bitwise_or.at(self.words, index[used], bits[used])


def _pack_blocks(pixels: np.ndarray) -> np.ndarray:
    """``(n, 8 * a, 8 * b)`` booleans -> ``(n, a, b)`` uint64, pixel ``(u, v)`` of a block as bit
    ``8 u + v`` (the bit the raster reads)."""
    n, h, w = pixels.shape
    blocks = pixels.reshape(n, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)
    blocks = blocks.reshape(n, h // 8, w // 8, 64)
    return np.packbits(blocks, axis=-1, bitorder="little").view("<u8")[..., 0].astype(np.uint64)


def _resolve(
    owner: np.ndarray,
    prop: np.ndarray,
    r2: int,
    k: int,
    rng: np.random.Generator,
    grid: np.ndarray,
    grid_rows: int,
    grid_cols: int,
    cell_offsets: np.ndarray,
) -> np.ndarray:
    """Indices (in priority order) of the proposals accepted this round.

    Priorities are a random order. Of proposals sharing a background cell (always closer than r)
    one keeps the cell and the others are dropped. Among the rest, a proposal is accepted when no
    accepted proposal of higher priority is closer than r: each sweep accepts every undecided
    proposal with no undecided conflicting proposal of higher priority (its fate is settled) and
    drops the ones those conflict with; the highest undecided priority always settles, so the sweeps
    end. ``grid`` is scratch space, all -1 on entry and on exit.
    """
    order = rng.permutation(owner.size)
    owner, prop = owner[order], prop[order]
    cells = (owner * grid_rows + prop[:, 0] // k + 2) * grid_cols + prop[:, 1] // k + 2
    n = order.size
    # Of the proposals sharing a cell (closer than r), the one whose index the scatter leaves
    # behind (numpy keeps the last written) keeps it; the order is random already.
    grid[cells] = np.arange(n)
    alone = grid[cells] == np.arange(n)
    a = np.flatnonzero(alone)
    near = grid[cells[a, None] + cell_offsets]
    grid[cells] = -1
    row, slot = np.nonzero(near >= 0)
    a, b = a[row], near[row, slot]
    close = (prop[a, 0] - prop[b, 0]) ** 2 + (prop[a, 1] - prop[b, 1]) ** 2 < r2
    a, b = a[close], b[close]  # each conflicting pair once
    if a.size == 0:
        return order[alone]
    late, early = np.maximum(a, b), np.minimum(a, b)
    undecided = alone.copy()
    accepted = np.zeros(n, dtype=bool)
    while undecided.any():
        blocked = np.zeros(n, dtype=bool)
        blocked[late[undecided[early]]] = True
        wins = undecided & ~blocked
        accepted |= wins
        undecided &= ~wins
        undecided[late[wins[early]]] = False
        undecided[early[wins[late]]] = False
    return order[accepted]


def _disc_stencil(r2: int, block_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Word offsets and masks that paint the positions ``dy^2 + dx^2 < r2`` around a point.

    Indexed by the point's phase ``(y mod 8) * 8 + (x mod 8)`` inside its 8 x 8 block, which
    decides how the disc splits over blocks; offsets are relative to the point's own block. Phases
    with fewer blocks are padded with zero masks on offset 0, skipped when painting.
    """
    reach = math.isqrt(r2 - 1)  # largest |dy| with dy^2 < r2
    d = np.arange(-reach, reach + 1)
    disc = d[:, None] ** 2 + d[None, :] ** 2 < r2
    before = -(-reach // 8)  # blocks the disc reaches above / left of the point's block
    n = before + (7 + reach) // 8 + 1
    canvas = np.zeros((64, 8 * n, 8 * n), dtype=bool)
    for phase in range(64):
        top, left = 8 * before + phase // 8 - reach, 8 * before + phase % 8 - reach
        canvas[phase, top : top + 2 * reach + 1, left : left + 2 * reach + 1] = disc
    masks = _pack_blocks(canvas).reshape(64, n * n)
    block = np.arange(n * n)
    offset = (block // n - before) * block_cols + (block % n - before)
    used = masks != 0
    order = np.argsort(~used, axis=1, kind="stable")[:, : int(used.sum(axis=1).max())]
    offsets = np.where(np.take_along_axis(used, order, 1), offset[order], 0)
    return offsets, np.take_along_axis(masks, order, 1)
