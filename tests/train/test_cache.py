"""The cache of a trial's training slices gives exactly the batches lazy h5 reads give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.data import PhantomSettings, builtin_dataset, make_phantom_dataset, open_dataset
from study.design.plan import make_plan
from study.design.spec_loading import validate
from study.execution.trial import ensure_pretrained, run_trial
from study.folder.store import StudyStore
from study.train import TrainSettings
from study.train._cache import GIB, cache_bytes, placement, unpack_masks
from study.train._data import train_batches


@pytest.fixture(scope="module")
def mri_path(tmp_path_factory: pytest.TempPathFactory):
    # 3 training scans of 5 slices: 15 slices, so batches of 4 leave a short last batch
    settings = PhantomSettings(kind="mri", size=32, n_train=3, n_val=1, n_test=2, n_unlabeled=1, n_slices=5)
    return make_phantom_dataset(settings, tmp_path_factory.mktemp("phantom") / "mri")


@pytest.fixture(scope="module")
def mri(mri_path):
    return open_dataset(mri_path)


def _epochs(dataset, settings: TrainSettings, with_masks: bool, epochs: int) -> tuple[list, bytes, str]:
    """Every batch of ``epochs`` epochs, with a draw from the generator after each batch, as the
    pretraining's mask draws do between batches; and the generator's state at the end."""
    generator = torch.Generator().manual_seed(5)
    batches = train_batches(dataset, dataset.split.train, settings, generator, with_masks=with_masks)
    seen = []
    for _ in range(epochs):
        for batch in batches:
            seen.append(dict(batch))  # fresh tensors every batch, kept as they came
            torch.rand(1, generator=generator)
    return seen, generator.get_state().numpy().tobytes(), batches.source


@pytest.mark.parametrize("with_masks", [True, False])
@pytest.mark.parametrize("steps", [None, 7])  # one pass per epoch; a fixed 7 batches (cycling)
def test_the_cache_gives_the_same_batches_as_lazy_reads(mri, with_masks: bool, steps: int | None) -> None:
    lazy = TrainSettings(batch_size=4, steps_per_epoch=steps)
    cached = TrainSettings(batch_size=4, steps_per_epoch=steps, cache_gb=1.0)
    a, state_a, source_a = _epochs(mri, lazy, with_masks, epochs=3)
    b, state_b, source_b = _epochs(mri, cached, with_masks, epochs=3)
    assert (source_a, source_b) == ("lazy", "host")
    assert len(a) == len(b) == (12 if steps is None else 21)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() == ({"image", "mask"} if with_masks else {"image"})
        for key in x:
            assert x[key].dtype == y[key].dtype == torch.float32 and torch.equal(x[key], y[key]), key
    assert state_a == state_b  # the generator was drawn from exactly alike


@pytest.mark.parametrize("batch", [4, 5])  # 15 slices: a short last batch, or none
@pytest.mark.parametrize("steps", [None, 5])
def test_lazy_reads_with_workers_give_the_very_batches_and_draws(mri, batch: int, steps: int | None) -> None:
    workers, state_a, _ = _epochs(mri, TrainSettings(batch_size=batch, steps_per_epoch=steps, num_workers=2), True, 3)
    alone, state_b, _ = _epochs(mri, TrainSettings(batch_size=batch, steps_per_epoch=steps), True, epochs=3)
    assert state_a == state_b and len(workers) == len(alone)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(workers, alone, strict=True) for k in x)


def test_compile_is_for_cuda_a_cpu_runs_the_model_itself() -> None:
    model = torch.nn.Linear(2, 2)
    assert TrainSettings(compile=True).runnable(model) is model


def test_masks_that_do_not_fill_whole_bytes_come_back_alike() -> None:
    # 4 classes of 33 x 33 pixels: 4356 bits, half a byte left over per slice
    odd = open_dataset(
        builtin_dataset(
            "mri", PhantomSettings(kind="mri", size=33, n_train=2, n_val=1, n_test=1, n_unlabeled=0, n_slices=3)
        )
    )
    lazy, _, _ = _epochs(odd, TrainSettings(batch_size=4), True, epochs=1)
    cached, _, _ = _epochs(odd, TrainSettings(batch_size=4, cache_gb=1.0), True, epochs=1)
    for x, y in zip(lazy, cached, strict=True):
        assert torch.equal(x["mask"], y["mask"]) and y["mask"].is_contiguous()


def test_a_cache_over_its_budget_falls_back_to_lazy_reads(mri) -> None:
    need = cache_bytes(mri, mri.split.train, with_masks=True)
    # 15 slices of 32 x 32: one float32 channel and 4 classes of bits, 4096 + 512 bytes a slice
    assert need == 15 * (32 * 32 * 4 + 32 * 32 * 4 // 8)
    assert placement(need, on_cuda=False, cache_gb=need / GIB, gpu_cache_gb=0) == "host"
    assert placement(need, on_cuda=False, cache_gb=(need - 1) / GIB, gpu_cache_gb=1) is None  # no GPU here
    assert placement(need, on_cuda=True, cache_gb=1, gpu_cache_gb=need / GIB) == "gpu"
    assert placement(need, on_cuda=True, cache_gb=1, gpu_cache_gb=(need - 1) / GIB) == "host"
    settings = TrainSettings(batch_size=4, cache_gb=(need - 1) / GIB)
    assert train_batches(mri, mri.split.train, settings, torch.Generator(), with_masks=True).source == "lazy"


def test_masks_unpack_alike_with_torch_on_any_device_and_numpy() -> None:
    masks = np.random.default_rng(0).random((3, 4, 5, 7)) < 0.3  # 140 bits a slice: not a whole byte
    packed = np.packbits(masks.reshape(3, -1), axis=1)
    assert torch.equal(unpack_masks(torch.from_numpy(packed), (4, 5, 7)), torch.from_numpy(masks).float())


def test_a_trial_trains_to_the_same_numbers_from_the_cache(tmp_path, mri_path) -> None:
    def run(cache_gb: float):
        """A study's one trial (and its pretraining) in a folder of its own, as study.execution.tune runs them:
        the study folder's records and the learning curves it reported, epoch by epoch."""
        spec = validate(
            {
                "name": "cache",
                "datasets": [str(mri_path)],
                "seed": 3,
                "label_fractions": [1.0],
                "baseline": False,
                "scale": {
                    "image_size": 32,
                    "widths": [8, 16],
                    "groups": 4,
                    "batch_size": 4,
                    "pretrain_max_epochs": 2,
                    "finetune_max_epochs": 2,
                    "steps_per_epoch": 3,
                    "n_masks": 4,
                    "cache_gb": cache_gb,
                },
                "pretraining": {"task": ["restoration"], "sampler": ["random"], "patch_size": [64], "lr": [0.001]},
                "finetuning": {"scope": ["encoder"], "schedule": ["at_once"], "lr": [0.001]},
                "search": {"algorithm": "grid"},
                "storage": str(tmp_path / f"cache{cache_gb:g}"),
            }
        )
        (trial,) = make_plan(spec).trials
        store, curves = StudyStore(spec.storage_dir()), []
        pre = ensure_pretrained(store, trial.pretraining, data_path=str(mri_path), device="cpu", report=curves.append)
        record = run_trial(store, trial, data_path=str(mri_path), report=curves.append)
        assert pre.finished and record.finished, (pre.reason, record.reason)
        return trial.id, pre, store.read_per_case(trial.id), curves

    lazy, cached = run(0.0), run(1.0)
    assert lazy[0] == cached[0]  # how fast, never what: the cache leaves the trial id alone
    assert lazy[1].history == cached[1].history and lazy[1].inpainting_l2 == cached[1].inpainting_l2
    assert lazy[2].equals(cached[2])
    assert [c["stage"] for c in lazy[3]] == ["pretrain"] * 2 + ["finetune"] * 2
    assert lazy[3] == cached[3]  # the pretraining's and the fine-tuning's curves, epoch by epoch
