"""Tiny end-to-end runs on a built-in phantom: the losses the paper trains on go down for real."""

from __future__ import annotations

import pytest
from study.data import PhantomSettings, builtin_dataset, open_dataset
from study.model import TransferPlan, UNet, UNetConfig, group_of
from study.train import FinetuneConfig, PretrainConfig, TrainSettings, run_pipeline
from study.train._evaluate import evaluate_segmentation
from study.train._pretrain import pretrain

WIDTHS = (8, 16, 32)
GROUPS = 4
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mri():
    settings = PhantomSettings(kind="mri", size=32, n_train=6, n_val=2, n_test=2, n_unlabeled=2, n_slices=8)
    return open_dataset(builtin_dataset("mri", settings))


@pytest.mark.parametrize("task", ["prediction", "restoration"])
def test_a_few_pretraining_epochs_lower_the_inpainting_loss(mri, task: str) -> None:
    settings = TrainSettings(batch_size=8, max_epochs=4, steps_per_epoch=6, seed=3)
    config = PretrainConfig(task=task, sampler="random", patch_size=64, lr=3e-3, n_masks=10)
    unet = UNetConfig(in_channels=mri.in_channels, out_channels=mri.in_channels, widths=WIDTHS, groups=GROUPS)
    result = pretrain(mri, mri.split.train, val_ids=mri.split.val, test_ids=mri.split.test, unet=unet,
                      config=config, settings=settings)
    val = [r["val_loss"] for r in result.fit.history]
    assert val[-1] < 0.8 * val[0], val
    assert (result.inpainting["l2"] > 0).all() and len(result.inpainting) == sum(
        mri.scans[s].n_slices for s in mri.split.test
    )


def test_a_few_finetuning_epochs_raise_dice_above_an_untrained_model(mri) -> None:
    settings = TrainSettings(batch_size=8, max_epochs=6, steps_per_epoch=6, seed=3)
    unet = UNetConfig(in_channels=mri.in_channels, out_channels=len(mri.class_names), widths=WIDTHS, groups=GROUPS)
    untrained = evaluate_segmentation(UNet(unet, seed=3), mri, mri.split.test, settings)
    result = run_pipeline(
        mri, 1.0, finetune_config=FinetuneConfig(plan=TransferPlan("none", "at_once"), lr=3e-3), pretrain_config=None,
        settings=settings,
        widths=WIDTHS, groups=GROUPS,
    )
    trained = result.per_case
    assert set(trained["case_id"]) == set(mri.split.test)
    assert trained["dice"].mean() > untrained["dice"].mean() + 0.1, (trained["dice"].mean(), untrained["dice"].mean())


def test_a_pretrained_pipeline_transfers_the_encoder(mri) -> None:
    settings = TrainSettings(batch_size=8, max_epochs=1, steps_per_epoch=2, seed=3)
    result = run_pipeline(
        mri, 0.5, finetune_config=FinetuneConfig(plan=TransferPlan("encoder", "freeze_then_unfreeze"), lr=1e-3),
        pretrain_config=PretrainConfig(task="restoration", sampler="poisson_disc", patch_size=64, n_masks=4),
        settings=settings,
        widths=WIDTHS, groups=GROUPS,
    )
    report = result.finetuned.transfer
    assert report is not None
    encoder = {k for k in result.pretrained.state if group_of(k) == "encoder"}
    assert set(report.copied) == encoder
    assert {group_of(k) for k, _ in report.skipped} == {"decoder", "head"}
    assert set(result.per_case["label_fraction"]) == {0.5}


def test_the_authors_pipeline_pretrains_with_a_3x3_head_and_stops_on_an_absolute_margin(mri) -> None:
    settings = TrainSettings(batch_size=8, max_epochs=3, steps_per_epoch=2, seed=3)
    # An absolute margin larger than any improvement: every epoch after the first fails to improve.
    config = PretrainConfig(task="restoration", sampler="random", patch_size=64, n_masks=4, patience=1,
                            min_delta=1e15, min_delta_mode="absolute")
    result = run_pipeline(
        mri, 0.5, finetune_config=FinetuneConfig(plan=TransferPlan("encoder", "at_once"), lr=1e-3), pretrain_config=config,
        settings=settings, widths=WIDTHS, groups=GROUPS, architecture="authors", norm_running_stats=True,
    )
    assert result.pretrained.fit.epochs_run == 2 and result.pretrained.fit.best_epoch == 0
    assert result.pretrained.state["head.weight"].shape[-2:] == (3, 3)
    assert result.finetuned.model.head.kernel_size == (1, 1)
    copied = set(result.finetuned.transfer.copied)
    assert "enc_1.norm2.running_mean" in copied and not any(k.startswith("dec_") for k in copied)
    assert result.per_case["dice"].notna().any()


def test_an_inpainting_network_must_match_the_images(mri) -> None:
    from study.errors import SpecError

    unet = UNetConfig(in_channels=3, out_channels=3, widths=WIDTHS, groups=GROUPS)
    with pytest.raises(SpecError, match="1-channel images needs in_channels = out_channels = 1, got 3 and 3"):
        pretrain(mri, mri.split.train, val_ids=mri.split.val, test_ids=mri.split.test, unet=unet,
                 config=PretrainConfig(), settings=TrainSettings(max_epochs=1))
