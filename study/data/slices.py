"""Slices of a data set as a torch ``Dataset``: read lazily, one slice per item.

Nothing is loaded up front, so a data set of 13,000 slices at 512 x 512 costs a trial only the
slices in flight; the HDF5 pages live in the operating system's page cache, shared by every trial
on the machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from study.data._model import Dataset


class SliceDataset(TorchDataset):
    """Every slice of ``scan_ids``: items are ``{"image": (C, H, W), "mask": (K, H, W)}`` tensors.

    ``with_masks=False`` serves unlabeled scans (pretraining); masks are float32 {0, 1}.
    """

    def __init__(self, dataset: Dataset, scan_ids: Sequence[str], with_masks: bool = True) -> None:
        self.dataset = dataset
        self.with_masks = with_masks
        self.index = dataset.slice_index(scan_ids)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        scan_id, z = self.index[i]
        item = {"image": torch.from_numpy(self.dataset.read_image(scan_id, [z])[0])}
        if self.with_masks:
            item["mask"] = torch.from_numpy(self.dataset.read_masks(scan_id, [z])[0].astype(np.float32))
        return item
