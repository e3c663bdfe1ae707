"""The mask bank: corruptions precomputed once per run, drawn afresh for every image of every batch.

Dominic et al. 2023, section 2.4: "we precomputed 100 random masks before training. We further
randomly rotated the masks by either 0, 90, 180, or 270 degrees counter-clockwise to increase the
effective number of masks used during training to 400", with "a random mask every iteration for
all images". Here every image of a batch draws one of the ``n_masks`` masks and one rotation.

Rotations are quarter turns counter-clockwise, as ``np.rot90(mask, k)``. A quarter turn maps an
``H x W`` image to ``W x H``, so on a non-square image only 0 and 180 degrees keep the shape and
only those two are drawn (2 x ``n_masks`` effective masks); ``rotate=False`` draws 0 only.

Storage (why it is small): a mask is kept as int32 flat indices of the pixels it changes, ``dst``,
and for restoration where each takes its value from, ``src`` (``corrupted[dst] = image[src]``), rows
padded to a common length by repeating their last entry (writing a value twice changes nothing).
Swaps of disjoint patches (Poisson-disc) list the first patch of every pair, then the second, so
``src`` is ``dst`` with its halves exchanged and is not stored. A quarter of the image changes: at
512 x 512, 100 Poisson-disc masks hold 100 x 65,536 indices, 26.2 MB, for either task. With the
random sampler the union of overlapping patches is a little more than a quarter (26-28 MB for
prediction), and restoration also stores ``src`` (52-58 MB). Rotations are computed, not stored.
:attr:`MaskBank.nbytes` gives the exact figure; one copy is kept per device the bank is used on.

Applying a batch: gather each image's mask row and turn its indices arithmetically (``(B, L)``),
then one gather and one scatter over the ``(B, C, H*W)`` batch, on the batch's own device: no loop
over images or rotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from study.errors import SpecError
from study.pretext._base import SeedLike, as_generator
from study.pretext._corruption import CorruptionConfig, moved_pixels


@dataclass(frozen=True)
class _Tensors:
    dst: torch.Tensor  # (M, L) int32
    src: torch.Tensor | None  # (M, L) int32; None: fill (prediction) or exchanged halves of dst
    turns: torch.Tensor  # (T,) int64, the quarter turns drawn
    turn_coefficients: torch.Tensor  # (4, 3) int64, see _turn

    def to(self, device: torch.device) -> _Tensors:
        src = None if self.src is None else self.src.to(device)
        coefficients = self.turn_coefficients.to(device)
        return _Tensors(self.dst.to(device), src, self.turns.to(device), coefficients)


class MaskBank:
    """``n_masks`` corruptions of ``H x W`` images, built once from a seed and drawn per image.

    Build with :meth:`build`; apply with :meth:`corrupt` (or :meth:`corrupt_with_mask`, which
    also returns which pixels changed). The same seed and configuration build the same bank.
    """

    def __init__(
        self,
        config: CorruptionConfig,
        image_shape: tuple[int, int],
        dst: np.ndarray,
        src: np.ndarray | None,
    ) -> None:
        """Wrap precomputed rows (see the module docstring); use :meth:`build` to draw them."""
        height, width = image_shape
        self.config = config
        self.image_shape = (int(height), int(width))
        if not config.rotate:
            self.rotations: tuple[int, ...] = (0,)
        elif height == width:
            self.rotations = (0, 1, 2, 3)
        else:
            self.rotations = (0, 2)  # a quarter turn would make the image W x H
        as_rows = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int32))  # noqa: E731
        cpu = _Tensors(
            dst=as_rows(dst),
            src=None if src is None else as_rows(src),
            turns=torch.tensor(self.rotations, dtype=torch.int64),
            turn_coefficients=_turn_coefficients(height, width),
        )
        self._copies: dict[torch.device, _Tensors] = {torch.device("cpu"): cpu}

    @classmethod
    def build(cls, config: CorruptionConfig, image_shape: tuple[int, int], seed: SeedLike) -> MaskBank:
        """Draw ``config.n_masks`` masks for ``image_shape = (H, W)`` from ``seed`` (an int or a
        ``numpy.random.Generator``) with the configured sampler and task."""
        height, width = image_shape
        sampler = config.make_sampler()
        rng = as_generator(seed)
        corners = sampler.sample_many(config.n_masks, height, width, rng, paired=config.paired)
        k = config.patch_size
        if sampler.disjoint:
            # every draw has the same count of disjoint patches: all rows in one go
            corner = np.stack(corners)  # (M, N, 2); for swaps, pairs are (0, 1), (2, 3), ...
            if config.paired:  # first patches of all pairs, then their partners
                corner = np.concatenate([corner[:, 0::2], corner[:, 1::2]], axis=1)
            index = corner[..., 0].astype(np.int32) * width + corner[..., 1].astype(np.int32)
            inside = np.arange(k, dtype=np.int32)
            offsets = (inside[:, None] * width + inside).ravel()
            dst = (index[..., None] + offsets).reshape(len(corners), -1)
            return cls(config, image_shape, dst, None)
        moved = [moved_pixels(c, k, (height, width), config.task) for c in corners]
        sources = [s for s, _ in moved if s is not None]
        dst = _pad_rows([d for _, d in moved])
        return cls(config, image_shape, dst, _pad_rows(sources) if sources else None)

    @property
    def n_masks(self) -> int:
        return int(self._copies[torch.device("cpu")].dst.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held per device copy: the mask rows."""
        c = self._copies[torch.device("cpu")]
        return sum(t.numel() * t.element_size() for t in (c.dst, c.src) if t is not None)

    def draw(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh ``(mask_ids, turns)`` pair of int64 ``(B,)`` tensors on the generator's device:
        one mask and one quarter-turn count (from :attr:`rotations`) per image."""
        device = generator.device if generator is not None else torch.device("cpu")
        ids = torch.randint(self.n_masks, (batch_size,), generator=generator, device=device)
        pick = torch.randint(len(self.rotations), (batch_size,), generator=generator, device=device)
        return ids, self._on(device).turns[pick]

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Corrupt a batch ``x (B, C, H, W)`` with a fresh mask and rotation per image.

        Runs on ``x``'s device; the draw uses ``generator`` (on its own device; None: torch's
        global generator). Returns a new tensor and leaves ``x`` as it was.
        """
        self._check_batch(x)
        ids, turns = self.draw(x.shape[0], generator)
        return self._apply(x, ids, turns)[0]

    def corrupt_with_mask(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`corrupt`, also returning the changed pixels as a bool ``(B, H, W)`` mask."""
        self._check_batch(x)
        ids, turns = self.draw(x.shape[0], generator)
        corrupted, dst = self._apply(x, ids, turns)
        return corrupted, _changed(dst, x.shape)

    def apply(self, x: torch.Tensor, mask_ids: torch.Tensor, turns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupt image ``b`` of ``x (B, C, H, W)`` with mask ``mask_ids[b]`` turned ``turns[b]``
        quarter turns counter-clockwise (each in :attr:`rotations`), the same on every channel.

        Returns ``(corrupted (B, C, H, W), changed (B, H, W) bool)``.
        """
        self._check_batch(x)
        ids, quarter = torch.as_tensor(mask_ids).cpu(), torch.as_tensor(turns).cpu()
        if ids.shape != (x.shape[0],) or quarter.shape != (x.shape[0],):
            raise SpecError(
                f"mask_ids and turns must have shape ({x.shape[0]},), got {tuple(ids.shape)} and {tuple(quarter.shape)}"
            )
        if ids.min() < 0 or ids.max() >= self.n_masks:
            raise SpecError(f"mask_ids must lie in [0, {self.n_masks - 1}], got {ids.tolist()}")
        if not torch.isin(quarter, torch.tensor(self.rotations)).all():
            raise SpecError(f"turns must be among {list(self.rotations)} for this bank, got {quarter.tolist()}")
        corrupted, dst = self._apply(x, ids, quarter)
        return corrupted, _changed(dst, x.shape)

    def changed_pixels(self, mask_id: int, turns: int = 0) -> np.ndarray:
        """The pixels mask ``mask_id`` changes, turned ``turns`` quarter turns: bool ``(H, W)``."""
        x = torch.zeros(1, 1, *self.image_shape)
        return self.apply(x, torch.tensor([mask_id]), torch.tensor([turns]))[1][0].numpy()

    def _check_batch(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[-2:]) != self.image_shape:
            height, width = self.image_shape
            raise SpecError(f"MaskBank was built for batches (B, C, {height}, {width}), got {tuple(x.shape)}")

    def _apply(self, x: torch.Tensor, mask_ids: torch.Tensor, turns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The corrupted batch and the flat indices it changed, ``(B, L)``."""
        batch, channels, height, width = x.shape
        bank = self._on(x.device)
        mask_ids, turns = mask_ids.to(x.device), turns.to(x.device)[:, None]
        coefficients = bank.turn_coefficients[turns[:, 0]]  # (B, 3)
        dst = _turn(bank.dst.index_select(0, mask_ids).long(), coefficients, width)  # (B, L)
        flat = x.reshape(batch, channels, height * width)
        out = flat.clone()
        where = dst[:, None, :].expand(batch, channels, dst.shape[1])
        if self.config.task == "prediction":
            out.scatter_(2, where, self.config.fill_value)
        else:
            if bank.src is None:  # disjoint swaps: [first | second] -> [second | first]
                src = dst.roll(dst.shape[1] // 2, dims=1)
            else:
                src = _turn(bank.src.index_select(0, mask_ids).long(), coefficients, width)
            out.scatter_(2, where, flat.gather(2, src[:, None, :].expand_as(where)))
        return out.view(batch, channels, height, width), dst

    def _on(self, device: torch.device) -> _Tensors:
        if device not in self._copies:
            self._copies[device] = self._copies[torch.device("cpu")].to(device)
        return self._copies[device]


def _turn_coefficients(height: int, width: int) -> torch.Tensor:
    """``(4, 3)`` int64 ``(alpha, beta, offset)`` per quarter-turn count k, see :func:`_turn`.

    After ``np.rot90(image, k)`` pixel ``(r, c)`` lies at ``(r, c)``, ``(W-1-c, r)``,
    ``(H-1-r, W-1-c)`` or ``(c, H-1-r)``; with ``index = r * W + c`` each of these flat indices is
    ``alpha * r + beta * index + offset`` (quarter turns give a ``W x H`` image, used on square
    images only).
    """
    size = height * width
    return torch.tensor(
        [
            [0, 1, 0],
            [1 + size, -height, (width - 1) * height],
            [0, -1, size - 1],
            [-1 - size, height, height - 1],
        ],
        dtype=torch.int64,
    )


def _turn(index: torch.Tensor, coefficients: torch.Tensor, width: int) -> torch.Tensor:
    """Where flat pixels ``index (B, L)`` land after each image's rotation, given its
    ``coefficients (B, 3)`` from :func:`_turn_coefficients`: four tensor operations per batch.

    A mask turned by k corrupts the image as ``rot90(corrupt(rot90(image, -k)), k)``: a pixel pair
    ``(src, dst)`` of the unturned mask becomes ``(turned(src), turned(dst))``.
    """
    alpha, beta, offset = coefficients[:, 0:1], coefficients[:, 1:2], coefficients[:, 2:3]
    row = torch.div(index, width, rounding_mode="trunc")  # index >= 0: trunc is floor, and fast
    return (beta * index).addcmul_(alpha, row).add_(offset)


def _changed(dst: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Bool ``(B, H, W)`` mask of the flat pixel indices ``dst (B, L)``."""
    batch, _, height, width = shape
    changed = torch.zeros(batch, height * width, dtype=torch.bool, device=dst.device)
    return changed.scatter_(1, dst, True).view(batch, height, width)


def _pad_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Stack index arrays of different lengths, repeating each one's last entry."""
    length = max(len(r) for r in rows)
    return np.stack([np.concatenate([r, np.full(length - len(r), r[-1])]) for r in rows])
