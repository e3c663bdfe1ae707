"""A trial's training slices read once into memory, for a GPU that h5 reads cannot keep fed.

At 512 x 512 a lazy h5 read delivers a few hundred slices a second to one process (BENCHMARKS.md),
while a GPU trains on many more; so a trial whose training slices fit a budget reads them once and
draws every batch from memory. Where the cache lives:

- on the training GPU, when the trial runs on CUDA and the slices fit ``gpu_cache_gb``: a batch is
  then an index on the device and nothing crosses the bus per step;
- in host RAM, when they fit ``cache_gb``: a batch is gathered into pinned memory and copied to the
  GPU without blocking. The cache itself stays pageable: a gather is needed for a shuffled batch
  anyway, and pinned allocations are rounded up to a power of two (a 13 GiB cache would pin 16);
  the caching host allocator reuses a pinned batch buffer only once its copy has completed;
- nowhere, otherwise: lazy h5 reads with DataLoader workers, as on a laptop.

Masks are kept as bits (``np.packbits``, K/8 bytes a pixel instead of 4 K) and unpacked on the
training device into the float32 {0, 1} masks a lazy read gives. The batches, their order and the
draws from the generator are the very same as a lazy read's: the cache is read through the same
``RandomSampler`` and ``BatchSampler`` a shuffling DataLoader builds, so a test compares them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from study.data import Dataset

GIB = 2**30
_BIT_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits is big-endian within a byte
# Each byte's 8 bits as float32: a CPU unpacks a batch's masks with one lookup per byte, four times
# faster than unpacking to bytes and converting them (writing the float32 masks is the cost).
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)


def cache_bytes(dataset: Dataset, scan_ids: Sequence[str], with_masks: bool) -> int | None:
    """Bytes the cache of ``scan_ids`` takes, or None when their slices differ in size (a batch
    stacks slices, so a cache holds one size)."""
    sizes = {(dataset.scans[s].height, dataset.scans[s].width) for s in scan_ids}
    if len(sizes) != 1:
        return None
    ((height, width),) = sizes
    n = sum(dataset.scans[s].n_slices for s in scan_ids)
    return slice_cache_bytes(n, dataset.in_channels, len(dataset.class_names) if with_masks else 0, height, width)


def slice_cache_bytes(slices: int, channels: int, classes: int, height: int, width: int) -> int:
    """Bytes of a cache of ``slices`` slices: float32 images, and masks of ``classes`` as bits."""
    return slices * (channels * height * width * 4 + _packed_bytes(classes * height * width))


def placement(nbytes: int | None, *, on_cuda: bool, cache_gb: float, gpu_cache_gb: float) -> str | None:
    """Where a cache of ``nbytes`` goes: ``"gpu"``, ``"host"`` or None (lazy reads)."""
    if nbytes is None:
        return None
    if on_cuda and nbytes <= gpu_cache_gb * GIB:
        return "gpu"
    if nbytes <= cache_gb * GIB:
        return "host"
    return None


class SliceCache:
    """Every slice of ``scan_ids`` in :meth:`Dataset.slice_index` order, as one tensor.

    Indexed with a list of slice numbers it returns the batch ``{"image": (B, C, H, W) float32,
    "mask": (B, K, H, W) float32}`` on ``device``, equal to stacking those items of a
    :class:`study.data.SliceDataset`.
    """

    def __init__(
        self, dataset: Dataset, scan_ids: Sequence[str], *, with_masks: bool, device: str | torch.device, on_gpu: bool
    ) -> None:
        self.device = torch.device(device)
        self.on_gpu = on_gpu
        first = dataset.scans[scan_ids[0]]
        n = sum(dataset.scans[s].n_slices for s in scan_ids)
        store = self.device if on_gpu else torch.device("cpu")
        self.images = torch.empty(
            (n, dataset.in_channels, first.height, first.width), dtype=torch.float32, device=store
        )
        self.mask_shape = (len(dataset.class_names), first.height, first.width) if with_masks else None
        self.masks = (
            None
            if self.mask_shape is None
            else torch.empty((n, _packed_bytes(int(np.prod(self.mask_shape)))), dtype=torch.uint8, device=store)
        )
        start = 0
        for scan_id in scan_ids:  # whole scans: one h5 read each, not one per slice
            image = torch.from_numpy(dataset.read_image(scan_id))
            end = start + image.shape[0]
            self.images[start:end].copy_(image)
            if self.masks is not None:
                bits = np.packbits(dataset.read_masks(scan_id).reshape(image.shape[0], -1), axis=1)
                self.masks[start:end].copy_(torch.from_numpy(bits))
            start = end

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + (0 if self.masks is None else self.masks.nbytes)

    def __getitem__(self, index: Sequence[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        if self.on_gpu:
            idx = idx.to(self.device, non_blocking=True)
            batch = {"image": self.images.index_select(0, idx)}
            if self.masks is not None:
                batch["mask"] = unpack_masks(self.masks.index_select(0, idx), self.mask_shape)
            return batch
        if self.device.type == "cuda":
            batch = {"image": _gather_pinned(self.images, idx).to(self.device, non_blocking=True)}
            if self.masks is not None:
                packed = _gather_pinned(self.masks, idx).to(self.device, non_blocking=True)
                batch["mask"] = unpack_masks(packed, self.mask_shape)
            return batch
        batch = {"image": self.images.index_select(0, idx)}
        if self.masks is not None:
            bits = torch.from_numpy(np.take(_BYTE_BITS, self.masks.index_select(0, idx).numpy(), axis=0))
            n = int(np.prod(self.mask_shape))
            batch["mask"] = bits.reshape(len(idx), -1)[:, :n].reshape(len(idx), *self.mask_shape).contiguous()
        return batch


def unpack_masks(packed: Tensor, shape: tuple[int, ...]) -> Tensor:
    """(B, bytes) bits from ``np.packbits`` -> (B, *shape) float32 {0, 1}, on ``packed``'s device."""
    bits = (packed.unsqueeze(-1) >> _BIT_SHIFTS.to(packed.device)) & 1
    return (
        bits.reshape(packed.shape[0], -1)[:, : int(np.prod(shape))].reshape(packed.shape[0], *shape).to(torch.float32)
    )


def _packed_bytes(bits: int) -> int:
    return (bits + 7) // 8


def _gather_pinned(source: Tensor, idx: Tensor) -> Tensor:
    out = torch.empty((len(idx), *source.shape[1:]), dtype=source.dtype, pin_memory=True)
    return torch.index_select(source, 0, idx, out=out)
