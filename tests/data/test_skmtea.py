from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from study.data import SkmTeaDataset, open_dataset
from study.data.check import check_dataset
from study.errors import DataError

from .conftest import write_skmtea


def test_reads_sagittal_slices_first_and_merges_classes(skmtea_root: Path) -> None:
    ds = open_dataset(skmtea_root)
    assert isinstance(ds, SkmTeaDataset)
    assert ds.split.train == ("MTR_001", "MTR_002") and ds.split.test == ("MTR_004",)
    assert ds.split.unlabeled == ("MTR_900",)  # on disk but in no split: pretraining pool
    info = ds.scans["MTR_001"]
    assert (info.n_slices, info.height, info.width) == (5, 12, 10)
    assert info.spacing_mm == (0.8, 0.3125, 0.3125) and info.subject_id == "subj-MTR_001"
    assert info.qdess is not None and info.qdess.repetition_time == pytest.approx(18.176)
    with h5py.File(skmtea_root / "image_files" / "MTR_001.h5") as f:
        seg, e1, e2 = f["seg"][:], f["echo1"][:], f["echo2"][:]
        mean, std = float(f["stats/rss/mean"][()]), float(f["stats/rss/std"][()])
    masks = ds.read_masks("MTR_001", [3])  # (1, 4, X, Y): slice z=3 of the last axis
    assert masks.shape == (1, 4, 12, 10)
    np.testing.assert_array_equal(masks[0, 0], seg[:, :, 3, 0] > 0)  # patellar
    np.testing.assert_array_equal(masks[0, 1], seg[:, :, 3, 1] > 0)  # femoral
    np.testing.assert_array_equal(masks[0, 2], (seg[:, :, 3, 2] | seg[:, :, 3, 3]) > 0)  # tibial = med + lat
    np.testing.assert_array_equal(masks[0, 3], (seg[:, :, 3, 4] | seg[:, :, 3, 5]) > 0)  # meniscus = med + lat
    image = ds.read_image("MTR_001", [3])
    expected = (np.sqrt(e1[:, :, 3] ** 2 + e2[:, :, 3] ** 2) - mean) / std
    np.testing.assert_allclose(image[0, 0], expected, rtol=1e-5)
    raw = ds.read_raw("MTR_001")
    np.testing.assert_array_equal(raw["echo1"][3], e1[:, :, 3])


def test_check_summarises_skmtea(skmtea_root: Path) -> None:
    summary = check_dataset(open_dataset(skmtea_root))
    assert summary.n_scans == {"train": 2, "val": 1, "test": 1, "unlabeled": 1}
    assert summary.n_slices["train"] == 10 and summary.unit == "volumes"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_t2_columns", "all_metadata.csv: missing column(s) SpoilerGradientArea"),
        ("split_names_missing_scan", "MTR_404.h5: file not found"),
        ("missing_seg", "MTR_002.h5: missing key 'seg'"),
        ("wrong_seg_shape", "MTR_002.h5: seg shape (12, 10, 5, 4) != (12, 10, 5, 6)"),
        ("truncated", "MTR_002.h5: not a readable HDF5 file"),
        ("no_metadata_row", "no row for scan 'MTR_900'"),
    ],
)
def test_broken_skmtea_is_reported_by_file(tmp_path: Path, damage: str, message: str) -> None:
    roles = {"train": ["MTR_001", "MTR_002"], "val": ["MTR_003"], "test": ["MTR_004"]}
    root = write_skmtea(tmp_path / "skm", roles=roles)
    scan = root / "image_files" / "MTR_002.h5"
    if damage == "no_t2_columns":
        (root / "all_metadata.csv").write_text("scan_id,RepetitionTime,EchoTime1,FlipAngle\nMTR_001,18,5.8,20\n")
    elif damage == "split_names_missing_scan":
        (root / "image_files" / "MTR_004.h5").rename(root / "image_files" / "MTR_404.h5")
        text = (root / "annotations/v1.0.0/test.json").read_text().replace("MTR_004", "MTR_404")
        (root / "annotations/v1.0.0/test.json").write_text(text)
        (root / "all_metadata.csv").write_text((root / "all_metadata.csv").read_text().replace("MTR_004", "MTR_404"))
        (root / "image_files" / "MTR_404.h5").unlink()
    elif damage in ("missing_seg", "wrong_seg_shape"):
        with h5py.File(scan, "a") as f:
            del f["seg"]
            if damage == "wrong_seg_shape":
                f["seg"] = np.zeros((12, 10, 5, 4), np.uint8)
    elif damage == "truncated":
        scan.write_bytes(scan.read_bytes()[:200])
    elif damage == "no_metadata_row":
        lines = (root / "all_metadata.csv").read_text().splitlines()
        (root / "all_metadata.csv").write_text("\n".join(line for line in lines if "MTR_900" not in line) + "\n")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_dataset(root)


def _shipped_metadata(root: Path, rows: list[dict]) -> Path:
    """all_metadata.csv laid out as SKM-TEA ships it: pandas' unnamed index column first, scans named
    in MTR_ID, more DICOM columns than the reader needs, rows in no particular order."""
    path = root / "all_metadata.csv"
    pd.DataFrame(rows).to_csv(path)  # index=True: the header starts with an empty name
    return path


def test_metadata_as_the_data_set_ships_it(tmp_path: Path) -> None:
    root = write_skmtea(tmp_path / "skm")
    scans = ["MTR_900", "MTR_003", "MTR_001", "MTR_004", "MTR_002"]
    rows = [
        {
            "MTR_ID": s,
            "PatientAge": 40 + i,
            "MedialDirection": "L",
            "RepetitionTime": 18.0 + i,
            "EchoTime1": 5.8,
            "EchoTime2": 30.2,
            "FlipAngle": 20.0,
            "SpoilerGradientArea": 3132.0 + i,
            "SpoilerGradientTime": 1560.0,
        }
        for i, s in enumerate(scans)
    ]
    path = _shipped_metadata(root, rows)
    assert path.read_text().startswith(",MTR_ID,")
    # The data set's own evaluation code reads this sample as it reads the real file.
    metadata = pd.read_csv(path, index_col=0)
    ds = open_dataset(root)
    for i, scan_id in enumerate(scans):
        row = metadata[metadata["MTR_ID"] == scan_id]
        assert len(row) == 1
        params = ds.scans[scan_id].qdess
        assert params is not None
        assert (params.repetition_time, params.spoiler_area) == (float(row["RepetitionTime"].iloc[0]), 3132.0 + i)
        assert (params.echo_time, params.flip_angle, params.spoiler_time) == (5.8, 20.0, 1560.0)


@pytest.mark.parametrize(
    "header, body, message",
    [
        (
            ",ID,RepetitionTime,EchoTime1,FlipAngle,SpoilerGradientArea,SpoilerGradientTime",
            "0,MTR_001,18,5.8,20,3132,1560",
            "missing column(s) MTR_ID or scan_id needed for T2 estimation",
        ),
        (
            ",MTR_ID,RepetitionTime,EchoTime1,FlipAngle,SpoilerGradientArea,SpoilerGradientTime",
            "0,MTR_001,18,5.8,20,3132,1560\n1,MTR_001,18,5.8,20,3132,1560",
            "scan MTR_001 has more than one row",
        ),
        (
            ",MTR_ID,RepetitionTime,EchoTime1,FlipAngle,SpoilerGradientArea,SpoilerGradientTime",
            "0,MTR_001,fast,5.8,20,3132,1560",
            "scan MTR_001: could not convert string to float: 'fast'",
        ),
    ],
)
def test_metadata_problems_name_the_file(tmp_path: Path, header: str, body: str, message: str) -> None:
    root = write_skmtea(tmp_path / "skm")
    (root / "all_metadata.csv").write_text(f"{header}\n{body}\n")
    with pytest.raises(DataError, match=re.escape(f"all_metadata.csv: {message}")):
        open_dataset(root)


@pytest.mark.parametrize("scan_id", ["../../outside", "/etc/passwd", "sub/MTR_001", "..", ""])
def test_an_annotation_naming_a_file_outside_the_data_set_is_refused(tmp_path: Path, scan_id: str) -> None:
    root = write_skmtea(tmp_path / "skm")
    ann = root / "annotations" / "v1.0.0" / "test.json"
    ann.write_text(ann.read_text().replace('"scan_id": "MTR_004"', json.dumps({"scan_id": scan_id})[1:-1]))
    with pytest.raises(DataError, match=re.escape(f"{ann}: scan id {scan_id!r} is not a plain file name")):
        open_dataset(root)


def test_an_annotation_file_name_outside_the_data_set_is_refused(tmp_path: Path) -> None:
    root = write_skmtea(tmp_path / "skm")
    ann = root / "annotations" / "v1.0.0" / "val.json"
    ann.write_text(ann.read_text().replace('"file_name": "MTR_003.h5"', '"file_name": "../../MTR_003.h5"'))
    with pytest.raises(DataError, match=re.escape(f"{ann}: file name '../../MTR_003.h5' is not a plain file name")):
        open_dataset(root)
