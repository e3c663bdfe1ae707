"""One trial on disk: pretrain-or-reuse -> transfer -> fine-tune -> evaluate; no Ray, no MLflow.

Everything a trial makes lives in the study folder, so any process on any node sharing it can
resume it::

    pretrain/<key>/weights.pt, result.json   one pretraining, made once under pretrain/<key>.lock
    pretrain/executed.log                    one line per pretraining actually run
    trials/<id>/trial.json, result.json      the trial's config and its final result
    trials/finished.log                      one line per trial result written
    trials/<id>/per_case.csv                 the per-case table (docs/per-case-table.md)
    trials/<id>/work/                        per-epoch checkpoints: a crashed trial resumes here

A trial that cannot succeed however often it is run (its training diverges; a data, spec or
pretraining error) ends with status "failed" and the reason, after one attempt: retrying is for
what a retry can fix (a worker or node lost, a transient I/O error), which Tune does from the
trial's last checkpoint. A pretraining that cannot succeed is recorded the same way, once, and
every trial that needs it fails with its reason. An unreadable checkpoint (truncated on disk) is never fatal: a fit restarts from scratch, and
pretrained weights that cannot be loaded are made again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from filelock import FileLock

from study import faults
from study.errors import StudyError
from study.data import Dataset, default_rounding, finetuning_scans, open_dataset, pretraining_scans
from study.model import TransferPlan, UNetConfig
from study.plan import PretrainPoint, TrialPoint
from study.train import (
    Diverged,
    FinetuneConfig,
    PretrainConfig,
    TrainSettings,
    evaluate_segmentation,
    finetune,
    load_checkpoint,
    pretrain,
    save_checkpoint,
)

Report = Callable[[dict], None]
# What a retry cannot fix: the trial or pretraining fails once, with the reason.
UNRECOVERABLE = (Diverged, StudyError)
_datasets: dict[str, Dataset] = {}  # per worker process: a reused actor opens each data set once


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: Path, obj: dict) -> None:
    """Atomic: a reader sees the old file or the whole new one, never half of it."""
    faults.before_write(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def trial_dir(study_dir: Path, trial_id: str) -> Path:
    return study_dir / "trials" / trial_id


def write_error(study_dir: Path, trial: TrialPoint, reason: str) -> None:
    """Why Tune gave up on a trial that left no result (its retries spent); a later run retries it."""
    write_json(trial_dir(study_dir, trial.id) / "error.json",
               {"trial_id": trial.id, **trial.params(), "status": "errored", "reason": reason})


def trial_error(study_dir: Path, trial_id: str) -> str | None:
    return (read_json(trial_dir(study_dir, trial_id) / "error.json") or {}).get("reason")


def _dataset(path: str) -> Dataset:
    if path not in _datasets:
        _datasets[path] = open_dataset(path)
    return _datasets[path]


def _settings(scale: dict, max_epochs: int, device: str, seed: int) -> TrainSettings:
    return TrainSettings(batch_size=scale["batch_size"], max_epochs=max_epochs, steps_per_epoch=scale["steps_per_epoch"],
                         device=device, seed=seed)


def ensure_pretrained(study_dir: Path, point: PretrainPoint, data_path: str, device: str, report: Report) -> dict:
    """The pretraining's result, running it first if no process has; safe when many trials ask at
    once (one runs, the others wait on the lock and then read its weights)."""
    folder = study_dir / "pretrain" / point.key
    done = read_json(folder / "result.json")
    if done is not None:
        return done
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        done = read_json(folder / "result.json")
        if done is not None:
            return done
        started = time.time()
        try:
            done = _pretrain(folder, point, data_path, device, report)
        except UNRECOVERABLE as exc:
            done = {"key": point.key, "strategy": point.strategy, "status": "failed", "reason": str(exc)}
        done = {**done, "seconds": time.time() - started}
        write_json(folder / "result.json", done)
        with open(study_dir / "pretrain" / "executed.log", "a") as log:
            log.write(f"{point.key} {os.getpid()} {time.time():.0f}\n")
        return done


def _pretrain(folder: Path, point: PretrainPoint, data_path: str, device: str, report: Report) -> dict:
    dataset, scale = _dataset(data_path), point.scale
    config = PretrainConfig(task=point.task, sampler=point.sampler, patch_size=point.patch_size,
                            extent=point.extent, lr=point.lr, patience=scale["pretrain_patience"], n_masks=scale["n_masks"])
    ids = pretraining_scans(dataset.split, point.extent, seed=point.split_seed, rounding=default_rounding(dataset))
    result = pretrain(
        dataset, ids, dataset.split.val, dataset.split.test, scale["widths"], config,
        _settings(scale, scale["pretrain_max_epochs"], device, point.seed), groups=scale["groups"],
        workdir=folder / "work", on_epoch=lambda r: report({"stage": "pretrain", **r}),
    )
    save_checkpoint(folder / "weights.pt", result.state)
    result.inpainting.to_csv(folder / "inpainting.csv", index=False)
    return {
        "key": point.key, "strategy": point.strategy, "status": "finished", "best_epoch": result.fit.best_epoch,
        "best_val_loss": result.fit.best_val_loss, "inpainting_l2": float(result.inpainting["l2"].mean()),
        "history": result.fit.history, "n_scans": len(ids),
    }


class PretrainingFailed(Exception):
    """A trial's pretraining has a failed result: the trial cannot succeed either."""


def pretrain_failed(result: dict) -> bool:
    return result.get("status") == "failed"  # results of earlier versions have no status: finished


def run_trial(study_dir: Path, trial: TrialPoint, data_path: str, device: str = "cpu", report: Report = lambda _: None) -> dict:
    """Run (or resume, or just read back) one trial and return its result."""
    folder = trial_dir(study_dir, trial.id)
    done = read_json(folder / "result.json")
    if done is not None:
        return done
    write_json(folder / "trial.json", trial.to_json())
    started, scale = time.time(), trial.scale
    try:
        result = _fine_tune_and_evaluate(study_dir, folder, trial, data_path, device, report)
    except (*UNRECOVERABLE, PretrainingFailed) as exc:
        result = {"status": "failed", "reason": str(exc)}
    result = {"trial_id": trial.id, **trial.params(), **result, "seconds": time.time() - started,
              "widths": list(scale["widths"])}
    write_json(folder / "result.json", result)
    (folder / "error.json").unlink(missing_ok=True)  # an earlier invocation's give-up, now superseded
    with open(study_dir / "trials" / "finished.log", "a") as log:
        log.write(f"{trial.id} {os.getpid()} {time.time():.0f}\n")
    return result


def _pretrained_weights(study_dir: Path, point: PretrainPoint, data_path: str, device: str, report: Report) -> tuple[dict, dict]:
    """The pretraining's result and weights; weights that no longer load are made again."""
    folder = study_dir / "pretrain" / point.key
    pre = ensure_pretrained(study_dir, point, data_path, device, report)
    weights = None if pretrain_failed(pre) else _load_own(study_dir, folder / "weights.pt")
    if weights is None and not pretrain_failed(pre):
        with FileLock(str(folder) + ".lock"):
            if _load_own(study_dir, folder / "weights.pt") is None:
                (folder / "weights.pt").unlink(missing_ok=True)
                (folder / "result.json").unlink(missing_ok=True)
        pre = ensure_pretrained(study_dir, point, data_path, device, report)
        weights = None if pretrain_failed(pre) else _load_own(study_dir, folder / "weights.pt")
    if pretrain_failed(pre):
        raise PretrainingFailed(f"its pretraining {point.strategy} failed: {pre.get('reason')}")
    return pre, weights


def _load_own(study_dir: Path, path: Path) -> dict | None:
    """Weights only (``weights_only=True``), and only from the study's own storage: a file that
    resolves elsewhere (a planted symlink) is treated as unreadable."""
    if not path.resolve().is_relative_to(study_dir.resolve()):
        return None
    return load_checkpoint(path)


def _fine_tune_and_evaluate(study_dir: Path, folder: Path, trial: TrialPoint, data_path: str, device: str, report: Report) -> dict:
    dataset, scale = _dataset(data_path), trial.scale
    pretrained, pre = None, {}
    if trial.pretraining is not None:
        pre, pretrained = _pretrained_weights(study_dir, trial.pretraining, data_path, device, report)
    config = FinetuneConfig(plan=TransferPlan(trial.scope, trial.schedule), lr=trial.lr, unfrozen_lr=trial.unfrozen_lr,
                            patience=scale["finetune_patience"])
    unet = UNetConfig(in_channels=dataset.in_channels, out_channels=len(dataset.class_names),
                      widths=tuple(scale["widths"]), groups=scale["groups"])
    settings = _settings(scale, scale["finetune_max_epochs"], device, trial.seed)
    train_ids = finetuning_scans(dataset, trial.label_fraction, seed=trial.split_seed)
    tuned = finetune(dataset, train_ids, dataset.split.val, unet, config, settings, pretrained=pretrained,
                     workdir=folder / "work", on_epoch=lambda stage, r: report({"stage": stage, **r}))
    table = evaluate_segmentation(tuned.model, dataset, dataset.split.test, settings)
    table.insert(1, "label_fraction", trial.label_fraction)
    table.insert(2, "strategy", trial.strategy)
    table.to_csv(folder / "per_case.csv", index=False)
    dice = table.groupby("class", sort=False)["dice"].mean()
    return {
        "status": "finished", "dice": float(table.groupby("case_id")["dice"].mean().mean()),
        **{f"dice_{name}": float(v) for name, v in dice.items()},
        "val_loss": tuned.fits[-1].best_val_loss, "epochs": sum(f.epochs_run for f in tuned.fits),
        "n_train_scans": len(train_ids), "n_test_cases": int(table["case_id"].nunique()),
        "copied_tensors": len(tuned.transfer.copied) if tuned.transfer else 0,
        "pretrain_seconds": pre.get("seconds"), "inpainting_l2": pre.get("inpainting_l2"),
    }
