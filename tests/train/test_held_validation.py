"""Validation slices held after the first epoch: the same batches, so the same fine-tuning to the bit,
and held only within the cache budget that the training slices leave."""

from __future__ import annotations

import pytest
import torch

from study.data import PhantomSettings, builtin_dataset, open_dataset
from study.model import UNetConfig
from study.train import FinetuneConfig, TrainSettings
from study.train._cache import GIB, cache_bytes
from study.train._data import HeldBatches, eval_batches, eval_bytes, validation_batches
from study.train._finetune import finetune


@pytest.fixture(scope="module")
def mri():
    settings = PhantomSettings(kind="mri", size=32, n_train=3, n_val=2, n_test=1, n_unlabeled=1, n_slices=5)
    return open_dataset(builtin_dataset("mri", settings))


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_held_batches_are_the_lazy_ones_read_once(mri) -> None:
    held = validation_batches(mri, mri.split.val, TrainSettings(batch_size=4, cache_gb=1.0), with_masks=True)
    assert isinstance(held, HeldBatches)
    first, second = list(held), list(held)
    lazy = list(eval_batches(mri, mri.split.val, 4, with_masks=True))
    assert len(first) == len(lazy) == 3  # 10 slices: 4, 4, 2
    for a, b, c in zip(first, second, lazy):
        assert a["image"] is b["image"]  # not read again
        assert torch.equal(a["image"], c["image"]) and torch.equal(a["mask"], c["mask"])


def test_held_only_within_what_the_training_cache_leaves(mri) -> None:
    val = eval_bytes(mri, mri.split.val, True)
    train = cache_bytes(mri, mri.split.train, True)
    assert val == 10 * (1 + 4) * 32 * 32 * 4
    fits = TrainSettings(batch_size=4, cache_gb=(val + train) / GIB)
    short = TrainSettings(batch_size=4, cache_gb=(val + train - 1) / GIB)
    assert isinstance(
        validation_batches(mri, mri.split.val, fits, with_masks=True, train_ids=mri.split.train), HeldBatches
    )
    assert not isinstance(
        validation_batches(mri, mri.split.val, short, with_masks=True, train_ids=mri.split.train), HeldBatches
    )
    assert not isinstance(
        validation_batches(mri, mri.split.val, TrainSettings(batch_size=4), with_masks=True), HeldBatches
    )


def test_a_fine_tuning_is_bit_identical_with_its_slices_held_or_read_lazily(mri) -> None:
    unet = UNetConfig(in_channels=1, out_channels=len(mri.class_names), widths=(8, 16), groups=4)

    def run(cache_gb: float):
        settings = TrainSettings(batch_size=4, max_epochs=3, steps_per_epoch=2, seed=3, cache_gb=cache_gb)
        return finetune(
            mri, mri.split.train, val_ids=mri.split.val, unet=unet, config=FinetuneConfig(lr=0.01), settings=settings
        )

    lazy, held = run(0.0), run(1.0)
    assert [r["val_loss"] for r in lazy.fits[0].history] == [r["val_loss"] for r in held.fits[0].history]
    for key, value in lazy.model.state_dict().items():
        assert torch.equal(value, held.model.state_dict()[key])
