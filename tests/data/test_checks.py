from __future__ import annotations

import json
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from study.data import _checks, check_contents, open_dataset
from study.data.check import check_dataset
from study.errors import DataError
from study.folder.store import StudyStore

from .conftest import write_skmtea, write_tiny_mri

# write_tiny_mri: s00..s05 train, s06 s07 val, s08 s09 test, s10..s13 unlabeled; 3 slices of 16 x 16.
N_SCANS = 14


def _replace(f: h5py.File, key: str, value: np.ndarray) -> None:
    del f[key]
    f[key] = value


def _damage(root: Path, how: str) -> None:
    scan = root / "scans" / "s00.h5"
    with h5py.File(scan, "a") as f:
        image, labels = f["image"][:], f["labels"][:]
        if how == "3 nan":
            image[0, 0, 0, :3] = np.nan
            f["image"][...] = image
        elif how == "2 inf 1 -inf":
            image[2, 0, 5, :3] = [np.inf, np.inf, -np.inf]
            f["image"][...] = image
        elif how == "nan and inf":
            image[1, 0, 0, :3] = [np.nan, np.nan, np.inf]
            f["image"][...] = image
        elif how in ("int16", "float64", "float16", "complex64"):
            _replace(f, "image", image.astype(how))
        elif how == "float labels":
            _replace(f, "labels", labels.astype(np.float32))
        elif how == "bool labels":
            _replace(f, "labels", labels > 0)
        elif how == "label 9":
            labels[1, 3, 3] = 9
            f["labels"][...] = labels
        elif how == "label -1":
            signed = labels.astype(np.int16)
            signed[0, 0, 0] = -1
            _replace(f, "labels", signed)
        elif how == "empty labels":
            f["labels"][...] = 0
        elif how == "fewer slices":
            _replace(f, "image", image[:2])


@pytest.mark.parametrize(
    "how, message",
    [
        ("3 nan", "s00.h5: image has 3 NaN voxels;"),
        ("2 inf 1 -inf", "s00.h5: image has 3 infinite voxels;"),
        ("nan and inf", "s00.h5: image has 2 NaN and 1 infinite voxels;"),
        ("int16", "s00.h5: image is stored as int16; network input must be float32"),
        ("float64", "s00.h5: image is stored as float64"),
        ("float16", "s00.h5: image is stored as float16"),
        ("complex64", "s00.h5: image is stored as complex64"),
        ("float labels", "s00.h5: labels are stored as float32; a label map holds integers"),
        ("bool labels", "s00.h5: labels are stored as bool"),
        ("label 9", "s00.h5: label value 9 is not a class of this data set (0 = background, 1..4 = patellar_cartilage"),
        ("label -1", "s00.h5: label value -1 is not a class"),
        ("empty labels", "s00.h5: scan 's00' in the train split has an empty label map (no foreground voxel)"),
        ("fewer slices", "s00.h5: image slices 0..2 have shape (2, 1, 16, 16), the manifest says (3, 1, 16, 16)"),
    ],
)
def test_bad_contents_are_named_by_file_and_counted(tmp_path: Path, how: str, message: str) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    _damage(root, how)
    with pytest.raises(DataError, match="^" + re.escape(str(root / "scans") + "/" + message)):
        check_contents(open_dataset(root))


@pytest.mark.parametrize("how", ["3 nan", "int16", "float labels", "label 9", "empty labels", "fewer slices"])
def test_the_data_check_command_refuses_the_same_way(tmp_path: Path, how: str) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    _damage(root, how)
    with pytest.raises(DataError) as before_a_study:
        check_contents(open_dataset(root))
    with pytest.raises(DataError) as by_the_command:
        check_dataset(open_dataset(root))
    assert str(by_the_command.value) == str(before_a_study.value)


def test_the_summary_counts_the_voxels_of_every_labeled_split(tmp_path: Path) -> None:
    ds = open_dataset(write_tiny_mri(tmp_path / "ds"))
    masks = [ds.read_masks(s) for role in ("train", "val", "test") for s in ds.split.roles()[role]]
    expected = np.sum([m.sum(axis=(0, 2, 3)) for m in masks], axis=0)
    assert list(check_dataset(ds).class_voxels.values()) == expected.tolist()


def _replace_raw(root: Path, scan: str, how: str) -> None:
    with h5py.File(root / "scans" / f"{scan}.h5", "a") as f:
        echo = f["echo1"][:]
        _replace(f, "echo1", echo[:2] if how == "fewer slices" else echo > echo.mean())


@pytest.mark.parametrize(
    "how, message",
    [
        (
            "fewer slices",
            "s08.h5: raw values 'echo1' of slices 0..2 have shape (2, 16, 16), the manifest says (3, 16, 16)",
        ),
        ("bool", "s08.h5: raw values 'echo1' are stored as bool; the clinical metrics need numbers"),
    ],
)
def test_raw_values_of_test_scans_are_checked_and_only_theirs(tmp_path: Path, how: str, message: str) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    _replace_raw(root, "s00", how)  # train: its raw values are never read
    _replace_raw(root, "s12", how)  # unlabeled: the same
    assert check_contents(open_dataset(root)) == N_SCANS
    _replace_raw(root, "s08", how)  # test: the clinical metrics read them
    for check in (check_contents, check_dataset):
        with pytest.raises(DataError, match="^" + re.escape(str(root / "scans") + "/" + message)):
            check(open_dataset(root))


def test_nan_voxels_in_an_unlabeled_scan_are_found_too(tmp_path: Path) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    with h5py.File(root / "scans" / "s12.h5", "a") as f:
        f["image"][1, 0, 4, 4] = np.nan
    with pytest.raises(DataError, match=r"s12\.h5: image has 1 NaN voxel;"):
        check_contents(open_dataset(root))


def test_an_empty_role_is_refused(tmp_path: Path) -> None:
    root = write_tiny_mri(tmp_path / "ds", n_val=0)
    with pytest.raises(DataError, match=r"dataset\.json: the val split is empty"):
        check_contents(open_dataset(root))


def test_scans_are_read_in_bounded_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    with h5py.File(root / "scans" / "s01.h5", "a") as f:
        f["image"][2, 0, 0, 0] = np.nan  # in the last block: every block is counted
        f["image"][0, 0, 0, 0] = np.nan
    monkeypatch.setattr(_checks, "_BLOCK_BYTES", 2 * 16 * 16 * 4)  # two slices of 16 x 16 float32
    ds = open_dataset(root)
    sizes = []
    read_image = ds.read_image

    def spy(scan_id, slices=None):
        out = read_image(scan_id, slices)
        sizes.append(len(out))
        return out

    monkeypatch.setattr(ds, "read_image", spy)
    with pytest.raises(DataError, match=r"s01\.h5: image has 2 NaN voxels"):
        check_contents(ds)
    assert sizes == [2, 1, 2, 1]  # s00 then s01, 3 slices each


def test_a_record_skips_unchanged_files_and_rereads_a_changed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    study = tmp_path / "studies" / "tiny"
    study.mkdir(parents=True)
    record = StudyStore(study).content_record
    assert check_contents(open_dataset(root), record) == N_SCANS
    entries = json.loads(record.read_text())["scans"]
    assert len(entries) == N_SCANS and str(root / "scans" / "s00.h5") in entries
    assert check_contents(open_dataset(root), record) == 0  # a later start reads nothing
    with h5py.File(root / "scans" / "s07.h5", "a") as f:
        f["image"][0, 0, 1, 1] = np.inf
    os.utime(root / "scans" / "s07.h5", ns=(1, 1))  # even if the clock went backwards: mtime differs
    before = record.read_bytes()
    with pytest.raises(DataError, match=r"s07\.h5: image has 1 infinite voxel;"):
        check_contents(open_dataset(root), record)
    assert record.read_bytes() == before  # a failed check records nothing
    with h5py.File(root / "scans" / "s07.h5", "a") as f:
        f["image"][0, 0, 1, 1] = 0.0
    assert check_contents(open_dataset(root), record) == 1


def test_a_changed_manifest_rereads_the_scans_it_changed(tmp_path: Path) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    record = StudyStore(tmp_path).content_record
    check_contents(open_dataset(root), record)
    manifest = json.loads((root / "dataset.json").read_text())
    manifest["split"]["unlabeled"].remove("s12")  # an unlabeled scan is now held out for testing
    manifest["split"]["test"].append("s12")
    manifest["scans"]["s12"]["labeled"] = True
    (root / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"s12\.h5: missing key 'labels'"):
        check_contents(open_dataset(root), record)


def test_a_broken_or_outdated_record_means_reading_everything(tmp_path: Path) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    record = StudyStore(tmp_path).content_record
    record.write_text("{half a record")
    assert check_contents(open_dataset(root), record) == N_SCANS
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "version": _checks.CHECKS_VERSION + 1}))
    assert check_contents(open_dataset(root), record) == N_SCANS


def test_no_record_is_written_where_there_is_no_study_folder(tmp_path: Path) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    record = StudyStore(tmp_path / "studies" / "tiny").content_record
    assert check_contents(open_dataset(root), record) == N_SCANS
    assert not (tmp_path / "studies").exists()


def test_skmtea_is_checked_through_the_same_api(tmp_path: Path) -> None:
    root = write_skmtea(tmp_path / "skm")
    assert check_contents(open_dataset(root)) == 5
    with h5py.File(root / "image_files" / "MTR_002.h5", "a") as f:
        f["echo1"][3, 4, 1] = np.nan
    with pytest.raises(DataError, match=r"MTR_002\.h5: image has 1 NaN voxel;"):
        check_contents(open_dataset(root))
    with h5py.File(root / "image_files" / "MTR_002.h5", "a") as f:
        f["echo1"][3, 4, 1] = 1.0
        f["seg"][...] = 0
    with pytest.raises(DataError, match=r"MTR_002\.h5: scan 'MTR_002' in the train split has an empty label map"):
        check_contents(open_dataset(root))


def test_an_unreadable_data_set_is_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_tiny_mri(tmp_path / "ds")
    real_access = os.access
    # Root reads through permission bits, so the refusal the kernel would give is simulated.
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != root and real_access(p, mode))
    with pytest.raises(DataError, match=f"^{re.escape(str(root))}: permission denied$"):
        open_dataset(root)
    scan = root / "scans" / "s00.h5"
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != scan and real_access(p, mode))
    with pytest.raises(DataError, match=f"^{re.escape(str(scan))}: permission denied$"):
        check_contents(open_dataset(root))
