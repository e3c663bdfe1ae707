"""Tiny end-to-end runs on a built-in phantom: the losses the paper trains on go down for real.

The runs of whole trials take the path a study takes (``study.execution.tune``): the pretraining made once by
``ensure_pretrained``, then ``run_trial`` in a study folder, for a point the planner made of a spec.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import study.train._finetune as finetune_module
from study.data import PhantomSettings, make_phantom_dataset, open_dataset
from study.design.plan import TrialPoint, make_plan
from study.design.spec_loading import validate
from study.execution.trial import ensure_pretrained, run_trial
from study.folder.records import TrialRecord
from study.folder.store import StudyStore
from study.model import UNet, UNetConfig, group_of
from study.train import PretrainConfig, TrainSettings, evaluate_segmentation, load_checkpoint
from study.train._pretrain import pretrain

WIDTHS = (8, 16, 32)
GROUPS = 4
TINY = {"image_size": 32, "widths": list(WIDTHS), "groups": GROUPS, "batch_size": 8, "n_masks": 4}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mri_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = PhantomSettings(kind="mri", size=32, n_train=6, n_val=2, n_test=2, n_unlabeled=2, n_slices=8)
    return make_phantom_dataset(settings, tmp_path_factory.mktemp("phantom") / "mri")


@pytest.fixture(scope="module")
def mri(mri_path: Path):
    return open_dataset(mri_path)


def one_trial(folder: Path, data: Path, scale: dict, **fields) -> tuple[StudyStore, TrialPoint]:
    """The one trial the planner makes of a tiny spec on ``data`` (seed 3), and its study folder."""
    spec = validate(
        {
            "name": "tiny",
            "datasets": [str(data)],
            "scale": {**TINY, **scale},
            "seed": 3,
            "label_fractions": [0.5],
            "baseline": False,
            "search": {"algorithm": "grid"},
            "storage": str(folder),
            **fields,
        }
    )
    (trial,) = make_plan(spec).trials
    return StudyStore(spec.storage_dir()), trial


def run_as_a_study(store: StudyStore, trial: TrialPoint, data: Path) -> TrialRecord:
    """The pretraining phase (if any), then the trial, as ``study.execution.tune``'s trainables run them."""
    if trial.pretraining is not None:
        assert ensure_pretrained(store, trial.pretraining, data_path=str(data), device="cpu").finished
    record = run_trial(store, trial, data_path=str(data))
    assert record.finished, record.reason
    return record


@pytest.fixture
def transfers(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every transfer report the fine-tuning makes (``transfer_weights`` itself still does the copying)."""
    seen, real = [], finetune_module.transfer_weights

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(finetune_module, "transfer_weights", spy)
    return seen


@pytest.mark.parametrize("task", ["prediction", "restoration"])
def test_a_few_pretraining_epochs_lower_the_inpainting_loss(mri, task: str) -> None:
    settings = TrainSettings(batch_size=8, max_epochs=4, steps_per_epoch=6, seed=3)
    config = PretrainConfig(task=task, sampler="random", patch_size=64, lr=3e-3, n_masks=10)
    unet = UNetConfig(in_channels=mri.in_channels, out_channels=mri.in_channels, widths=WIDTHS, groups=GROUPS)
    result = pretrain(
        mri,
        mri.split.train,
        val_ids=mri.split.val,
        test_ids=mri.split.test,
        unet=unet,
        config=config,
        settings=settings,
    )
    val = [r["val_loss"] for r in result.fit.history]
    assert val[-1] < 0.8 * val[0], val
    assert (result.inpainting["l2"] > 0).all() and len(result.inpainting) == sum(
        mri.scans[s].n_slices for s in mri.split.test
    )


def test_a_few_finetuning_epochs_raise_dice_above_an_untrained_model(tmp_path: Path, mri_path: Path, mri) -> None:
    store, trial = one_trial(
        tmp_path,
        mri_path,
        {"finetune_max_epochs": 6, "steps_per_epoch": 6},
        pretraining=None,
        baseline=True,
        label_fractions=[1.0],
        finetuning={"lr": [0.003]},
    )
    assert trial.pretraining is None  # the supervised baseline
    unet = UNetConfig(in_channels=mri.in_channels, out_channels=len(mri.class_names), widths=WIDTHS, groups=GROUPS)
    untrained = evaluate_segmentation(UNet(unet, seed=3), mri, mri.split.test, TrainSettings(batch_size=8, seed=3))
    run_as_a_study(store, trial, mri_path)
    trained = store.read_per_case(trial.id)
    assert set(trained["case_id"]) == set(mri.split.test)
    assert trained["dice"].mean() > untrained["dice"].mean() + 0.1, (trained["dice"].mean(), untrained["dice"].mean())


def test_a_pretrained_trial_transfers_the_encoder(tmp_path: Path, mri_path: Path, transfers: list) -> None:
    store, trial = one_trial(
        tmp_path,
        mri_path,
        {"pretrain_max_epochs": 1, "finetune_max_epochs": 1, "steps_per_epoch": 2},
        pretraining={"task": ["restoration"], "sampler": ["poisson_disc"], "patch_size": [64], "lr": [0.001]},
        finetuning={"scope": ["encoder"], "schedule": ["freeze_then_unfreeze"], "lr": [0.001]},
    )
    record = run_as_a_study(store, trial, mri_path)
    (report,) = transfers
    encoder = {k for k in load_checkpoint(store.weights_path(trial.pretraining.key)) if group_of(k) == "encoder"}
    assert set(report.copied) == encoder
    assert {group_of(k) for k, _ in report.skipped} == {"decoder", "head"}
    assert record.metrics["copied_tensors"] == len(encoder)
    assert set(store.read_per_case(trial.id)["label_fraction"]) == {0.5}


def test_the_authors_trial_pretrains_with_a_3x3_head_and_stops_on_an_absolute_margin(
    tmp_path: Path, mri_path: Path, transfers: list
) -> None:
    # An absolute margin larger than any improvement: every epoch after the first fails to improve.
    store, trial = one_trial(
        tmp_path,
        mri_path,
        {
            "pretrain_max_epochs": 3,
            "finetune_max_epochs": 3,
            "steps_per_epoch": 2,
            "pretrain_patience": 1,
            "pretrain_min_delta_mode": "absolute",
            "pretrain_min_delta": 1e15,
            "architecture": "authors",
            "norm_running_stats": True,
        },
        pretraining={"task": ["restoration"], "sampler": ["random"], "patch_size": [64], "lr": [0.001]},
        finetuning={"scope": ["encoder"], "schedule": ["at_once"], "lr": [0.001]},
    )
    run_as_a_study(store, trial, mri_path)
    pretrained = store.pretrain_result(trial.pretraining.key)
    assert len(pretrained.history) == 2 and pretrained.best_epoch == 0
    assert load_checkpoint(store.weights_path(trial.pretraining.key))["head.weight"].shape[-2:] == (3, 3)
    assert load_checkpoint(store.trial_weights_path(trial.id))["head.weight"].shape[-2:] == (1, 1)
    (report,) = transfers
    copied = set(report.copied)
    assert "enc_1.norm2.running_mean" in copied and not any(k.startswith("dec_") for k in copied)
    assert store.read_per_case(trial.id)["dice"].notna().any()


def test_an_inpainting_network_must_match_the_images(mri) -> None:
    from study.errors import SpecError

    unet = UNetConfig(in_channels=3, out_channels=3, widths=WIDTHS, groups=GROUPS)
    with pytest.raises(SpecError, match="1-channel images needs in_channels = out_channels = 1, got 3 and 3"):
        pretrain(
            mri,
            mri.split.train,
            val_ids=mri.split.val,
            test_ids=mri.split.test,
            unet=unet,
            config=PretrainConfig(),
            settings=TrainSettings(max_epochs=1),
        )
