"""Validate a data set end to end and summarise it (``python -m study.data check PATH``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from study.data._model import Dataset
from study.data.subsets import DEFAULT_LABEL_FRACTIONS, default_rounding, label_subsets
from study.errors import DataError


@dataclass
class DatasetSummary:
    name: str
    modality: str
    source: str
    n_scans: dict[str, int]
    n_slices: dict[str, int]
    shape: tuple[int, int]
    in_channels: int
    class_voxels: dict[str, int]
    spacing_mm: tuple[tuple[float, ...], tuple[float, ...]]
    subset_sizes: dict[float, int] = field(default_factory=dict)
    unit: str = "scans"

    def lines(self) -> list[str]:
        lo, hi = self.spacing_mm
        spacing = "x".join(f"{v:g}" for v in lo) + ("" if lo == hi else " .. " + "x".join(f"{v:g}" for v in hi))
        out = [
            f"data set   {self.name} ({self.modality}) at {self.source}",
            f"images     {self.shape[0]} x {self.shape[1]} px, {self.in_channels} input channel(s), spacing {spacing} mm (slice x row x col)",
            "split      " + ", ".join(f"{r} {n} {self.unit} / {self.n_slices[r]} slices" for r, n in self.n_scans.items()),
            "classes    " + ", ".join(f"{c} {v} voxels" for c, v in self.class_voxels.items()),
            "subsets    " + ", ".join(f"{f:.0%}: {n}" for f, n in self.subset_sizes.items()) + f" {self.unit} of the training split",
        ]
        return out


def _check_scan(dataset: Dataset, scan_id: str, counts: np.ndarray) -> None:
    info = dataset.scans[scan_id]
    where = f"{getattr(dataset, 'path_of', lambda s: s)(scan_id)}"
    image = dataset.read_image(scan_id)
    expected = (info.n_slices, dataset.in_channels, info.height, info.width)
    if image.shape != expected:
        raise DataError(f"{where}: image shape {image.shape} != expected {expected}")
    if image.dtype != np.float32:
        raise DataError(f"{where}: image dtype {image.dtype} must be float32")
    if not np.isfinite(image).all():
        raise DataError(f"{where}: image has {int((~np.isfinite(image)).sum())} NaN or infinite voxels")
    raw = dataset.read_raw(scan_id)
    for key, value in raw.items():
        if value.shape != expected[:1] + expected[2:]:
            raise DataError(f"{where}: raw {key!r} shape {value.shape} != {expected[:1] + expected[2:]}")
        if not np.issubdtype(value.dtype, np.number):
            raise DataError(f"{where}: raw {key!r} has dtype {value.dtype}, expected numbers")
        if key != "t2_true_ms" and not np.isfinite(value).all():
            raise DataError(f"{where}: raw {key!r} has NaN or infinite values")
    if dataset.modality == "mri" and "echo1" in raw and info.qdess is None:
        raise DataError(f"{where}: qDESS scan parameters are missing; T2 cannot be estimated")
    if info.labeled:
        labels = getattr(dataset, "read_labels", None)
        if labels is not None:
            values = labels(scan_id)
            if values.dtype != np.uint8:
                raise DataError(f"{where}: labels dtype {values.dtype} must be uint8")
            if values.max(initial=0) > len(dataset.class_names):
                raise DataError(
                    f"{where}: label value {int(values.max())} is not a declared class "
                    f"(0..{len(dataset.class_names)})"
                )
        masks = dataset.read_masks(scan_id)
        counts += masks.sum(axis=(0, 2, 3))


def check_dataset(dataset: Dataset) -> DatasetSummary:
    """Read every scan once and raise :class:`DataError` at the first problem found."""
    counts = np.zeros(len(dataset.class_names), dtype=np.int64)
    for scan_id in dataset.scans:
        _check_scan(dataset, scan_id, counts)
    labeled_roles = ("train", "val", "test")
    for role in labeled_roles:
        if not dataset.split.roles()[role]:
            raise DataError(f"{dataset.source}: the {role} split is empty")
    if counts.sum() == 0:
        raise DataError(f"{dataset.source}: every label map is empty")
    spacings = np.array([info.spacing_mm for info in dataset.scans.values()])
    shapes = {(info.height, info.width) for info in dataset.scans.values()}
    if len(shapes) != 1:
        raise DataError(f"{dataset.source}: scans have different in-plane sizes {sorted(shapes)}")
    rounding = default_rounding(dataset)
    subsets = label_subsets(dataset.split.train, DEFAULT_LABEL_FRACTIONS, 0, rounding)
    roles = dataset.split.roles()
    return DatasetSummary(
        name=dataset.name,
        modality=dataset.modality,
        source=dataset.source,
        n_scans={r: len(ids) for r, ids in roles.items()},
        n_slices={r: sum(dataset.scans[s].n_slices for s in ids) for r, ids in roles.items()},
        shape=shapes.pop(),
        in_channels=dataset.in_channels,
        class_voxels={c: int(n) for c, n in zip(dataset.class_names, counts)},
        spacing_mm=(tuple(spacings.min(0)), tuple(spacings.max(0))),
        subset_sizes={f: len(ids) for f, ids in subsets.items()},
        unit="volumes" if dataset.volumetric else "slices",
    )
