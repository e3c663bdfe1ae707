"""SKM-TEA (Desai et al. 2021) read in place: no conversion, no copy.

Layout (docs/science.md §1): ``image_files/<scan_id>.h5`` with ``echo1``, ``echo2`` (X, Y, Z) and
one-hot ``seg`` (X, Y, Z, 6) in the order PC, FC, TC-medial, TC-lateral, meniscus-medial,
meniscus-lateral, plus ``stats/rss/{mean,std}``; ``annotations/v1.0.0/{train,val,test}.json``
(COCO-like, an ``images`` list); ``all_metadata.csv`` with the qDESS scan parameters.
Sagittal slices lie on the last axis; this reader returns them first, as the data model wants.
Scans in ``image_files`` that no split names form the unlabeled pretraining pool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from study.data._h5 import _HandleCache, h5_array
from study.data._model import Dataset, ScanInfo, SliceSelection, Split, as_index, plain_name
from study.data.preprocess import root_sum_of_squares
from study.data.qdess import QDessParams
from study.errors import DataError

ANNOTATION_VERSION = "v1.0.0"
CLASS_NAMES = ("patellar_cartilage", "femoral_cartilage", "tibial_cartilage", "meniscus")
# seg channel -> class index: TC medial + lateral and meniscus medial + lateral are merged.
SEG_TO_CLASS = np.array([0, 1, 2, 2, 3, 3])
# The data set names each scan in MTR_ID (its own code: ``metadata[metadata["MTR_ID"] == scan_id]``);
# scan_id is accepted too, for tables written by hand.
ID_COLUMNS = ("MTR_ID", "scan_id")
METADATA_COLUMNS = {
    "repetition_time": "RepetitionTime",
    "echo_time": "EchoTime1",
    "flip_angle": "FlipAngle",
    "spoiler_area": "SpoilerGradientArea",
    "spoiler_time": "SpoilerGradientTime",
}


def is_skmtea_root(root: Path) -> bool:
    return (root / "image_files").is_dir() and (root / "annotations").is_dir()


def _read_split_file(path: Path) -> list[dict[str, Any]]:
    try:
        images = json.loads(path.read_text())["images"]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not an SKM-TEA annotation file with an 'images' list ({exc!r})") from None
    for entry in images:
        if not isinstance(entry, dict) or "scan_id" not in entry:
            raise DataError(f"{path}: every entry of 'images' needs a 'scan_id'")
        plain_name(entry["scan_id"], path)  # it names image_files/<scan_id>.h5
        if "file_name" in entry:  # unread here, but the data set's own code opens image_files/<file_name>
            plain_name(entry["file_name"], path, "file name")
    return images


def _read_metadata(path: Path) -> dict[str, QDessParams]:
    """qDESS parameters per scan id. The file as shipped starts with an unnamed index column (the
    data set's code reads it with ``index_col=0``); read without an index, that column is just one
    more column nobody asks for, and a table without it reads the same."""
    import pandas as pd  # here, not at the top: checking a spec need not load pandas

    try:
        table = pd.read_csv(path, dtype={column: str for column in ID_COLUMNS})
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from None
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    missing = ([] if id_column else [" or ".join(ID_COLUMNS)]) + [
        c for c in METADATA_COLUMNS.values() if c not in table.columns
    ]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} needed for T2 estimation")
    out = {}
    for scan_id, row in zip(table[id_column], table[list(METADATA_COLUMNS.values())].itertuples(index=False)):
        if pd.isna(scan_id):
            raise DataError(f"{path}: a row has no {id_column}")
        if scan_id in out:
            raise DataError(f"{path}: scan {scan_id} has more than one row")
        try:
            values = {field: float(value) for field, value in zip(METADATA_COLUMNS, row)}
            out[scan_id] = QDessParams(**values)
        except (DataError, ValueError) as exc:
            raise DataError(f"{path}: scan {scan_id}: {exc}") from None
    return out


class SkmTeaDataset(Dataset):
    """The SKM-TEA qDESS knee data set, read lazily from its own h5 files."""

    def __init__(self, root: Path) -> None:
        root = Path(root).absolute()
        self.root = root
        self._handles = _HandleCache()
        self._norm: dict[str, tuple[float, float]] = {}
        ann = root / "annotations" / ANNOTATION_VERSION
        qdess = _read_metadata(root / "all_metadata.csv")
        scans: dict[str, ScanInfo] = {}
        roles: dict[str, tuple[str, ...]] = {}
        for role in ("train", "val", "test"):
            entries = _read_split_file(ann / f"{role}.json")
            roles[role] = tuple(str(e["scan_id"]) for e in entries)
            for e in entries:
                scans[str(e["scan_id"])] = self._scan_info(e, labeled=True, qdess=qdess, source=ann / f"{role}.json")
        listed = set(scans)
        pool = sorted(p.stem for p in (root / "image_files").glob("*.h5") if p.stem not in listed)
        for scan_id in pool:
            scans[scan_id] = self._scan_info({"scan_id": scan_id}, labeled=False, qdess=qdess, source=None)
        super().__init__(
            name="skm-tea",
            modality="mri",
            class_names=CLASS_NAMES,
            in_channels=1,
            scans=scans,
            split=Split(train=roles["train"], val=roles["val"], test=roles["test"], unlabeled=tuple(pool)),
            source=str(root),
        )

    def _scan_info(
        self, entry: dict[str, Any], labeled: bool, qdess: dict[str, QDessParams], source: Path | None
    ) -> ScanInfo:
        scan_id = str(entry["scan_id"])
        path = self.path_of(scan_id)
        f = self._handles.get(path)  # opening each file once validates it exists and is HDF5
        for key in ("echo1", "echo2") + (("seg",) if labeled else ()):
            if key not in f:
                raise DataError(f"{path}: missing key {key!r}")
        shape = f["echo1"].shape
        if len(shape) != 3 or f["echo2"].shape != shape:
            raise DataError(f"{path}: echo1/echo2 must both be (X, Y, Z) volumes, got {shape} and {f['echo2'].shape}")
        if labeled and f["seg"].shape != (*shape, 6):
            raise DataError(f"{path}: seg shape {f['seg'].shape} != {(*shape, 6)} (X, Y, Z, 6 one-hot)")
        spacing = entry.get("voxel_spacing", [1.0, 1.0, 1.0])
        if scan_id not in qdess:
            raise DataError(f"{self.root / 'all_metadata.csv'}: no row for scan {scan_id!r}")
        return ScanInfo(
            scan_id=scan_id,
            subject_id=str(entry.get("subject_id", scan_id)),
            n_slices=shape[2],
            height=shape[0],
            width=shape[1],
            spacing_mm=(float(spacing[2]), float(spacing[0]), float(spacing[1])),
            labeled=labeled,
            qdess=qdess[scan_id],
        )

    def path_of(self, scan_id: str) -> Path:
        return self.root / "image_files" / f"{scan_id}.h5"

    def _volume_norm(self, scan_id: str) -> tuple[float, float]:
        """RSS mean and std of the whole volume: the stored stats, or computed once."""
        if scan_id not in self._norm:
            f = self._handles.get(self.path_of(scan_id))
            if "stats/rss/mean" in f and "stats/rss/std" in f:
                self._norm[scan_id] = (float(h5_array(f, "stats/rss/mean")), float(h5_array(f, "stats/rss/std")))
            else:
                rss = root_sum_of_squares(h5_array(f, "echo1"), h5_array(f, "echo2"))
                self._norm[scan_id] = (float(rss.mean(dtype=np.float64)), float(rss.std(dtype=np.float64)))
        return self._norm[scan_id]

    def _slices_last(self, scan_id: str, key: str, slices: SliceSelection) -> np.ndarray:
        """(X, Y, Z[, C]) stored -> (n, X, Y[, C]) with the requested sagittal slices first."""
        idx = as_index(slices, self.scans[scan_id].n_slices)
        f = self._handles.get(self.path_of(scan_id))
        data = h5_array(f, key, (slice(None), slice(None), idx))
        return np.moveaxis(data, 2, 0)

    def read_image(self, scan_id: str, slices: SliceSelection = None) -> np.ndarray:
        mean, std = self._volume_norm(scan_id)
        rss = root_sum_of_squares(
            self._slices_last(scan_id, "echo1", slices), self._slices_last(scan_id, "echo2", slices)
        )
        return ((rss - mean) / max(std, 1e-6))[:, None].astype(np.float32)

    def read_masks(self, scan_id: str, slices: SliceSelection = None) -> np.ndarray:
        seg = self._slices_last(scan_id, "seg", slices) > 0  # (n, X, Y, 6)
        masks = np.zeros((*seg.shape[:3], len(CLASS_NAMES)), dtype=bool)
        for channel, cls in enumerate(SEG_TO_CLASS):
            masks[..., cls] |= seg[..., channel]
        return np.moveaxis(masks, -1, 1)

    def read_raw(self, scan_id: str, slices: SliceSelection = None) -> dict[str, np.ndarray]:
        return {k: self._slices_last(scan_id, k, slices).astype(np.float32) for k in ("echo1", "echo2")}

    def close(self) -> None:
        self._handles.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._handles = _HandleCache()
