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
from study.model import Architecture, UNetConfig
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
    unet: UNetConfig,
    split_seed: int,
    workdir: Path | None,
    on_epoch: Callable[[dict], None] | None = None,
) -> Pretrained:
    """Pretrain the inpainting network ``unet`` on the scans the extent selects (never validation
    or test scans)."""
    ids = pretraining_scans(dataset.split, config.extent, seed=split_seed, rounding=default_rounding(dataset))
    result = pretrain(dataset, ids, val_ids=dataset.split.val, test_ids=dataset.split.test, unet=unet,
                      config=config, settings=settings, workdir=workdir, on_epoch=on_epoch)
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
    finetuned = finetune(dataset, train_ids, val_ids=dataset.split.val, unet=unet, config=config, settings=settings,
                         pretrained=pretrained, workdir=workdir, on_epoch=on_epoch, until_epoch=until_epoch)
    val_dice = None
    if until_epoch is not None or record_validation:
        val_dice = case_dice(evaluate_segmentation(finetuned.model, dataset, dataset.split.val, settings,
                                                    boundary=False))
    if finetuned.paused:
        return Tested(None, finetuned, train_ids, val_dice)
    table = evaluate_segmentation(finetuned.model, dataset, dataset.split.test, settings,
                                  nsd_tolerance_mm=nsd_tolerance_mm)
    table.insert(1, "label_fraction", label_fraction)
    return Tested(table, finetuned, train_ids, val_dice)


def run_pipeline(
    dataset: Dataset,
    label_fraction: float,
    *,
    finetune_config: FinetuneConfig,
    pretrain_config: PretrainConfig | None,
    settings: TrainSettings,
    widths: Sequence[int] = LAPTOP_WIDTHS,
    groups: int = LAPTOP_GROUPS,
    architecture: Architecture = "default",
    norm_running_stats: bool = False,
    split_seed: int = 0,
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> PipelineResult:
    """Run one strategy at one label fraction and return its per-case table.

    ``pretrain_config=None`` is the supervised baseline (transfer scope must then be ``none``).
    ``architecture`` names the U-Net variant of both networks and ``norm_running_stats`` makes their
    GroupNorms keep running statistics for evaluation (docs/science.md §3).
    """
    def network(out_channels: int, inpainting: bool) -> UNetConfig:
        return UNetConfig.for_architecture(architecture, inpainting=inpainting, in_channels=dataset.in_channels,
                                           out_channels=out_channels, widths=tuple(widths), groups=groups,
                                           norm_running_stats=norm_running_stats)

    pretrained = None
    if pretrain_config is not None:
        log(f"pretraining {pretrain_config.task} K={pretrain_config.patch_size} {pretrain_config.sampler}")
        made = pretrain_strategy(
            dataset, config=pretrain_config, settings=settings, unet=network(dataset.in_channels, True), split_seed=split_seed,
            workdir=None if workdir is None else workdir / "pretrain",
            on_epoch=lambda r: log(f"  pretrain epoch {int(r['epoch'])}: train {r['train_loss']:.4g} val {r['val_loss']:.4g}"),
        )
        pretrained = made.result
        log(f"  {len(made.scan_ids)} scans, best epoch {pretrained.fit.best_epoch}, inpainting L2 {pretrained.inpainting['l2'].mean():.4g}")
    unet = network(len(dataset.class_names), False)
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
