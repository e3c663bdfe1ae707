from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest

from study.data import open_dataset
from study.data.check import check_dataset
from study.data.nifti import NiftiImport, import_nifti, parse_classes
from study.errors import DataError, SpecError

from ..conftest import assert_user_error, run_cli


def _save(path: Path, data: np.ndarray, zooms: tuple[float, ...] = (0.7, 0.8, 3.0)) -> None:
    img = nibabel.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms[: data.ndim])
    nibabel.save(img, str(path))


def _write_ct_volumes(root: Path, n: int = 6, slices: int = 2, bad_label: bool = False) -> tuple[Path, Path]:
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        hu = rng.normal(0, 200, size=(12, 10, slices)).astype(np.float32)  # (X, Y, Z), slices last
        lab = rng.integers(0, 5, size=(12, 10, slices)).astype(np.int16)
        if bad_label and i == 2:
            lab[0, 0, 0] = 7
        _save(images / f"case{i}.nii.gz", hu)
        _save(labels / f"case{i}.nii.gz", lab)
    return images, labels


def test_ct_round_trip_keeps_values_slices_and_spacing(tmp_path: Path) -> None:
    images, labels = _write_ct_volumes(tmp_path)
    classes = parse_classes("muscle=1,imat=2,vat=3,sat=4")
    out = import_nifti(NiftiImport(images, labels, classes, modality="ct", seed=1), tmp_path / "out")
    ds = open_dataset(out)
    assert ds.class_names == ("muscle", "imat", "vat", "sat") and ds.in_channels == 3
    assert len(ds.scans) == 12 and not ds.volumetric  # per-slice cases for CT
    scan = ds.scans["case0_s001"]
    assert scan.subject_id == "case0" and scan.spacing_mm == pytest.approx((3.0, 0.7, 0.8))
    hu = np.asarray(nibabel.load(str(images / "case0.nii.gz")).dataobj)
    lab = np.asarray(nibabel.load(str(labels / "case0.nii.gz")).dataobj)
    np.testing.assert_allclose(ds.read_raw("case0_s001")["hu"][0], hu[:, :, 1])
    masks = ds.read_masks("case0_s001")[0]
    for k in range(4):
        np.testing.assert_array_equal(masks[k], lab[:, :, 1] == k + 1)
    # Slices of one patient stay together on one side of the split.
    roles = {s: r for r, ids in ds.split.roles().items() for s in ids}
    assert roles["case0_s000"] == roles["case0_s001"]
    check_dataset(ds)


def test_merged_label_values_and_mri_volumes(tmp_path: Path) -> None:
    images, labels = _write_ct_volumes(tmp_path, n=5, slices=3)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["case0", "case1", "case2"], "val": ["case3.nii.gz"], "test": ["case4"]}))
    cfg = NiftiImport(images, labels, parse_classes("a=1+2,b=3+4"), modality="mri", split_file=split)
    ds = open_dataset(import_nifti(cfg, tmp_path / "out"))
    assert ds.split.train == ("case0", "case1", "case2") and ds.split.val == ("case3",)
    assert ds.volumetric and ds.scans["case0"].n_slices == 3
    lab = np.asarray(nibabel.load(str(labels / "case0.nii.gz")).dataobj)
    masks = ds.read_masks("case0")  # (S, K, H, W), slices first
    np.testing.assert_array_equal(masks[:, 0], np.isin(np.moveaxis(lab, 2, 0), (1, 2)))


def test_undeclared_label_value_names_file_and_value(tmp_path: Path) -> None:
    images, labels = _write_ct_volumes(tmp_path, bad_label=True)
    cfg = NiftiImport(images, labels, parse_classes("muscle=1,imat=2,vat=3,sat=4"), modality="ct")
    with pytest.raises(DataError, match=r"case2.nii.gz: label value\(s\) \[7\] are not declared"):
        import_nifti(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [("muscle", "must look like name=VALUE"), ("a=x", "must look like")])
def test_bad_class_declarations(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_classes(text)


def test_cli_import_reports_a_missing_label_map(tmp_path: Path) -> None:
    images, labels = _write_ct_volumes(tmp_path)
    (labels / "case3.nii.gz").unlink()
    result = run_cli(
        "study.data",
        "import-nifti",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--classes",
        "m=1,i=2,v=3,s=4",
        "--modality",
        "ct",
        "--out",
        str(tmp_path / "out"),
    )
    assert_user_error(result, "no label map for image 'case3'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["../../outside.nii.gz", "/etc/case0.nii.gz", "sub/case1", ""])
def test_a_split_file_naming_files_outside_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    images, labels = _write_ct_volumes(tmp_path)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["case0", "case1", name], "val": ["case3"], "test": ["case4"]}))
    result = run_cli(
        "study.data",
        "import-nifti",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--classes",
        "a=1,b=2,c=3,d=4",
        "--split-file",
        str(split),
        "--modality",
        "ct",
        "--out",
        str(tmp_path / "out"),
    )
    assert_user_error(result, f"{split}: train file name {name!r} is not a plain file name")
    assert not (tmp_path / "out").exists()


def test_a_declared_class_with_no_voxel_is_refused(tmp_path: Path) -> None:
    """``import-nifti ... --classes a=1,b=2,c=3,d=4`` where no label map holds a 4 (issue 27, Found 7)."""
    images, labels = _write_ct_volumes(tmp_path)
    for path in labels.iterdir():  # no voxel of label value 4 anywhere
        img = nibabel.load(str(path))
        data = np.asarray(img.dataobj)
        nibabel.save(
            nibabel.Nifti1Image(np.where(data == 4, 0, data).astype(np.int16), img.affine, img.header), str(path)
        )
    result = run_cli(
        "study.data",
        "import-nifti",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--classes",
        "a=1,b=2,c=3,d=4",
        "--modality",
        "ct",
        "--out",
        str(tmp_path / "out"),
    )
    assert_user_error(result, f"{labels}: class d (label value 4) has no voxel in any label map")
    assert not (tmp_path / "out").exists()


def test_the_modality_must_be_given_and_the_data_set_is_named_after_out(tmp_path: Path) -> None:
    images, labels = _write_ct_volumes(tmp_path)
    args = [
        "study.data",
        "import-nifti",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--classes",
        "m=1,i=2,v=3,s=4",
    ]
    assert_user_error(run_cli(*args, "--out", str(tmp_path / "my-ct")), "--modality")  # not MRI by default
    assert not (tmp_path / "my-ct").exists()
    done = run_cli(*args, "--modality", "ct", "--out", str(tmp_path / "my-ct"))
    assert done.returncode == 0, done.stderr
    ds = open_dataset(tmp_path / "my-ct")
    assert ds.name == "my-ct" and ds.modality == "ct"  # not "images", the folder the volumes came from


def test_without_nibabel_the_hint_is_the_readmes(tmp_path: Path) -> None:
    images, labels = _write_ct_volumes(tmp_path)
    code = (
        "import sys; sys.modules['nibabel'] = None\n"
        "from study._cli import run_main; from study.data.__main__ import main; run_main(main)"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "import-nifti",
            "--images",
            str(images),
            "--labels",
            str(labels),
            "--classes",
            "m=1,i=2,v=3,s=4",
            "--modality",
            "ct",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_user_error(result, 'pip install -e ".[nifti]"')
    assert 'pip install -e ".[nifti]"' in (Path(__file__).parents[2] / "README.md").read_text()
