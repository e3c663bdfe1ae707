"""Training: the loop, pretraining, fine-tuning with transfer, evaluation, and the two halves a trial runs.

Plain functions over torch and the data model; nothing here knows of Ray or MLflow.
"""

from __future__ import annotations

from study.train._early_stopping import Diverged, EarlyStopping
from study.train._evaluate import evaluate_inpainting, evaluate_segmentation, predict_image, predict_scan
from study.train._finetune import FINETUNE_CHECKPOINTS, FinetuneConfig, FinetuneResult, finetune
from study.train._loop import FitResult, TrainSettings, fit, load_checkpoint, save_checkpoint
from study.train._losses import inpainting_loss, soft_dice_loss
from study.train._pipeline import Pretrained, Tested, finetune_and_test, pretrain_strategy
from study.train._pretrain import PretrainConfig, PretrainResult, pretrain
from study.train._schedule import StepDecay, lr_at, set_lr

__all__ = [
    "Diverged",
    "EarlyStopping",
    "FINETUNE_CHECKPOINTS",
    "FinetuneConfig",
    "FinetuneResult",
    "FitResult",
    "PretrainConfig",
    "PretrainResult",
    "Pretrained",
    "StepDecay",
    "Tested",
    "TrainSettings",
    "evaluate_inpainting",
    "evaluate_segmentation",
    "finetune",
    "finetune_and_test",
    "fit",
    "inpainting_loss",
    "load_checkpoint",
    "lr_at",
    "predict_image",
    "predict_scan",
    "pretrain",
    "pretrain_strategy",
    "save_checkpoint",
    "set_lr",
    "soft_dice_loss",
]
