"""A trial's two halves, without Ray or MLflow: pretrain (or not), then transfer -> fine-tune -> evaluate.

:mod:`study.execution.trial` runs them for a study and for ``python -m study.train``, with the pretraining
made once per key in the study folder and shared by the trials that transfer it. So the split
selection, the network, the evaluation and the table columns cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.data import Dataset, default_rounding, finetuning_scans, pretraining_scans
from study.model import UNetConfig
from study.train._evaluate import evaluate_segmentation
from study.train._finetune import FinetuneConfig, FinetuneResult, finetune
from study.train._loop import TrainSettings
from study.train._pretrain import PretrainConfig, PretrainResult, pretrain


@dataclass
class Pretrained:
    result: PretrainResult
    scan_ids: tuple[str, ...]


@dataclass
class Tested:
    per_case: pd.DataFrame | None  # docs/per-case-table.md, label fraction second; None while paused
    finetuned: FinetuneResult
    train_ids: tuple[str, ...]
    val_dice: dict[str, float] | None = None  # (pruning) class-averaged Dice per validation case


def case_dice(table: pd.DataFrame) -> dict[str, float]:
    """Class-averaged Dice per case (NaN classes, absent from truth and prediction, skipped)."""
    return {str(k): float(v) for k, v in table.groupby("case_id", sort=True)["dice"].mean().items()}


def pretrain_strategy(
    dataset: Dataset,
    *,
    config: PretrainConfig,
    settings: TrainSettings,
    unet: UNetConfig,
    split_seed: int,
    workdir: Path | None,
    on_epoch: Callable[[dict], None] | None = None,
) -> Pretrained:
    """Pretrain the inpainting network ``unet`` on the scans the extent selects (never validation
    or test scans)."""
    ids = pretraining_scans(dataset.split, config.extent, seed=split_seed, rounding=default_rounding(dataset))
    result = pretrain(
        dataset,
        ids,
        val_ids=dataset.split.val,
        test_ids=dataset.split.test,
        unet=unet,
        config=config,
        settings=settings,
        workdir=workdir,
        on_epoch=on_epoch,
    )
    return Pretrained(result, ids)


def finetune_and_test(
    dataset: Dataset,
    label_fraction: float,
    *,
    config: FinetuneConfig,
    settings: TrainSettings,
    unet: UNetConfig,
    pretrained: dict | None,
    split_seed: int,
    workdir: Path | None,
    on_epoch: Callable[[str, dict], None] | None = None,
    until_epoch: int | None = None,
    record_validation: bool = False,
    nsd_tolerance_mm: dict[str, float] | None = None,
) -> Tested:
    """Fine-tune on the label subset of ``label_fraction`` and evaluate on the test split.

    With ``until_epoch`` (a pruning rung) the fine-tuning may pause there; the best weights so far
    are then evaluated on the validation cases only, and the test split is not touched.
    ``record_validation`` also evaluates the validation cases of a fine-tuning that ends (a pruned
    study compares it at the rungs still to come). ``nsd_tolerance_mm``: the NSD tolerances (mm) per
    class over the defaults (the spec's ``analysis.nsd_tolerance_mm``).
    """
    train_ids = finetuning_scans(dataset, label_fraction, seed=split_seed)
    finetuned = finetune(
        dataset,
        train_ids,
        val_ids=dataset.split.val,
        unet=unet,
        config=config,
        settings=settings,
        pretrained=pretrained,
        workdir=workdir,
        on_epoch=on_epoch,
        until_epoch=until_epoch,
    )
    val_dice = None
    if until_epoch is not None or record_validation:
        val_dice = case_dice(
            evaluate_segmentation(finetuned.model, dataset, dataset.split.val, settings, boundary=False)
        )
    if finetuned.paused:
        return Tested(None, finetuned, train_ids, val_dice)
    table = evaluate_segmentation(
        finetuned.model, dataset, dataset.split.test, settings, nsd_tolerance_mm=nsd_tolerance_mm
    )
    table.insert(1, "label_fraction", label_fraction)
    return Tested(table, finetuned, train_ids, val_dice)
