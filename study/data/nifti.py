"""Import the user's NIfTI volumes into the platform's format (needs the ``nifti`` extra: nibabel).

Images and integer label maps are matched by file name. The user names the classes and the label
values that make each one (several values may merge into one class, as SKM-TEA's medial and lateral
tibial cartilage do), the slice axis, and the folder of unlabeled volumes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from study.data._h5 import DatasetWriter
from study.data._model import Split, plain_name
from study.data.nifti_record import import_record
from study.data.preprocess import DEFAULT_CT_WINDOWS, check_windows, ct_input, zscore
from study.errors import DataError, SpecError

_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class NiftiImport:
    """What the importer needs to know. ``classes`` maps a class name to its label values."""

    image_dir: Path
    label_dir: Path
    classes: dict[str, tuple[int, ...]]
    modality: Literal["mri", "ct"] = "mri"
    slice_axis: int = 2
    unlabeled_dir: Path | None = None
    split_file: Path | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    per_slice: bool | None = None  # default: CT slices are the cases, MRI volumes are
    ct_windows: tuple[tuple[float, float], ...] = DEFAULT_CT_WINDOWS
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.classes:
            raise SpecError("classes: name at least one class, e.g. --classes cartilage=1,meniscus=2")
        values = [v for vs in self.classes.values() for v in vs]
        if any(v <= 0 for v in values) or len(set(values)) != len(values):
            raise SpecError(f"classes: label values must be positive and used once, got {self.classes}")
        if self.modality not in ("mri", "ct"):
            raise SpecError(f"modality={self.modality!r} must be 'mri' or 'ct'")
        if self.slice_axis not in (0, 1, 2):
            raise SpecError(f"slice_axis={self.slice_axis} must be 0, 1 or 2")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise SpecError(f"{name}={getattr(self, name)} must be in (0, 1)")
        check_windows(self.ct_windows)


def parse_classes(text: str) -> dict[str, tuple[int, ...]]:
    """``"tibial_cartilage=3+4,meniscus=5"`` -> {"tibial_cartilage": (3, 4), "meniscus": (5,)}."""
    out: dict[str, tuple[int, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, values = part.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name.strip()] = tuple(int(v) for v in values.split("+"))
        except ValueError:
            raise SpecError(f"--classes: {part!r} must look like name=VALUE or name=VALUE+VALUE") from None
    return out


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _volumes(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    found = {_stem(p): p for p in sorted(folder.iterdir()) if p.name.endswith(_SUFFIXES)}
    if not found:
        raise DataError(f"{folder}: no .nii or .nii.gz files")
    return found


def _load(path: Path, slice_axis: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Volume as (S, H, W) float with slices first, and its spacing (slice, row, col) in mm."""
    try:
        import nibabel
    except ImportError:
        raise DataError('NIfTI import needs nibabel: pip install -e ".[nifti]" (in the repository)') from None
    try:
        img = nibabel.load(str(path))
        data = np.asarray(img.dataobj)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except Exception as exc:  # nibabel raises many types for a corrupt file
        raise DataError(f"{path}: not a readable NIfTI file ({exc})") from None
    if data.ndim == 2:
        data, zooms, slice_axis = data[..., None], (*zooms[:2], 1.0), 2
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 2D or 3D volume, got shape {data.shape}")
    zooms = (zooms + (1.0,) * 3)[:3]
    order = [slice_axis] + [a for a in range(3) if a != slice_axis]
    return np.transpose(data, order), tuple(zooms[a] for a in order)  # type: ignore[return-value]


def _label_map(path: Path, labels: np.ndarray, classes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """The label map as class indices (0 = background, k = the k-th declared class)."""
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DataError(f"{path}: label map must hold integers, found {labels.dtype} with fractions or NaN")
        labels = labels.astype(np.int64)
    out = np.zeros(labels.shape, dtype=np.uint8)
    declared = {0}
    for k, values in enumerate(classes.values(), start=1):
        out[np.isin(labels, values)] = k
        declared.update(values)
    undeclared = sorted(set(np.unique(labels).tolist()) - declared)
    if undeclared:
        raise DataError(f"{path}: label value(s) {undeclared} are not declared in --classes")
    return out


def _check_every_class_occurs(voxels: np.ndarray, cfg: NiftiImport) -> None:
    """A declared class no label map holds could never be learned or scored (its Dice is undefined
    on every case): refused, naming it and its label values."""
    empty = [(name, values) for (name, values), n in zip(cfg.classes.items(), voxels[1:]) if n == 0]
    if empty:
        named = ", ".join(f"{name} (label value {'+'.join(map(str, values))})" for name, values in empty)
        which = f"class {named} has" if len(empty) == 1 else f"classes {named} have"
        raise DataError(f"{cfg.label_dir}: {which} no voxel in any label map; fix --classes or the label maps")


def _split(names: Sequence[str], cfg: NiftiImport) -> dict[str, list[str]]:
    if cfg.split_file is not None:
        try:
            given = json.loads(Path(cfg.split_file).read_text())
            return {
                role: [_stem(Path(plain_name(n, cfg.split_file, f"{role} file name"))) for n in given[role]]
                for role in ("train", "val", "test")
            }
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{cfg.split_file}: needs JSON lists 'train', 'val' and 'test' ({exc!r})") from None
    order = [names[i] for i in np.random.default_rng(cfg.seed).permutation(len(names))]
    n_test = max(1, round(len(names) * cfg.test_fraction))
    n_val = max(1, round(len(names) * cfg.val_fraction))
    if n_test + n_val >= len(names):
        raise DataError(f"{cfg.image_dir}: {len(names)} labeled volumes are too few for train, val and test")
    return {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}


def import_nifti(cfg: NiftiImport, out: Path) -> Path:
    """Convert the volumes to the platform's format at ``out`` (a new folder)."""
    images = _volumes(Path(cfg.image_dir))
    labels = _volumes(Path(cfg.label_dir))
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DataError(f"{cfg.label_dir}: no label map for image {missing[0]!r}")
    unlabeled = _volumes(Path(cfg.unlabeled_dir)) if cfg.unlabeled_dir else {}
    roles = _split(sorted(images), cfg)
    unknown = [n for ids in roles.values() for n in ids if n not in images]
    if unknown:
        raise DataError(f"{cfg.split_file}: the split names {unknown[0]!r}, which is not in {cfg.image_dir}")
    per_slice = cfg.modality == "ct" if cfg.per_slice is None else cfg.per_slice
    split: dict[str, list[str]] = {"train": [], "val": [], "test": [], "unlabeled": []}
    preprocessing = (
        {"input": "zscore_volume"} if cfg.modality == "mri" else {"ct_windows": [list(w) for w in cfg.ct_windows]}
    )
    preprocessing["nifti"] = import_record(
        cfg.slice_axis, per_slice, cfg.classes, [*images.values(), *unlabeled.values()]
    )
    voxels = np.zeros(len(cfg.classes) + 1, dtype=np.int64)  # per class index, over every labeled volume
    with DatasetWriter(
        out,
        name=Path(out).absolute().name,
        modality=cfg.modality,
        class_names=tuple(cfg.classes),
        in_channels=1 if cfg.modality == "mri" else len(cfg.ct_windows),
        preprocessing=preprocessing,
    ) as writer:
        jobs = [(r, n, images[n]) for r, ns in roles.items() for n in ns] + [
            ("unlabeled", n, p) for n, p in unlabeled.items()
        ]
        for role, name, path in jobs:
            volume, spacing = _load(path, cfg.slice_axis)
            label_map = None
            if role != "unlabeled":
                raw_labels, _ = _load(labels[name], cfg.slice_axis)
                if raw_labels.shape != volume.shape:
                    raise DataError(f"{labels[name]}: shape {raw_labels.shape} != image shape {volume.shape}")
                label_map = _label_map(labels[name], raw_labels, cfg.classes)
                voxels += np.bincount(label_map.ravel(), minlength=voxels.size)
            if not np.isfinite(volume).all():
                raise DataError(f"{path}: image has NaN or infinite voxels")
            volume = volume.astype(np.float32)
            image = zscore(volume)[:, None] if cfg.modality == "mri" else ct_input(volume, cfg.ct_windows)
            raw_key = "intensity" if cfg.modality == "mri" else "hu"
            pieces = (
                [(name, slice(None))]
                if not per_slice
                else [(f"{name}_s{z:03d}", slice(z, z + 1)) for z in range(volume.shape[0])]
            )
            for scan_id, sl in pieces:
                writer.add_scan(
                    scan_id,
                    subject_id=name,
                    image=image[sl],
                    labels=None if label_map is None else label_map[sl],
                    raw={raw_key: volume[sl]} if cfg.modality == "ct" else {},
                    spacing_mm=spacing,
                )
                split[role].append(scan_id)
        _check_every_class_occurs(voxels, cfg)
        return writer.finish(Split(**{r: tuple(v) for r, v in split.items()}))
