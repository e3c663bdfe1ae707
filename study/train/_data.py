"""Batches for the loops: shuffled slices of the chosen scans, seeded; from a cache of the training
slices when it fits its budget (``study.train._cache``), else read lazily. The validation slices,
read in order every epoch, are held after the first epoch when they fit what the budget leaves."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler

from study.data import Dataset
from study.data.slices import SliceDataset
from study.train._cache import GIB, SliceCache, cache_bytes, placement
from study.train._loop import TrainSettings


class EpochBatches:
    """One epoch of batches: a shuffled pass over the data, or exactly ``steps`` batches.

    With ``steps`` an epoch is the same amount of work at every label fraction: a subset smaller
    than ``steps`` batches is passed over again (reshuffled), a larger one is cut short. The
    per-epoch step decay and the early-stopping patience then mean the same at 5 % and at 100 %
    of the labels, as they do at paper scale, where even 5 % of the scans fill many batches.
    """

    def __init__(self, loader: DataLoader, steps: int | None, source: str = "lazy") -> None:
        self.loader, self.steps = loader, steps
        self.source = source  # where the batches come from: "gpu", "host" (a cache) or "lazy"

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.steps is None:
            yield from self.loader
            return
        done = 0
        while True:
            for batch in self.loader:
                yield batch
                done += 1
                if done == self.steps:
                    return


class WorkerPasses:
    """Passes over ``items`` read by DataLoader workers, drawing from ``generator`` exactly when a
    loader without workers would: the batches, and every later draw (the pretraining's masks share
    the generator), do not depend on the number of workers.

    A loader without workers draws a base seed when a pass starts, the permutation with its first
    batch, and one more permutation, discarded, when its sampler runs out: with the last batch if
    that is short, else when the batch after the last is asked for. Workers read ahead, so their
    sampler would run out early; here it draws only the permutation, and the pass draws the other
    when a loader without workers would. Workers start with each pass: persistent ones would skip
    the base seed of every pass after the first.
    """

    def __init__(self, items: SliceDataset, settings: TrainSettings, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = len(items), settings.batch_size, generator
        self.loader = DataLoader(
            items,
            batch_size=settings.batch_size,
            sampler=_Permutation(self.n, generator),
            generator=generator,
            num_workers=settings.num_workers,
            pin_memory=settings.on_cuda,
        )

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        batches = iter(self.loader)  # the base seed; the permutation with the workers' first reads
        full, short = divmod(self.n, self.batch_size)
        for _ in range(full):
            yield next(batches)
        torch.randperm(self.n, generator=self.generator)  # what an exhausted RandomSampler draws
        if short:
            yield next(batches)


class _Permutation(Sampler[int]):
    """One shuffle of ``n`` indices from ``generator`` per pass, and no other draw."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(self.n, generator=self.generator).tolist()


def train_batches(
    dataset: Dataset, scan_ids: Sequence[str], settings: TrainSettings, generator: torch.Generator, with_masks: bool
) -> Iterable[dict[str, torch.Tensor]]:
    """Shuffled batches of the slices of ``scan_ids``, ``settings.steps_per_epoch`` per epoch when
    set (see :class:`EpochBatches`); the order follows ``generator``. The slices are cached once
    when they fit ``settings.gpu_cache_gb`` (on CUDA) or ``settings.cache_gb``; the batches are the
    same either way."""
    where = placement(
        cache_bytes(dataset, scan_ids, with_masks),
        on_cuda=settings.on_cuda,
        cache_gb=settings.cache_gb,
        gpu_cache_gb=settings.gpu_cache_gb,
    )
    if where is not None:
        cache = SliceCache(dataset, scan_ids, with_masks=with_masks, device=settings.device, on_gpu=where == "gpu")
        # The sampler a shuffling DataLoader builds, and the generator draw each of its epochs makes,
        # so the cache gives the very batches (and leaves the generator where) a lazy read would.
        sampler = BatchSampler(
            RandomSampler(range(len(cache)), generator=generator), settings.batch_size, drop_last=False
        )
        return EpochBatches(
            DataLoader(cache, sampler=sampler, batch_size=None, generator=generator),
            settings.steps_per_epoch,
            source=where,
        )
    items = SliceDataset(dataset, scan_ids, with_masks=with_masks)
    if settings.num_workers > 0:
        return EpochBatches(WorkerPasses(items, settings, generator), settings.steps_per_epoch)
    loader = DataLoader(
        items, batch_size=settings.batch_size, shuffle=True, generator=generator, pin_memory=settings.on_cuda
    )
    return EpochBatches(loader, settings.steps_per_epoch)


def eval_batches(
    dataset: Dataset, scan_ids: Sequence[str], batch_size: int, with_masks: bool
) -> Iterator[dict[str, torch.Tensor]]:
    """Every slice of ``scan_ids`` in order, in batches of up to ``batch_size``."""
    loader = DataLoader(SliceDataset(dataset, scan_ids, with_masks=with_masks), batch_size=batch_size, shuffle=False)
    yield from loader


class HeldBatches:
    """The batches of :func:`eval_batches`, read on the first pass and held for every later one: a
    loop validates on the same slices every epoch, and reading them lazily was a fifth of a laptop
    validation's CPU time (BENCHMARKS.md). The tensors are a lazy read's, so the numbers are too."""

    def __init__(self, dataset: Dataset, scan_ids: Sequence[str], batch_size: int, with_masks: bool) -> None:
        self._read = lambda: eval_batches(dataset, scan_ids, batch_size, with_masks)
        self._held: list[dict[str, torch.Tensor]] | None = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self._held is None:
            self._held = list(self._read())
        return iter(self._held)


class _Reread:
    def __init__(self, dataset: Dataset, scan_ids: Sequence[str], batch_size: int, with_masks: bool) -> None:
        self._read = lambda: eval_batches(dataset, scan_ids, batch_size, with_masks)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self._read()


def eval_bytes(dataset: Dataset, scan_ids: Sequence[str], with_masks: bool) -> int:
    """Bytes the batches of :func:`eval_batches` take: float32 images, and float32 masks."""
    channels = dataset.in_channels + (len(dataset.class_names) if with_masks else 0)
    pixels = sum(dataset.scans[s].n_slices * dataset.scans[s].height * dataset.scans[s].width for s in scan_ids)
    return pixels * channels * 4


def validation_batches(
    dataset: Dataset,
    val_ids: Sequence[str],
    settings: TrainSettings,
    *,
    with_masks: bool,
    train_ids: Sequence[str] = (),
) -> Iterable[dict[str, torch.Tensor]]:
    """The validation batches for every epoch of a fit on ``train_ids``: held in host RAM after the
    first epoch when they fit what ``settings.cache_gb`` leaves beside the training slices' cache
    there, else read again each epoch."""
    held_train = 0
    nbytes = cache_bytes(dataset, train_ids, with_masks) if train_ids else None
    if (
        placement(nbytes, on_cuda=settings.on_cuda, cache_gb=settings.cache_gb, gpu_cache_gb=settings.gpu_cache_gb)
        == "host"
    ):
        held_train = nbytes or 0
    fits = eval_bytes(dataset, val_ids, with_masks) <= settings.cache_gb * GIB - held_train
    kind = HeldBatches if fits else _Reread
    return kind(dataset, val_ids, settings.batch_size, with_masks)
