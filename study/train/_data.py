"""Batches for the loops: shuffled slices of the chosen scans, seeded, read lazily."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from study.data import Dataset, SliceDataset
from study.train._loop import TrainSettings


def train_batches(
    dataset: Dataset, scan_ids: Sequence[str], settings: TrainSettings, generator: torch.Generator, with_masks: bool
) -> DataLoader:
    """Shuffled batches of every slice of ``scan_ids``; the order follows ``generator``."""
    return DataLoader(
        SliceDataset(dataset, scan_ids, with_masks=with_masks),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=settings.num_workers,
        persistent_workers=settings.num_workers > 0,
        pin_memory=settings.on_cuda,
    )


def eval_batches(dataset: Dataset, scan_ids: Sequence[str], batch_size: int, with_masks: bool) -> Iterator[dict[str, torch.Tensor]]:
    """Every slice of ``scan_ids`` in order, in batches of up to ``batch_size``."""
    loader = DataLoader(SliceDataset(dataset, scan_ids, with_masks=with_masks), batch_size=batch_size, shuffle=False)
    yield from loader
