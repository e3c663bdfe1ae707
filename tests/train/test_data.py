from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from study.train._data import EpochBatches


def _loader(n: int, seed: int = 0) -> DataLoader:
    return DataLoader(torch.arange(n), batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(seed))


def test_a_small_subset_is_cycled_to_fill_an_epoch() -> None:
    batches = list(EpochBatches(_loader(5), steps=7))  # 3 batches per pass
    assert len(batches) == 7
    seen = torch.cat(batches[:3])
    assert sorted(seen.tolist()) == [0, 1, 2, 3, 4]  # each pass is a whole reshuffled pass
    assert sorted(torch.cat(batches[3:6]).tolist()) == [0, 1, 2, 3, 4]


def test_a_large_set_is_cut_and_no_steps_means_one_pass() -> None:
    assert len(list(EpochBatches(_loader(40), steps=4))) == 4
    assert len(list(EpochBatches(_loader(40), steps=None))) == 20


def test_epochs_follow_the_generator() -> None:
    a = [b.tolist() for b in EpochBatches(_loader(5, seed=3), steps=5)]
    b = [b.tolist() for b in EpochBatches(_loader(5, seed=3), steps=5)]
    c = [b.tolist() for b in EpochBatches(_loader(5, seed=4), steps=5)]
    assert a == b and a != c
