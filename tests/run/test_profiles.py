"""Profiles own their defaults: learning rates, budgets, early stopping, the network; what a spec
names explicitly wins; ids of studies run before a setting existed stay the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from study.design.plan import PretrainPoint, TrialPoint, make_plan
from study.design.scale import Scale
from study.design.spec_loading import load_spec, validate
from study.errors import SpecError
from study.execution.configs import finetune_config, pretrain_config, unet_config
from tests.conftest import run_cli

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
# What a scale's JSON (and with it every trial id) held before learning rates, the early-stopping
# rule, the architecture and padding became settings.
ORIGINAL_FIELDS = {
    "profile",
    "image_size",
    "widths",
    "groups",
    "batch_size",
    "pretrain_max_epochs",
    "finetune_max_epochs",
    "steps_per_epoch",
    "pretrain_patience",
    "finetune_patience",
    "n_masks",
}


def _lrs(spec) -> set[tuple[float, float | None]]:
    plan = make_plan(spec)
    return {(t.lr, t.pretraining.lr if t.pretraining else None) for t in plan.trials}


def test_paper_alone_brings_the_papers_learning_rates_budgets_and_early_stopping() -> None:
    spec = load_spec(SPACES / "pretext.yaml", ["scale=paper"])
    assert _lrs(spec) == {(1e-3, 1e-3), (1e-3, None)}  # pretrained trials and the baseline
    s = spec.scale
    assert (s.pretrain_max_epochs, s.finetune_max_epochs, s.steps_per_epoch) == (500, 500, None)
    pre = pretrain_config(s, {"task": "restoration", "sampler": "random", "patch_size": 32, "extent": 1.0, "lr": 1e-3})
    tune = finetune_config(s, {"scope": "encoder", "schedule": "at_once", "lr": 1e-3, "unfrozen_lr": None})
    assert (pre.patience, pre.min_delta, pre.min_delta_mode) == (4, 1e-3, "relative")
    assert (tune.patience, tune.min_delta) == (10, 1e-3)


def test_the_laptop_profile_keeps_its_learning_rate_and_a_named_axis_wins() -> None:
    assert _lrs(load_spec(SPACES / "pretext.yaml")) == {(0.01, 0.01), (0.01, None)}
    named = load_spec(SPACES / "pretext.yaml", ["scale=paper", "finetuning.lr=[0.01]", "pretraining.lr=[0.003]"])
    assert _lrs(named) == {(0.01, 0.003), (0.01, None)}
    raised = load_spec(SPACES / "pretext.yaml", ["scale.finetune_lr=0.02"])
    assert _lrs(raised) == {(0.02, 0.01), (0.02, None)}


def test_a_scale_at_its_defaults_keeps_the_json_trial_ids_were_hashed_from() -> None:
    for profile in ("laptop", "paper"):
        assert set(Scale.model_validate(profile).model_dump(mode="json")) == ORIGINAL_FIELDS
    spec = load_spec(SPACES / "pretext.yaml")
    trial = next(t for t in make_plan(spec).trials if t.pretraining is not None)
    assert set(trial.to_json()["scale"]) == ORIGINAL_FIELDS


@pytest.mark.parametrize(
    "fields",
    [
        {"profile": "laptop"},
        {"profile": "paper"},
        {"profile": "paper", "pretrain_lr": 0.01},
        {"profile": "laptop", "pretrain_min_delta_mode": "absolute"},
        {"profile": "laptop", "pretrain_min_delta_mode": "absolute", "pretrain_min_delta": 20},
        {"profile": "paper", "architecture": "authors", "norm_running_stats": True},
    ],
)
def test_a_scale_and_the_ids_that_hash_it_survive_a_round_trip(fields: dict) -> None:
    scale = Scale.model_validate(fields)
    assert Scale.model_validate(json.loads(json.dumps(scale.model_dump(mode="json")))) == scale
    point = PretrainPoint(
        dataset="mri", task="restoration", patch_size=32, sampler="random", extent=1.0, lr=1e-3, scale=scale
    )
    assert PretrainPoint.from_json(json.loads(json.dumps(point.to_json()))).key == point.key
    trial = TrialPoint(
        dataset="mri",
        label_fraction=0.5,
        scope="encoder",
        schedule="at_once",
        lr=1e-3,
        unfrozen_lr=None,
        pretraining=point,
        scale=scale,
    )
    assert TrialPoint.from_json(json.loads(json.dumps(trial.to_json()))).id == trial.id


def test_a_new_setting_names_new_trials() -> None:
    base = validate({"name": "a", "datasets": ["mri"]})
    authors = validate({"name": "a", "datasets": ["mri"], "scale": {"architecture": "authors"}})
    assert not {t.id for t in make_plan(base).trials} & {t.id for t in make_plan(authors).trials}


def test_the_pretraining_stopping_rule_is_a_setting_with_the_authors_margin() -> None:
    authors = Scale.model_validate({"pretrain_min_delta_mode": "absolute"})
    config = pretrain_config(
        authors, {"task": "restoration", "sampler": "random", "patch_size": 32, "extent": 1.0, "lr": 1e-3}
    )
    assert (config.min_delta_mode, config.min_delta, config.patience) == ("absolute", 50.0, 4)
    with pytest.raises(SpecError, match=r"spec: scale: .*pretrain_min_delta=2 must lie in \[0, 1\) in relative mode"):
        validate({"name": "a", "scale": {"pretrain_min_delta": 2}})


def test_the_architecture_is_a_scale_setting() -> None:
    scale = Scale.model_validate({"architecture": "authors", "widths": [8, 16], "groups": 4})
    inpainting = unet_config(scale, in_channels=1, out_channels=1, inpainting=True)
    segmentation = unet_config(scale, in_channels=1, out_channels=4)
    assert (inpainting.block, inpainting.up_kernel, inpainting.head_kernel) == ("conv_relu_norm", 3, 3)
    assert (segmentation.block, segmentation.up_kernel, segmentation.head_kernel) == ("conv_relu_norm", 3, 1)
    default = unet_config(Scale(), in_channels=1, out_channels=4)
    assert (default.block, default.up_kernel, default.head_kernel, default.norm_running_stats) == (
        "conv_norm_relu",
        2,
        1,
        False,
    )
    with pytest.raises(SpecError, match="scale.architecture"):
        validate({"name": "a", "scale": {"architecture": "keras"}})


def test_keep_weights_is_best_or_none() -> None:
    assert validate({"name": "a"}).keep_weights == "best"
    with pytest.raises(SpecError, match="keep_weights"):
        validate({"name": "a", "keep_weights": "all"})


def test_the_dry_run_prints_the_resolved_training_and_the_disk_it_needs(tmp_path: Path) -> None:
    result = run_cli(
        "study.run",
        str(SPACES / "pretext.yaml"),
        "--set",
        "scale=paper",
        "--set",
        f"storage={tmp_path}",
        "--dry-run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "learning rates: pretraining lr [0.001], fine-tuning lr [0.001]" in out
    assert (
        "pretraining: up to 500 epochs, early stopping after 4 without an improvement of more than 0.001 x |best|"
        in out
    )
    assert "fine-tuning: up to 500 epochs, early stopping after 10" in out
    assert "network: default U-Net, widths 32-64-128-256-512, 16 groups" in out
    # 7.77 M float32 parameters per network: 29.6 MiB per weights file, 64 pretrainings + 136 trials
    # kept (two seeds)
    assert "disk kept (keep_weights best): 5.79 GiB; mri: 32 pretrained weights of 29.6 MiB, 68 fine-tuned" in out
    assert "118.6 MiB of resume checkpoints per running trial" in out
    assert not any(tmp_path.iterdir())
