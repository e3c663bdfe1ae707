from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from study.data import DatasetWriter, Split, open_dataset
from study.data.check import check_dataset
from study.data.slices import SliceDataset
from study.errors import DataError

from .conftest import CLASSES, write_tiny_mri


def test_round_trip_reads_lazily_per_slice(tiny_mri: Path) -> None:
    ds = open_dataset(tiny_mri)
    assert ds.modality == "mri" and ds.class_names == CLASSES and ds.volumetric
    scan = ds.split.train[0]
    with h5py.File(ds.path_of(scan)) as f:
        labels = f["labels"][:]
        assert f["image"].chunks == (1, 1, 16, 16)  # one slice per chunk: lazy reads touch one slice
    image = ds.read_image(scan, [1])
    masks = ds.read_masks(scan, [1])
    assert image.shape == (1, 1, 16, 16) and masks.shape == (1, 4, 16, 16) and masks.dtype == bool
    for k in range(4):
        np.testing.assert_array_equal(masks[0, k], labels[1] == k + 1)
    assert not masks[0].any(axis=0)[labels[1] == 0].any()
    raw = ds.read_raw(scan)
    assert set(raw) == {"echo1", "echo2", "t2_true_ms"} and raw["echo1"].shape == (3, 16, 16)
    assert ds.scans[scan].qdess is not None and ds.scans[scan].spacing_mm == (0.8, 0.3125, 0.3125)


def test_slice_dataset_serves_every_slice_and_pickles_without_handles(tiny_mri: Path) -> None:
    ds = open_dataset(tiny_mri)
    items = SliceDataset(ds, ds.split.train[:2])
    assert len(items) == 6
    first = items[4]
    assert first["image"].shape == (1, 16, 16) and first["mask"].shape == (4, 16, 16)
    clone = pickle.loads(pickle.dumps(items))  # as DataLoader workers and Ray receive it
    assert np.array_equal(clone[4]["image"].numpy(), first["image"].numpy())
    unlabeled = SliceDataset(ds, ds.split.unlabeled, with_masks=False)
    assert set(unlabeled[0]) == {"image"}


def test_check_summarises_the_dataset(tiny_mri: Path) -> None:
    summary = check_dataset(open_dataset(tiny_mri))
    assert summary.n_scans == {"train": 6, "val": 2, "test": 2, "unlabeled": 4}
    assert summary.n_slices["train"] == 18 and summary.unit == "volumes"
    assert summary.subset_sizes == {1.0: 6, 0.5: 3, 0.25: 2, 0.1: 1, 0.05: 1}
    assert all(v > 0 for v in summary.class_voxels.values())


def test_writer_refuses_a_non_empty_output_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="already exists and is not empty"):
        DatasetWriter(tmp_path / "taken", "x", "mri", CLASSES, 1, {})
    assert (tmp_path / "taken" / "keep.txt").read_text() == "user data"
    with pytest.raises(DataError, match="labels shape"):
        with DatasetWriter(tmp_path / "new", "x", "mri", CLASSES, 1, {}) as w:
            w.add_scan("a", "a", np.zeros((2, 1, 4, 4), np.float32), np.zeros((3, 4, 4), np.uint8), {}, (1, 1, 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_split_with_a_subject_in_train_and_test_is_refused(tmp_path: Path) -> None:
    w = DatasetWriter(tmp_path / "leak", "x", "ct", ("a",), 1, {})
    for scan_id in ("p1_s0", "p1_s1"):
        w.add_scan(scan_id, "p1", np.zeros((1, 1, 4, 4), np.float32), np.ones((1, 4, 4), np.uint8), {}, (1, 1, 1))
    with pytest.raises(DataError, match="subject 'p1' has scans in both the train and the test split"):
        w.finish(Split(train=("p1_s0",), val=(), test=("p1_s1",)))
    w.abort()


def _break(root: Path, how: str) -> None:
    scan = root / "scans" / "s00.h5"
    if how == "truncated":
        data = scan.read_bytes()
        scan.write_bytes(data[: len(data) // 3])
    elif how == "missing key":
        with h5py.File(scan, "a") as f:
            del f["labels"]
    elif how == "wrong shape":
        with h5py.File(scan, "a") as f:
            del f["image"]
            f["image"] = np.zeros((3, 1, 8, 8), np.float32)
    elif how == "nan voxels":
        with h5py.File(scan, "a") as f:
            f["image"][0, 0, 0, 0] = np.nan
    elif how == "undeclared label":
        with h5py.File(scan, "a") as f:
            f["labels"][0, 0, 0] = 9
    elif how == "wrong dtype":
        with h5py.File(scan, "a") as f:
            del f["image"]
            f["image"] = np.zeros((3, 1, 16, 16), np.float64)
    elif how == "split names a missing scan":
        manifest = json.loads((root / "dataset.json").read_text())
        manifest["split"]["test"].append("ghost")
        (root / "dataset.json").write_text(json.dumps(manifest))
    elif how == "train and test overlap":
        manifest = json.loads((root / "dataset.json").read_text())
        manifest["split"]["test"].append("s00")
        (root / "dataset.json").write_text(json.dumps(manifest))
    elif how == "manifest not json":
        (root / "dataset.json").write_text("{not json")
    elif how == "missing file":
        scan.unlink()


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated", "s00.h5: not a readable HDF5 file"),
        ("missing key", "s00.h5: missing key 'labels'"),
        ("wrong shape", "s00.h5: image slices 0..2 have shape (3, 1, 8, 8), the manifest says (3, 1, 16, 16)"),
        ("nan voxels", "s00.h5: image has 1 NaN voxel;"),
        ("undeclared label", "s00.h5: label value 9 is not a class of this data set"),
        ("wrong dtype", "s00.h5: image is stored as float64; network input must be float32"),
        ("split names a missing scan", "names scan 'ghost', which does not exist"),
        ("train and test overlap", "scan 's00' is in both the train and the test split"),
        ("manifest not json", "dataset.json: not valid JSON"),
        ("missing file", "s00.h5: file not found"),
    ],
)
def test_broken_datasets_are_reported_by_file_and_problem(tmp_path: Path, how: str, message: str) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    _break(root, how)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_dataset(open_dataset(root))
