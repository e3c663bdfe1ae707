"""Per-case evaluation: the per-case table every analysis reads (docs/per-case-table.md).

A test case is a scan: a 3D volume for MRI (Dice over the whole volume), one slice for CT.
Prediction = sigmoid(logits) > 0.5. Boundary metrics (NSD, HD95 in mm) are measured on the same
case with its voxel spacing, 3-D for a volume and 2-D for a slice (:mod:`study.metrics._surface`).
Clinical metrics are computed from the raw values twice, with the predicted and with the
ground-truth masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from study.data import Dataset
from study.metrics import (
    binarize,
    boundary_rows,
    case_rows,
    clinical_rows,
    ct_clinical,
    dice_rows,
    inpainting_l2,
    mri_clinical,
)
from study.train._loop import TrainSettings
from study.train._padding import network_forward


@torch.inference_mode()
def predict_scan(model: nn.Module, dataset: Dataset, scan_id: str, settings: TrainSettings) -> np.ndarray:
    """Binary prediction of one scan on its own grid (any network padding cropped), (K, S, H, W) bool."""
    n = dataset.scans[scan_id].n_slices
    return predict_image(model, lambda sl: dataset.read_image(scan_id, sl), n, settings)


@torch.inference_mode()
def predict_image(
    model: nn.Module,
    read: Callable[[slice], np.ndarray],
    n_slices: int,
    settings: TrainSettings,
    logits_out: list | None = None,
) -> np.ndarray:
    """Binary prediction (K, S, H, W) bool of an image of ``n_slices`` slices, read a batch at a time
    by ``read(slice)`` as network input (n, C, H, W): the evaluation's and study.predict's one path.
    ``logits_out``, when given, receives each batch's logits (n, K, H, W) as float32 numpy."""
    model.eval()
    out = []
    for start in range(0, n_slices, settings.batch_size):
        image = torch.from_numpy(read(slice(start, min(n_slices, start + settings.batch_size))))
        with settings.autocast():
            logits = network_forward(model, settings.to_device(image), settings).float()
        out.append(binarize(logits))
        if logits_out is not None:
            logits_out.append(logits.cpu().numpy())
    return np.moveaxis(np.concatenate(out), 1, 0)


def _clinical(dataset: Dataset, scan_id: str, pred: np.ndarray, true: np.ndarray) -> list[dict]:
    info = dataset.scans[scan_id]
    raw = dataset.read_raw(scan_id)
    names = dataset.class_names
    if dataset.modality == "mri" and "echo1" in raw and info.qdess is not None:
        args = (raw["echo1"], raw["echo2"])
        kw = {"params": info.qdess, "spacing_mm": info.spacing_mm, "class_names": names}
        return clinical_rows(mri_clinical(*args, pred, **kw), mri_clinical(*args, true, **kw))
    if dataset.modality == "ct" and "hu" in raw:
        return clinical_rows(
            ct_clinical(raw["hu"], pred, info.spacing_mm, class_names=names),
            ct_clinical(raw["hu"], true, info.spacing_mm, class_names=names),
        )
    return []


def evaluate_segmentation(
    model: nn.Module,
    dataset: Dataset,
    scan_ids: Sequence[str],
    settings: TrainSettings,
    empty: str = "nan",
    boundary: bool = True,
    nsd_tolerance_mm: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per (case, class): ``dataset, case_id, subject_id, class, dice``, with ``boundary``
    ``nsd, hd95, nsd_tol_mm`` (NSD at the class's tolerance, ``nsd_tolerance_mm`` over the defaults
    of :data:`study.metrics.DEFAULT_NSD_TOLERANCE_MM`), and clinical columns.

    ``empty`` is the Dice of a class absent from both prediction and truth (default NaN: the case
    says nothing about that class, and the class average skips it); NSD and HD95 are NaN there too.
    """
    rows = []
    for scan_id in scan_ids:
        pred = predict_scan(model, dataset, scan_id, settings)
        true = np.moveaxis(dataset.read_masks(scan_id), 1, 0)  # (K, S, H, W)
        lists = [dice_rows(pred, true, dataset.class_names, empty=empty)]
        if boundary:
            lists.append(
                boundary_rows(pred, true, dataset.class_names, dataset.scans[scan_id].spacing_mm, nsd_tolerance_mm)
            )
        clinical = _clinical(dataset, scan_id, pred, true)
        if clinical:
            lists.append(clinical)
        for row in case_rows(scan_id, *lists):
            rows.append({"dataset": dataset.name, "subject_id": dataset.scans[scan_id].subject_id, **row})
    table = pd.DataFrame(rows)
    first = ["dataset", "case_id", "subject_id", "class", "dice"]
    return table[first + [c for c in table.columns if c not in first]]


@torch.inference_mode()
def evaluate_inpainting(
    model: nn.Module, corrupt, dataset: Dataset, scan_ids: Sequence[str], settings: TrainSettings, seed: int
) -> pd.DataFrame:
    """L2 norm of the restored-image error per held-out slice: ``dataset, case_id, slice, l2``.

    ``corrupt(x, generator)`` corrupts a batch; a fixed ``seed`` gives every model the same masks.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for scan_id in scan_ids:
        n = dataset.scans[scan_id].n_slices
        for start in range(0, n, settings.batch_size):
            x = settings.to_device(
                torch.from_numpy(dataset.read_image(scan_id, slice(start, min(n, start + settings.batch_size))))
            )
            with settings.autocast():
                restored = network_forward(model, corrupt(x, generator), settings).float()
            for i, l2 in enumerate(inpainting_l2(restored, x)):
                rows.append({"dataset": dataset.name, "case_id": scan_id, "slice": start + i, "l2": float(l2)})
    return pd.DataFrame(rows)
