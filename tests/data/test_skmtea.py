from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
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
        (root / "all_metadata.csv").write_text(
            (root / "all_metadata.csv").read_text().replace("MTR_004", "MTR_404")
        )
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
        (root / "all_metadata.csv").write_text("\n".join(l for l in lines if "MTR_900" not in l) + "\n")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_dataset(root)
