"""The platform's own on-disk format: a folder with ``dataset.json`` and one HDF5 file per scan.

The layout is documented in ``docs/data-format.md``. Images are stored already preprocessed and
uncompressed, chunked one slice per chunk, so a training loop reads exactly the slices it needs and
every process on a machine shares the operating system's page cache instead of holding a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from study.data._model import Dataset, Modality, ScanInfo, SliceSelection, Split, as_index, labels_to_masks, plain_name
from study.data.qdess import QDessParams
from study.errors import DataError

FORMAT_NAME = "ssl-study-dataset"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"

MODALITIES = ("mri", "ct")
_NOT_RAW = ("image", "labels")
# What h5py raises for a damaged file, depending on which structure the damage hit.
_H5_ERRORS = (OSError, ValueError, TypeError, KeyError, RuntimeError)


class _HandleCache:
    """Open h5 files per process; forked workers (DataLoader, Ray) must not share a handle."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._files: dict[Path, h5py.File] = {}

    def get(self, path: Path) -> h5py.File:
        if os.getpid() != self._pid:
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(path)
        if f is None:
            f = open_h5(path)
            self._files[path] = f
        return f

    def close(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing a broken file must not mask the real error
                pass
        self._files = {}


def open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if not os.access(path, os.R_OK):  # h5py would call it corrupt
        raise DataError(f"{path}: permission denied")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {exc}") from None


def h5_array(f: h5py.File, key: str, index: Any = ()) -> np.ndarray:
    """Read ``f[key][index]`` with errors that name the file and key."""
    try:
        if key not in f:
            raise DataError(f"{f.filename}: missing key {key!r}")
        return f[key][index]
    except _H5_ERRORS as exc:  # a corrupt file fails anywhere, even in looking a key up
        raise DataError(f"{f.filename}: cannot read {key!r}: {exc}") from None


class H5Dataset(Dataset):
    """A data set in the platform's format, opened with :func:`study.data.open_dataset`."""

    def __init__(self, root: Path, manifest: dict[str, Any], **kwargs: Any) -> None:
        self.root = root
        self.preprocessing: dict[str, Any] = manifest.get("preprocessing", {})
        self._handles = _HandleCache()
        super().__init__(**kwargs)

    def path_of(self, scan_id: str) -> Path:
        return self.root / "scans" / f"{scan_id}.h5"

    def _file(self, scan_id: str) -> h5py.File:
        if scan_id not in self.scans:
            raise DataError(f"{self.root}: no scan {scan_id!r}")
        return self._handles.get(self.path_of(scan_id))

    def read_image(self, scan_id: str, slices: SliceSelection = None) -> np.ndarray:
        idx = as_index(slices, self.scans[scan_id].n_slices)
        return h5_array(self._file(scan_id), "image", idx)

    def read_masks(self, scan_id: str, slices: SliceSelection = None) -> np.ndarray:
        if not self.scans[scan_id].labeled:
            raise DataError(f"{self.path_of(scan_id)}: scan {scan_id!r} has no labels")
        idx = as_index(slices, self.scans[scan_id].n_slices)
        return labels_to_masks(h5_array(self._file(scan_id), "labels", idx), len(self.class_names))

    def read_labels(self, scan_id: str, slices: SliceSelection = None) -> np.ndarray:
        """Label map (n, H, W) uint8, 0 = background, k = class_names[k - 1]."""
        idx = as_index(slices, self.scans[scan_id].n_slices)
        return h5_array(self._file(scan_id), "labels", idx)

    def stored_dtype(self, scan_id: str, key: str) -> np.dtype | None:
        """The dtype ``key`` is stored as, from the file's header without reading voxels; None if absent."""
        f = self._file(scan_id)
        try:
            node = f.get(key)
        except _H5_ERRORS as exc:
            raise DataError(f"{f.filename}: cannot read {key!r}: {exc}") from None
        return node.dtype if isinstance(node, h5py.Dataset) else None

    def read_raw(self, scan_id: str, slices: SliceSelection = None) -> dict[str, np.ndarray]:
        f = self._file(scan_id)
        # All of each array when no slices are asked for, so a mismatch with the manifest shows.
        idx = () if slices is None else as_index(slices, self.scans[scan_id].n_slices)
        return {k: h5_array(f, k, idx) for k in f.keys() if k not in _NOT_RAW}

    def close(self) -> None:
        self._handles.close()

    def __getstate__(self) -> dict[str, Any]:
        # Ray and DataLoader workers pickle the data set: send paths, never open handles.
        state = self.__dict__.copy()
        state["_handles"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._handles = _HandleCache()


def _scan_info(scan_id: str, entry: dict[str, Any], source: Path) -> ScanInfo:
    try:
        qdess = QDessParams(**entry["qdess"]) if entry.get("qdess") else None
        spacing = tuple(float(v) for v in entry["spacing_mm"])
        if len(spacing) != 3:
            raise ValueError("spacing_mm needs 3 values (slice, row, col)")
        return ScanInfo(
            scan_id=scan_id,
            subject_id=str(entry.get("subject_id", scan_id)),
            n_slices=int(entry["n_slices"]),
            height=int(entry["height"]),
            width=int(entry["width"]),
            spacing_mm=spacing,  # type: ignore[arg-type]
            labeled=bool(entry["labeled"]),
            qdess=qdess,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{source}: scan {scan_id!r} entry is malformed: {exc!r}") from None


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DataError(f"{path}: not a data set manifest (expected format {FORMAT_NAME!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise DataError(f"{path}: format version {manifest.get('version')!r} is not supported")
    return manifest


def open_h5_dataset(root: Path) -> H5Dataset:
    manifest = read_manifest(root)
    source = root / MANIFEST
    try:
        modality = manifest["modality"]
        if modality not in MODALITIES:
            raise DataError(f"{source}: modality {modality!r} must be one of {', '.join(MODALITIES)}")
        scans = {plain_name(sid, source): _scan_info(sid, e, source) for sid, e in manifest["scans"].items()}
        split = Split(**{role: tuple(manifest["split"].get(role, ())) for role in Split.__dataclass_fields__})
        return H5Dataset(
            root,
            manifest,
            name=str(manifest["name"]),
            modality=modality,
            class_names=tuple(manifest["class_names"]),
            in_channels=int(manifest["in_channels"]),
            scans=scans,
            split=split,
            source=str(source),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{source}: malformed manifest, missing or bad field {exc}") from None


class DatasetWriter:
    """Writes a data set in the platform's format; nothing appears at ``out`` until :meth:`finish`.

    Scans are written into a temporary folder next to ``out`` and moved into place at the end, so
    an interrupted import never leaves a half-written data set that looks complete.
    """

    def __init__(
        self,
        out: Path,
        name: str,
        modality: Modality,
        class_names: tuple[str, ...],
        in_channels: int,
        preprocessing: dict[str, Any],
    ) -> None:
        out = Path(out).absolute()
        if out.exists() and any(out.iterdir()):
            raise DataError(f"{out}: already exists and is not empty; choose a new output folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        (self._tmp / "scans").mkdir()
        self._manifest: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": name,
            "modality": modality,
            "class_names": list(class_names),
            "in_channels": in_channels,
            "preprocessing": preprocessing,
            "scans": {},
        }

    def add_scan(
        self,
        scan_id: str,
        subject_id: str,
        image: np.ndarray,
        labels: np.ndarray | None,
        raw: dict[str, np.ndarray],
        spacing_mm: tuple[float, float, float],
        qdess: QDessParams | None = None,
    ) -> None:
        """Add one scan: image (S, C, H, W) float32, labels (S, H, W) uint8 or None, raw (S, H, W)."""
        s, c, h, w = image.shape
        plain_name(scan_id, self.out)
        if scan_id in self._manifest["scans"] or scan_id.startswith("."):  # a leading dot hides the file
            raise DataError(f"scan id {scan_id!r} is repeated or not a valid file name")
        if labels is not None and labels.shape != (s, h, w):
            raise DataError(f"scan {scan_id!r}: labels shape {labels.shape} != image slices {(s, h, w)}")
        path = self._tmp / "scans" / f"{scan_id}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("image", data=image.astype(np.float32, copy=False), chunks=(1, c, h, w))
            if labels is not None:
                f.create_dataset("labels", data=labels.astype(np.uint8, copy=False), chunks=(1, h, w))
            for key, value in raw.items():
                if value.shape != (s, h, w):
                    raise DataError(f"scan {scan_id!r}: raw {key!r} shape {value.shape} != {(s, h, w)}")
                f.create_dataset(key, data=value, chunks=(1, h, w))
            f.attrs["scan_id"] = scan_id
            f.attrs["subject_id"] = subject_id
            f.attrs["spacing_mm"] = np.asarray(spacing_mm, dtype=np.float64)
        self._manifest["scans"][scan_id] = {
            "subject_id": subject_id,
            "n_slices": s,
            "height": h,
            "width": w,
            "spacing_mm": [float(v) for v in spacing_mm],
            "labeled": labels is not None,
            "qdess": qdess.as_dict() if qdess is not None else None,
        }

    def finish(self, split: Split) -> Path:
        """Check the split, write the manifest and move the data set into place."""
        scans = {sid: _scan_info(sid, e, self.out) for sid, e in self._manifest["scans"].items()}
        split.check(scans, str(self.out))
        self._manifest["split"] = {role: list(ids) for role, ids in split.roles().items()}
        (self._tmp / MANIFEST).write_text(json.dumps(self._manifest, indent=1))
        if self.out.exists():
            self.out.rmdir()  # empty, checked in __init__
        os.replace(self._tmp, self.out)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()
