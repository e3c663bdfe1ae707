"""Bounded disk: a trial's resume checkpoints go once its record is written; what stays is a setting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from study.data import open_dataset
from study.design.plan import make_plan
from study.design.spec_loading import validate
from study.execution.configs import train_settings, unet_config
from study.execution.trial import run_trial
from study.folder.store import StudyStore
from study.model import UNet
from study.train import evaluate_segmentation
from tests.run.conftest import TINY_SCALE

pytestmark = pytest.mark.slow


def _trial(tmp_path: Path, data: Path, **fields):
    spec = validate(
        {
            "name": "d",
            "datasets": [str(data)],
            "scale": TINY_SCALE,
            "label_fractions": [1.0],
            "pretraining": {"task": ["restoration"], "patch_size": [64], "sampler": ["random"]},
            "storage": str(tmp_path),
            "baseline": False,
            **fields,
        }
    )
    (trial,) = make_plan(spec).trials
    return spec, StudyStore(spec.storage_dir()), trial


def test_a_finished_trial_keeps_its_fine_tuned_weights_and_drops_its_checkpoints(
    tmp_path: Path, tiny_mri: Path
) -> None:
    spec, store, trial = _trial(tmp_path, tiny_mri)
    record = run_trial(store, trial, data_path=str(tiny_mri))
    assert record.finished
    assert not store.trial_work(trial.id).exists() and not store.pretrain_work(trial.pretraining.key).exists()
    assert store.weights_path(trial.pretraining.key).is_file()  # later trials transfer it

    state = torch.load(store.trial_weights_path(trial.id), map_location="cpu", weights_only=True)
    dataset = open_dataset(tiny_mri)
    model = UNet(unet_config(spec.scale, in_channels=dataset.in_channels, out_channels=len(dataset.class_names)))
    model.load_state_dict(state)  # the weights alone: no optimiser state, no best-so-far copy
    assert set(state) == set(model.state_dict())
    settings = train_settings(spec.scale, stage="finetune", device="cpu", seed=trial.seed)
    table = evaluate_segmentation(model, dataset, dataset.split.test, settings)
    stored = store.read_per_case(trial.id)
    pd.testing.assert_series_equal(
        table["dice"].reset_index(drop=True), stored["dice"], check_exact=False, rtol=1e-6, atol=1e-9, check_names=False
    )
    for metric in ("nsd", "hd95"):  # the boundary metrics: in the table, and as the record's (MLflow's) metrics
        pd.testing.assert_series_equal(
            table[metric].reset_index(drop=True),
            stored[metric],
            check_exact=False,
            rtol=1e-6,
            atol=1e-9,
            check_names=False,
        )
        assert record.metrics[metric] == pytest.approx(stored.groupby("case_id")[metric].mean().mean(), nan_ok=True)
        assert {f"{metric}_{c}" for c in dataset.class_names} <= set(record.metrics)


def test_keep_weights_none_keeps_only_the_record_and_the_table(tmp_path: Path, tiny_mri: Path) -> None:
    _, store, trial = _trial(tmp_path, tiny_mri, keep_weights="none")
    assert run_trial(store, trial, data_path=str(tiny_mri), keep_weights="none").finished
    assert sorted(p.name for p in store.trial_dir(trial.id).iterdir()) == ["per_case.csv", "result.json", "trial.json"]
