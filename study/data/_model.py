"""The data model every reader delivers: scans, a split, class names, lazy slice access.

A *scan* is one acquisition of one subject: a 3D volume (MRI, S slices) or a single 2D slice
(CT at L3, S = 1). Slices are always the first axis, images are (S, C, H, W) float32 network input
(already preprocessed), masks are (S, K, H, W) bool with one channel per foreground class (no
background channel), raw values for clinical metrics keep their physical units.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from study.data.qdess import QDessParams
from study.errors import DataError

Modality = Literal["mri", "ct"]
SliceSelection = slice | Sequence[int] | None


@dataclass(frozen=True)
class ScanInfo:
    """What is known about one scan without reading its voxels.

    ``spacing_mm`` is (slice, row, col); for a single CT slice the first value is the slice
    thickness (or 1.0 when unknown) and only (row, col) enter areas.
    """

    scan_id: str
    subject_id: str
    n_slices: int
    height: int
    width: int
    spacing_mm: tuple[float, float, float]
    labeled: bool
    qdess: QDessParams | None = None


@dataclass(frozen=True)
class Split:
    """Which scans train, validate, test, or only pretrain (``unlabeled``).

    Construction refuses any scan or subject that appears in two roles: validation and test
    scans must never reach pretraining or fine-tuning, and slices of one patient must not sit on
    both sides of the split.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    unlabeled: tuple[str, ...] = ()

    def roles(self) -> dict[str, tuple[str, ...]]:
        return {"train": self.train, "val": self.val, "test": self.test, "unlabeled": self.unlabeled}

    def check(self, scans: dict[str, ScanInfo], source: str) -> None:
        """Raise :class:`DataError` on unknown scans, scans in two roles or subjects in two roles."""
        seen: dict[str, str] = {}
        subject_role: dict[str, str] = {}
        for role, ids in self.roles().items():
            if len(set(ids)) != len(ids):
                dup = next(i for i in ids if list(ids).count(i) > 1)
                raise DataError(f"{source}: scan {dup!r} is listed twice in the {role} split")
            for scan_id in ids:
                if scan_id not in scans:
                    raise DataError(f"{source}: the {role} split names scan {scan_id!r}, which does not exist")
                if scan_id in seen:
                    raise DataError(f"{source}: scan {scan_id!r} is in both the {seen[scan_id]} and the {role} split")
                seen[scan_id] = role
                subject = scans[scan_id].subject_id
                other = subject_role.setdefault(subject, role)
                # Unlabeled and train scans may share a subject: both only ever feed training.
                if other != role and {other, role} - {"train", "unlabeled"}:
                    raise DataError(f"{source}: subject {subject!r} has scans in both the {other} and the {role} split")
        for role in ("train", "val", "test"):
            unlabeled = [i for i in self.roles()[role] if not scans[i].labeled]
            if unlabeled:
                raise DataError(f"{source}: the {role} split names scan {unlabeled[0]!r}, which has no labels")


@dataclass
class Dataset(abc.ABC):
    """A data set in the platform's data model, read lazily one slice (or a few) at a time."""

    name: str
    modality: Modality
    class_names: tuple[str, ...]
    in_channels: int
    scans: dict[str, ScanInfo]
    split: Split
    source: str = field(default="")

    def __post_init__(self) -> None:
        self.split.check(self.scans, self.source or self.name)

    @property
    def volumetric(self) -> bool:
        """True when a scan (a test case, a unit of the label fractions) is a volume, not a slice."""
        return any(info.n_slices > 1 for info in self.scans.values())

    def slice_index(self, scan_ids: Sequence[str]) -> list[tuple[str, int]]:
        """Every (scan id, slice) pair of the given scans, in order."""
        return [(s, z) for s in scan_ids for z in range(self.scans[s].n_slices)]

    @abc.abstractmethod
    def read_image(self, scan_id: str, slices: SliceSelection = None) -> np.ndarray:
        """Preprocessed network input, (n, C, H, W) float32."""

    @abc.abstractmethod
    def read_masks(self, scan_id: str, slices: SliceSelection = None) -> np.ndarray:
        """Per-class masks, (n, K, H, W) bool, K = len(class_names), no background channel."""

    @abc.abstractmethod
    def read_raw(self, scan_id: str, slices: SliceSelection = None) -> dict[str, np.ndarray]:
        """Raw values for clinical metrics, each (n, H, W): ``echo1``, ``echo2`` (qDESS MRI),
        ``hu`` (CT, Hounsfield units), and ``t2_true_ms`` where a phantom knows it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release open file handles (readers reopen on demand)."""


def plain_name(name: object, source: object, what: str = "scan id") -> str:
    """``name`` if it is a plain file name, else a :class:`DataError` naming ``source`` and the name.

    Scan ids become file names (``scans/<id>.h5``, ``image_files/<id>.h5``): a path separator, a
    ``..`` or an absolute path in a manifest would read a file outside the data set.
    """
    text = str(name)
    if text in ("", ".", "..") or any(c in text for c in "/\\\0"):
        raise DataError(
            f"{source}: {what} {text!r} is not a plain file name (no path separators, "
            "'..', absolute paths or empty names)"
        )
    return text


def labels_to_masks(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Label map (..., H, W) with values 0..K (0 = background) -> masks (..., K, H, W) bool."""
    classes = np.arange(1, n_classes + 1, dtype=labels.dtype).reshape((1,) * (labels.ndim - 2) + (-1, 1, 1))
    return np.expand_dims(labels, -3) == classes


def as_index(slices: SliceSelection, n: int) -> slice | list[int]:
    """Normalise a slice selection and bounds-check it against n slices."""
    if slices is None:
        return slice(0, n)
    if isinstance(slices, slice):
        return slices
    idx = [int(i) for i in slices]
    if any(i < 0 or i >= n for i in idx):
        raise IndexError(f"slice index out of range 0..{n - 1}: {idx}")
    return idx
