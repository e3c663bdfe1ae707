"""One trial: pretrain-or-reuse -> transfer -> fine-tune -> evaluate; no Ray, no MLflow.

The training is :mod:`study.train`'s pipeline, the same two halves ``python -m study.train``
runs; this module adds what a study needs around them: the pretraining made once per key and
shared by every trial that transfers it, resuming from the study folder (:mod:`study.folder.store`), and
the records that say how each run ended.

A trial that cannot succeed however often it is run (its training diverges; a data, spec or
pretraining error) ends with status "failed" and the reason, after one attempt: retrying is for
what a retry can fix (a worker or node lost, a transient I/O error), which Tune does from the
trial's last checkpoint. A pretraining that cannot succeed is recorded the same way, once, and
every trial that needs it fails with its reason. An unreadable checkpoint (truncated on disk) is
never fatal: a fit restarts from scratch, and pretrained weights that cannot be loaded are made
again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from study.data import Dataset, open_dataset
from study.design.plan import PretrainPoint, TrialPoint
from study.errors import StudyError
from study.execution.configs import finetune_config, pretrain_config, train_settings, unet_config
from study.folder.records import PretrainRecord, Status, TrialRecord
from study.folder.store import StudyStore
from study.train import Diverged, finetune_and_test, load_checkpoint, pretrain_strategy, save_checkpoint

Report = Callable[[dict], None]
# What a retry cannot fix: the trial or pretraining fails once, with the reason.
UNRECOVERABLE = (Diverged, StudyError)
_datasets: dict[str, Dataset] = {}  # per worker process: a reused actor opens each data set once


class PretrainingFailed(Exception):
    """A trial's pretraining has a failed record: the trial cannot succeed either."""


def _dataset(path: str) -> Dataset:
    if path not in _datasets:
        _datasets[path] = open_dataset(path)
    return _datasets[path]


def ensure_pretrained(
    store: StudyStore, point: PretrainPoint, *, data_path: str, device: str, report: Report = lambda _: None
) -> PretrainRecord:
    """The pretraining's record, running it first if no process has; safe when many trials ask at
    once (one runs, the others wait on the lock and then read its weights)."""
    done = store.pretrain_result(point.key)
    if done is not None:
        return done
    with store.pretrain_lock(point.key):
        done = store.pretrain_result(point.key)
        if done is not None:
            return done
        started = time.time()
        try:
            outcome = _pretrain(store, point, data_path=data_path, device=device, report=report)
        except UNRECOVERABLE as exc:
            outcome = {"status": Status.FAILED, "reason": str(exc)}
        done = PretrainRecord(**point.identity(), **outcome, seconds=time.time() - started)
        store.save_pretrain_result(done)
        return done


def _pretrain(store: StudyStore, point: PretrainPoint, *, data_path: str, device: str, report: Report) -> dict:
    dataset, scale = _dataset(data_path), point.scale
    unet = unet_config(scale, in_channels=dataset.in_channels, out_channels=dataset.in_channels, inpainting=True)
    made = pretrain_strategy(
        dataset,
        config=pretrain_config(point.scale, point.values()),
        settings=train_settings(scale, stage="pretrain", device=device, seed=point.seed),
        unet=unet,
        split_seed=point.split_seed,
        workdir=store.pretrain_work(point.key),
        on_epoch=lambda r: report({"stage": "pretrain", **r}),
    )
    result = made.result
    save_checkpoint(store.weights_path(point.key), result.state)
    result.inpainting.to_csv(store.inpainting_path(point.key), index=False)
    return {
        "best_epoch": result.fit.best_epoch,
        "best_val_loss": result.fit.best_val_loss,
        "inpainting_l2": float(result.inpainting["l2"].mean()),
        "history": result.fit.history,
        "n_scans": len(made.scan_ids),
        "metrics": {"step_seconds": result.fit.step_seconds},
    }


@dataclass(frozen=True)
class Paused:
    """A trial paused at a pruning rung: its per-case validation Dice is in the study folder."""

    rung: int
    epoch: int
    val_loss: float


def run_trial(
    store: StudyStore,
    trial: TrialPoint,
    *,
    data_path: str,
    device: str = "cpu",
    keep_weights: str = "best",
    report: Report = lambda _: None,
    rung: int | None = None,
    until_epoch: int | None = None,
    nsd_tolerance_mm: dict[str, float] | None = None,
) -> TrialRecord | Paused:
    """Run (or resume, or just read back) one trial and return its record. ``keep_weights="best"``
    keeps the fine-tuned weights (a state dict, loadable with ``weights_only=True``); the resume
    checkpoints go once the record is written, whatever it says. Under pruning ``rung`` is the
    stretch this call runs: up to ``until_epoch``, where it pauses (:class:`Paused`), or, without
    it, to the end. ``nsd_tolerance_mm``: the NSD tolerance (mm) per class over the defaults, as the
    spec's ``analysis.nsd_tolerance_mm`` says (the table records it per row, ``nsd_tol_mm``)."""
    done = store.trial_result(trial.id)
    if done is not None:
        return done
    store.save_trial_config(trial)
    started, per_case = time.time(), None
    try:
        per_case, metrics, weights, tested = _fine_tune_and_evaluate(
            store,
            trial,
            data_path=data_path,
            device=device,
            report=report,
            pruned=rung is not None,
            until_epoch=until_epoch,
            nsd_tolerance_mm=nsd_tolerance_mm,
        )
        if tested.val_dice is not None:  # pruning: the rung's (or, ending, every later rung's) values
            at = {
                "val_dice": tested.val_dice,
                "val_subject": case_subjects(_dataset(data_path), tested.val_dice),
                "val_loss": metrics["val_loss"],
                **_compute(metrics),
            }
            if tested.finetuned.paused:
                store.save_rung_values(
                    trial.id, rung, {"rung": rung, "epoch": until_epoch, "seconds": time.time() - started, **at}
                )
                return Paused(rung, until_epoch, metrics["val_loss"])
            store.save_rung_values(trial.id, "final", at)
        if keep_weights == "best":
            save_checkpoint(store.trial_weights_path(trial.id), weights)
        outcome = {"status": Status.FINISHED, "metrics": metrics}
    except (*UNRECOVERABLE, PretrainingFailed) as exc:
        outcome = {"status": Status.FAILED, "reason": str(exc)}
    # under pruning, the stretches before this one (to each earlier rung) count too
    earlier = sum((store.rung_values(trial.id, r) or {}).get("seconds", 0.0) for r in range(rung or 0))
    record = TrialRecord(trial_id=trial.id, **trial.identity(), **outcome, seconds=earlier + time.time() - started)
    store.save_trial_result(record, per_case)
    return record


def _pretrained_weights(
    store: StudyStore, point: PretrainPoint, *, data_path: str, device: str, report: Report
) -> tuple[PretrainRecord, dict]:
    """The pretraining's record and weights; weights that no longer load are made again."""

    def weights(record: PretrainRecord) -> dict | None:
        return _load_own(store, point.key) if record.finished else None

    pre = ensure_pretrained(store, point, data_path=data_path, device=device, report=report)
    loaded = weights(pre)
    if loaded is None and pre.finished:
        with store.pretrain_lock(point.key):
            if _load_own(store, point.key) is None:
                store.forget_pretraining(point.key)
        pre = ensure_pretrained(store, point, data_path=data_path, device=device, report=report)
        loaded = weights(pre)
    if not pre.finished:
        raise PretrainingFailed(f"its pretraining {point.strategy} failed: {pre.reason}")
    return pre, loaded


def _load_own(store: StudyStore, key: str) -> dict | None:
    """Weights only (``weights_only=True``), and only from the study's own storage: a file that
    resolves elsewhere (a planted symlink) is treated as unreadable."""
    path = store.weights_path(key)
    return load_checkpoint(path) if store.owns(path) else None


def case_subjects(dataset: Dataset, case_ids: Iterable[str]) -> dict[str, str]:
    """Each case's subject, for a rung file: pruning compares patients, and a CT volume imported
    from NIfTI is one subject of many slice cases."""
    return {c: dataset.scans[c].subject_id for c in case_ids}


def _boundary_metrics(table) -> dict[str, float]:
    """NSD and HD95 (mm) as Dice is logged: the mean over cases of each case's class mean, and per
    class (NaN classes, absent from truth and prediction, skipped)."""
    out: dict[str, float] = {}
    for metric in ("nsd", "hd95"):
        if metric not in table:
            continue
        out[metric] = float(table.groupby("case_id")[metric].mean().mean())
        out.update(
            {f"{metric}_{name}": float(v) for name, v in table.groupby("class", sort=False)[metric].mean().items()}
        )
    return out


def _compute(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("finetune_steps", "finetune_images", "step_seconds") if k in metrics}


def _fine_tune_and_evaluate(
    store: StudyStore,
    trial: TrialPoint,
    *,
    data_path: str,
    device: str,
    report: Report,
    pruned: bool = False,
    until_epoch: int | None = None,
    nsd_tolerance_mm: dict[str, float] | None = None,
):
    """(per-case table or None while paused, metrics, weights, what the pipeline returned). A
    ``pruned`` trial records its validation Dice and pauses at ``until_epoch`` when given."""
    dataset, scale = _dataset(data_path), trial.scale
    pretrained, pre = None, None
    if trial.pretraining is not None:
        pre, pretrained = _pretrained_weights(
            store, trial.pretraining, data_path=data_path, device=device, report=report
        )
    unet = unet_config(scale, in_channels=dataset.in_channels, out_channels=len(dataset.class_names))
    tested = finetune_and_test(
        dataset,
        trial.label_fraction,
        config=finetune_config(trial.scale, trial.values()),
        settings=train_settings(scale, stage="finetune", device=device, seed=trial.seed),
        unet=unet,
        pretrained=pretrained,
        split_seed=trial.split_seed,
        workdir=store.trial_work(trial.id),
        on_epoch=lambda stage, r: report({"stage": stage, **r}),
        until_epoch=until_epoch,
        record_validation=pruned,
        nsd_tolerance_mm=nsd_tolerance_mm,
    )
    table, tuned = tested.per_case, tested.finetuned
    steps = tuned.steps
    compute = {"finetune_steps": steps, "finetune_images": steps * scale.batch_size, "step_seconds": tuned.step_seconds}
    if table is None:
        return None, {"val_loss": tuned.fits[-1].best_val_loss, **compute}, None, tested
    table.insert(2, "strategy", trial.strategy)
    dice = table.groupby("class", sort=False)["dice"].mean()
    metrics = {
        "dice": float(table.groupby("case_id")["dice"].mean().mean()),
        **{f"dice_{name}": float(v) for name, v in dice.items()},
        **_boundary_metrics(table),
        **compute,
        "val_loss": tuned.fits[-1].best_val_loss,
        "epochs": sum(f.epochs_run for f in tuned.fits),
        "n_train_scans": len(tested.train_ids),
        "n_test_cases": int(table["case_id"].nunique()),
        "copied_tensors": len(tuned.transfer.copied) if tuned.transfer else 0,
    }
    if pre is not None:
        metrics.update(pretrain_seconds=pre.seconds, inpainting_l2=pre.inpainting_l2)
    return table, metrics, {k: v.detach().cpu() for k, v in tuned.model.state_dict().items()}, tested
