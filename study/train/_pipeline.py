"""One pipeline, without Ray or MLflow: pretrain (or not) -> transfer -> fine-tune -> evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from study.data import Dataset, default_rounding, finetuning_scans, pretraining_scans
from study.model import UNetConfig
from study.train._evaluate import evaluate_segmentation
from study.train._finetune import FinetuneConfig, FinetuneResult, finetune
from study.train._loop import TrainSettings
from study.train._pretrain import PretrainConfig, PretrainResult, pretrain

LAPTOP_WIDTHS = (16, 32, 64, 128)
LAPTOP_GROUPS = 8
PAPER_WIDTHS = (32, 64, 128, 256, 512)


@dataclass
class PipelineResult:
    per_case: pd.DataFrame
    finetuned: FinetuneResult
    pretrained: PretrainResult | None


def run_pipeline(
    dataset: Dataset,
    label_fraction: float,
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
    train_ids = finetuning_scans(dataset, label_fraction, seed=split_seed)
    pretrained = None
    if pretrain_config is not None:
        pre_ids = pretraining_scans(dataset.split, pretrain_config.extent, seed=split_seed, rounding=default_rounding(dataset))
        log(f"pretraining {pretrain_config.task} K={pretrain_config.patch_size} {pretrain_config.sampler} on {len(pre_ids)} scans")
        pretrained = pretrain(
            dataset, pre_ids, dataset.split.val, dataset.split.test, widths, pretrain_config, settings,
            groups=groups, workdir=None if workdir is None else workdir / "pretrain",
            on_epoch=lambda r: log(f"  pretrain epoch {int(r['epoch'])}: train {r['train_loss']:.4g} val {r['val_loss']:.4g}"),
        )
        log(f"  best epoch {pretrained.fit.best_epoch}, inpainting L2 {pretrained.inpainting['l2'].mean():.4g}")
    unet = UNetConfig(in_channels=dataset.in_channels, out_channels=len(dataset.class_names), widths=tuple(widths), groups=groups)
    log(f"fine-tuning on {len(train_ids)} of {len(dataset.split.train)} training scans ({label_fraction:g}), {finetune_config.plan}")
    finetuned = finetune(
        dataset, train_ids, dataset.split.val, unet, finetune_config, settings,
        pretrained=None if pretrained is None else pretrained.state,
        workdir=None if workdir is None else workdir / "finetune",
        on_epoch=lambda stage, r: log(f"  {stage} epoch {int(r['epoch'])}: train {r['train_loss']:.4f} val {r['val_loss']:.4f}"),
    )
    if finetuned.transfer is not None:
        log("  " + finetuned.transfer.summary())
    table = evaluate_segmentation(finetuned.model, dataset, dataset.split.test, settings)
    table.insert(1, "label_fraction", label_fraction)
    return PipelineResult(per_case=table, finetuned=finetuned, pretrained=pretrained)
