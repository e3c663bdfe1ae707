"""One pipeline, without Ray or MLflow: pretrain (or not) -> transfer -> fine-tune -> evaluate.

``python -m study.train`` runs it whole; a study trial runs the same two halves, with the
pretraining made once per key in the study folder and shared by the trials that transfer it. So
the split selection, the network, the evaluation and the table columns cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from study.constants import LAPTOP_GROUPS, LAPTOP_WIDTHS
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
    per_case: pd.DataFrame  # docs/per-case-table.md, with the label fraction as its second column
    finetuned: FinetuneResult
    train_ids: tuple[str, ...]


@dataclass
class PipelineResult:
    per_case: pd.DataFrame
    finetuned: FinetuneResult
    pretrained: PretrainResult | None


def pretrain_strategy(
    dataset: Dataset,
    *,
    config: PretrainConfig,
    settings: TrainSettings,
    widths: Sequence[int],
    groups: int,
    split_seed: int,
    workdir: Path | None,
    on_epoch: Callable[[dict], None] | None = None,
) -> Pretrained:
    """Pretrain on the scans the extent selects (never validation or test scans)."""
    ids = pretraining_scans(dataset.split, config.extent, seed=split_seed, rounding=default_rounding(dataset))
    result = pretrain(dataset, ids, val_ids=dataset.split.val, test_ids=dataset.split.test, widths=widths,
                      config=config, settings=settings, groups=groups, workdir=workdir, on_epoch=on_epoch)
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
) -> Tested:
    """Fine-tune on the label subset of ``label_fraction`` and evaluate on the test split."""
    train_ids = finetuning_scans(dataset, label_fraction, seed=split_seed)
    finetuned = finetune(dataset, train_ids, val_ids=dataset.split.val, unet=unet, config=config, settings=settings,
                         pretrained=pretrained, workdir=workdir, on_epoch=on_epoch)
    table = evaluate_segmentation(finetuned.model, dataset, dataset.split.test, settings)
    table.insert(1, "label_fraction", label_fraction)
    return Tested(table, finetuned, train_ids)


def run_pipeline(
    dataset: Dataset,
    label_fraction: float,
    *,
    finetune_config: FinetuneConfig,
    pretrain_config: PretrainConfig | None,
    settings: TrainSettings,
    widths: Sequence[int] = LAPTOP_WIDTHS,
    groups: int = LAPTOP_GROUPS,
    split_seed: int = 0,
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> PipelineResult:
    """Run one strategy at one label fraction and return its per-case table.

    ``pretrain_config=None`` is the supervised baseline (transfer scope must then be ``none``).
    """
    pretrained = None
    if pretrain_config is not None:
        log(f"pretraining {pretrain_config.task} K={pretrain_config.patch_size} {pretrain_config.sampler}")
        made = pretrain_strategy(
            dataset, config=pretrain_config, settings=settings, widths=widths, groups=groups, split_seed=split_seed,
            workdir=None if workdir is None else workdir / "pretrain",
            on_epoch=lambda r: log(f"  pretrain epoch {int(r['epoch'])}: train {r['train_loss']:.4g} val {r['val_loss']:.4g}"),
        )
        pretrained = made.result
        log(f"  {len(made.scan_ids)} scans, best epoch {pretrained.fit.best_epoch}, inpainting L2 {pretrained.inpainting['l2'].mean():.4g}")
    unet = UNetConfig(in_channels=dataset.in_channels, out_channels=len(dataset.class_names), widths=tuple(widths), groups=groups)
    log(f"fine-tuning at label fraction {label_fraction:g}, {finetune_config.plan}")
    tested = finetune_and_test(
        dataset, label_fraction, config=finetune_config, settings=settings, unet=unet,
        pretrained=None if pretrained is None else pretrained.state, split_seed=split_seed,
        workdir=None if workdir is None else workdir / "finetune",
        on_epoch=lambda stage, r: log(f"  {stage} epoch {int(r['epoch'])}: train {r['train_loss']:.4f} val {r['val_loss']:.4f}"),
    )
    log(f"  fine-tuned on {len(tested.train_ids)} of {len(dataset.split.train)} training scans")
    if tested.finetuned.transfer is not None:
        log("  " + tested.finetuned.transfer.summary())
    return PipelineResult(per_case=tested.per_case, finetuned=tested.finetuned, pretrained=pretrained)
