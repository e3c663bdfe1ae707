"""What a study checks in a data set's voxels before it trusts them, and the record that makes a
resumed study skip files that did not change.

A NaN voxel would otherwise surface hours later as a "diverged" trial, a label value above the class
count would silently become background, and a scan with an empty label map would make its Dice
meaningless. The check goes through the :class:`Dataset` API, so it covers every reader; it reads a
block of slices at a time, so memory stays bounded at paper scale (SKM-TEA: ~100 volumes of
512 x 512 x 160). Reading everything is still costly, so what passed is recorded by each scan
file's path, size and ``mtime_ns``; a later start re-reads only what changed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from study.data._model import Dataset
from study.errors import DataError

# Bumped whenever the checks change, so a record written by older checks is not trusted.
CHECKS_VERSION = 2
_BLOCK_BYTES = 64 << 20  # voxel bytes read at once: about 64 slices of 512 x 512 float32
_LABELED_ROLES = ("train", "val", "test")  # their label maps are read; unlabeled scans only pretrain


def check_contents(
    dataset: Dataset, record: Path | None = None, pending: dict | None = None, class_voxels: np.ndarray | None = None
) -> int:
    """Read every scan of the split and raise :class:`DataError`, naming the file, at the first bad one.

    The train, val and test splits must not be empty; images must be float32 and finite; in those
    three splits, label maps must hold integers in 0..K (K = ``len(class_names)``) and at least one
    foreground voxel; in the test split, the raw values of the clinical metrics must be numbers, one
    (H, W) plane per slice. Scans that ``record`` (a JSON file) lists with the same path, size and
    ``mtime_ns`` are not read again; the record is rewritten only after every scan passed, and only
    into an existing folder (the check never creates a study folder): otherwise what passed goes
    into ``pending``, for :func:`write_record` once the study has made its folder. Each scan read
    adds its per-class voxel counts to ``class_voxels`` (K integers) when given. Returns how many
    scans were read.
    """
    for role in _LABELED_ROLES:
        if not dataset.split.roles()[role]:
            raise DataError(
                f"{dataset.source or dataset.name}: the {role} split is empty; a study needs "
                "scans to train on, validate on and test on"
            )
    done = read_record(record)
    passed: dict[str, dict[str, Any]] = {}
    read = 0
    for role, scan_ids in dataset.split.roles().items():
        for scan_id in scan_ids:
            key, stamp = _stamp(dataset, scan_id, role)
            if key is not None and done.get(key) == stamp:
                passed[key] = stamp
                continue
            voxels = check_scan(dataset, scan_id, role)
            if class_voxels is not None:
                class_voxels += voxels
            read += 1
            if key is not None:
                passed[key] = stamp
    if record is not None and record.parent.is_dir():
        write_record(record, {**done, **passed})
    elif pending is not None:
        pending.update(passed)
    return read


def check_scan(dataset: Dataset, scan_id: str, role: str) -> np.ndarray:
    """Check one scan's stored dtypes, image values, (in a labeled role) label values and (in the test
    split) raw values; return its foreground voxels per class (zeros where labels are not read)."""
    info = dataset.scans[scan_id]
    where = _where(dataset, scan_id)
    labels_needed = role in _LABELED_ROLES and info.labeled
    n_classes = len(dataset.class_names)
    # Readers that can tell a stored dtype from the file's header say so before any voxel is read.
    stored = getattr(dataset, "stored_dtype", None)
    if stored is not None:
        _image_dtype(stored(scan_id, "image"), where)
        if labels_needed:
            _label_dtype(stored(scan_id, "labels"), where)
    read_labels = getattr(dataset, "read_labels", None)  # the label values themselves, not masks
    plane = (dataset.in_channels, info.height, info.width)
    step = max(1, _BLOCK_BYTES // (4 * int(np.prod(plane))))
    nan = inf = 0
    voxels = np.zeros(n_classes, dtype=np.int64)
    for start in range(0, info.n_slices, step):
        block = slice(start, min(start + step, info.n_slices))
        n = block.stop - block.start
        image = dataset.read_image(scan_id, block)
        _image_dtype(image.dtype, where)
        if image.shape != (n, *plane):
            raise DataError(
                f"{where}: image slices {block.start}..{block.stop - 1} have shape {image.shape}, "
                f"the manifest says {(n, *plane)}"
            )
        nan += int(np.isnan(image).sum())
        inf += int(np.isinf(image).sum())
        if not labels_needed:
            continue
        if read_labels is not None:
            labels = read_labels(scan_id, block)
            _label_dtype(labels.dtype, where)
            if labels.shape != (n, info.height, info.width):
                raise DataError(
                    f"{where}: labels of slices {block.start}..{block.stop - 1} have shape "
                    f"{labels.shape}, the manifest says {(n, info.height, info.width)}"
                )
            low, high = int(labels.min(initial=0)), int(labels.max(initial=0))
            if low < 0 or high > n_classes:
                bad = low if low < 0 else high
                raise DataError(
                    f"{where}: label value {bad} is not a class of this data set "
                    f"(0 = background, 1..{n_classes} = {', '.join(dataset.class_names)})"
                )
            # One comparison per class: bincount would need a copy of the block as intp.
            voxels += [np.count_nonzero(labels == k) for k in range(1, n_classes + 1)]
        else:
            voxels += dataset.read_masks(scan_id, block).sum(axis=(0, 2, 3))
    if nan or inf:
        counts = " and ".join(f"{c} {what}" for c, what in ((nan, "NaN"), (inf, "infinite")) if c)
        raise DataError(
            f"{where}: image has {counts} voxel{'s' if nan + inf > 1 else ''}; "
            "every voxel of the network input must be a finite number"
        )
    if labels_needed and voxels.sum() == 0:
        raise DataError(
            f"{where}: scan {scan_id!r} in the {role} split has an empty label map "
            "(no foreground voxel); label it or move it to the unlabeled split"
        )
    # Only the test scans' raw values are ever read (by the clinical metrics): elsewhere a broken one
    # harms nothing, and refusing it would refuse data a study runs on.
    if role == "test":
        _check_raw(dataset, scan_id, where)
    return voxels


def _check_raw(dataset: Dataset, scan_id: str, where: str) -> None:
    info = dataset.scans[scan_id]
    # Sized by the raw arrays themselves: a scan may carry several per image channel.
    per_slice = sum(v.nbytes for v in dataset.read_raw(scan_id, slice(0, 1)).values())
    step = max(1, _BLOCK_BYTES // max(1, per_slice))
    for start in range(0, info.n_slices, step):
        block = slice(start, min(start + step, info.n_slices))
        expected = (block.stop - block.start, info.height, info.width)
        for key, value in dataset.read_raw(scan_id, block).items():
            if not np.issubdtype(value.dtype, np.number):
                raise DataError(
                    f"{where}: raw values {key!r} are stored as {value.dtype}; the clinical metrics need numbers"
                )
            if value.shape != expected:
                raise DataError(
                    f"{where}: raw values {key!r} of slices {block.start}..{block.stop - 1} have "
                    f"shape {value.shape}, the manifest says {expected}"
                )


def read_record(record: Path | None) -> dict[str, dict[str, Any]]:
    """The scans a record lists as checked; a missing, unreadable or outdated record lists none."""
    if record is None:
        return {}
    try:
        data = json.loads(record.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # only a cache: reading everything again is always safe
    if not isinstance(data, dict) or data.get("version") != CHECKS_VERSION or not isinstance(data.get("scans"), dict):
        return {}
    return data["scans"]


def write_record(record: Path, scans: dict[str, dict[str, Any]]) -> None:
    # Written aside and renamed, so a crash never leaves half a record that would fail to parse.
    # The record is only a cache: one that cannot be written costs a re-read at the next start.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{record.name}.", dir=record.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": CHECKS_VERSION, "scans": scans}, f, indent=1, sort_keys=True)
        os.replace(tmp, record)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def _stamp(dataset: Dataset, scan_id: str, role: str) -> tuple[str | None, dict[str, Any]]:
    """The record's key for a scan (its file) and what must not have changed since it passed."""
    info = dataset.scans[scan_id]
    stamp: dict[str, Any] = {
        "role": role,
        "labeled": info.labeled,
        "classes": len(dataset.class_names),
        "shape": [info.n_slices, dataset.in_channels, info.height, info.width],
    }
    path_of = getattr(dataset, "path_of", None)
    if path_of is None:
        return None, stamp  # a reader without one file per scan is read every time
    path = Path(path_of(scan_id))
    try:
        st = path.stat()
    except OSError:
        return None, stamp  # the read reports the missing or unreadable file
    return str(path.absolute()), {**stamp, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _where(dataset: Dataset, scan_id: str) -> str:
    path_of = getattr(dataset, "path_of", None)
    return str(path_of(scan_id)) if path_of is not None else f"{dataset.source or dataset.name}: scan {scan_id!r}"


def _image_dtype(dtype: np.dtype | None, where: str) -> None:
    if dtype is not None and dtype != np.float32:
        raise DataError(
            f"{where}: image is stored as {dtype}; network input must be float32 (real, already preprocessed)"
        )


def _label_dtype(dtype: np.dtype | None, where: str) -> None:
    if dtype is not None and (dtype.kind not in "ui"):
        raise DataError(
            f"{where}: labels are stored as {dtype}; a label map holds integers (0 = background, k = class k)"
        )
