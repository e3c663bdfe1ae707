"""study.predict and study.analyze --metric on a finished study of NIfTI imports: called from the
test that makes that study (tests/data/test_any_image_size.py), so no study is run for them alone.

The round trip: the test volumes of each imported data set, as the user's NIfTI files, go through
``python -m study.predict`` with a trial's strategy; the label maps it writes, compared with the
original label files, give the Dice (and NSD, HD95) of the trial's per-case table, and keep the
input's affine and header. Then every refusal, each in one line with exit status 2 and nothing
written.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import nibabel
import numpy as np
import pytest

from study._cli import run_main
from study.data import open_dataset
from study.folder.store import StudyStore
from study.metrics import boundary_rows, dice_per_class
from study.predict import main as predict_main

RESTORATION = "restoration/K32/poisson_disc|encoder/at_once"


def _run(*argv: str) -> tuple[int, str, str]:
    """``python -m study.predict ARGV`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        run_main(predict_main, list(argv))
    return int(exit_.value.code), out.getvalue(), err.getvalue()


def _refused(*argv: str, fragment: str) -> None:
    code, _, err = _run(*argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert "Traceback" not in err


def _trial(store: StudyStore, dataset: str, strategy: str, fraction: float):
    (record,) = [
        r
        for tid in store.trial_ids()
        if (r := store.trial_result(tid)) is not None
        and r.dataset == dataset
        and r.strategy == strategy
        and r.label_fraction == fraction
    ]
    return record


def check_predict_and_metrics(tmp_path: Path, store: StudyStore, imports: dict[str, tuple[Path, Path, str]]) -> None:
    """``imports``: data set folder -> (NIfTI images, NIfTI labels, modality) it was imported from."""
    # the boundary metrics are in every table (ranking by them: tests/analysis/test_metric.py, as one
    # test volume per data set here is too few pairs for any ranking)
    for trial_id in store.trial_ids():
        table = store.read_per_case(trial_id)
        assert {"nsd", "hd95", "nsd_tol_mm"} <= set(table.columns)
        assert ((table["nsd"].dropna() >= 0) & (table["nsd"].dropna() <= 1)).all() and (
            table["hd95"].dropna() >= 0
        ).all()
    study = str(store.root)
    for data, (images, labels, modality) in imports.items():
        dataset = open_dataset(data)
        subjects = sorted({dataset.scans[c].subject_id for c in dataset.split.test})
        new = tmp_path / f"new-{modality}"
        new.mkdir()
        for subject in subjects:
            shutil.copy(images / f"{subject}.nii.gz", new / f"{subject}.nii.gz")
        out = tmp_path / f"predicted-{modality}"
        # no optimum (one test volume cannot show a strategy better): refused, naming the choices
        _refused(
            study,
            "--images",
            str(new),
            "--out",
            str(out),
            "--dataset",
            data,
            fragment=f"name one with --strategy: {RESTORATION}, supervised",
        )
        assert not out.exists()
        code, printed, err = _run(
            study,
            "--images",
            str(new),
            "--out",
            str(out),
            "--dataset",
            data,
            "--strategy",
            RESTORATION,
            "--fraction",
            "1",
            "--masks",
            "--quiet",
        )
        assert code == 0, err
        record = _trial(store, data, RESTORATION, 1.0)
        assert f"with trial {record.trial_id}: {RESTORATION}" in printed and "cpu" in printed
        table = store.read_per_case(record.trial_id).set_index(["case_id", "class"])
        compared = 0
        for subject in subjects:
            given = nibabel.load(str(new / f"{subject}.nii.gz"))
            written = nibabel.load(str(out / f"{subject}.nii.gz"))
            masks = nibabel.load(str(out / f"{subject}_masks.nii.gz"))
            for image in (written, masks):
                assert np.array_equal(image.affine, given.affine) and np.array_equal(
                    image.header.get_best_affine(), given.header.get_best_affine()
                )
                assert image.header.get_zooms()[:3] == given.header.get_zooms()
            assert written.shape == given.shape and masks.shape == (*given.shape, 4)
            # (K, S, H, W), slices on the import's axis 2
            predicted = np.moveaxis(np.asarray(masks.dataobj), (3, 2), (0, 1)).astype(bool)
            label_map = np.moveaxis(np.asarray(written.dataobj), 2, 0)
            one = predicted.sum(axis=0) == 1  # the label map holds each voxel one class claims, 0 where none does
            assert np.array_equal(label_map[one], np.argmax(predicted, axis=0)[one] + 1)
            assert (label_map[predicted.sum(axis=0) == 0] == 0).all()
            assert np.isin(label_map[predicted.sum(axis=0) > 1], [1, 2, 3, 4]).all()
            truth = np.moveaxis(np.asarray(nibabel.load(str(labels / f"{subject}.nii.gz")).dataobj), 2, 0)
            zooms = written.header.get_zooms()
            cases = (
                [(subject, slice(None))]
                if modality == "mri"
                else [(f"{subject}_s{z:03d}", slice(z, z + 1)) for z in range(truth.shape[0])]
            )
            for case, part in cases:
                pred = predicted[:, part]
                true = np.stack([truth[part] == k for k in range(1, 5)])
                dice = dice_per_class(pred, true)
                boundary = boundary_rows(pred, true, dataset.class_names, (zooms[2], zooms[0], zooms[1]))
                if not (pred.sum(axis=0) > 1).any():  # no voxel claimed twice: the label map gives the same
                    assert np.allclose(
                        dice,
                        dice_per_class(np.stack([label_map[part] == k for k in range(1, 5)]), true),
                        equal_nan=True,
                    )
                for k, cls in enumerate(dataset.class_names):
                    row = table.loc[(case, cls)]
                    assert dice[k] == pytest.approx(row["dice"], abs=1e-6, nan_ok=True)
                    assert boundary[k]["nsd"] == pytest.approx(row["nsd"], abs=1e-6, nan_ok=True)
                    assert boundary[k]["hd95"] == pytest.approx(row["hd95"], abs=1e-6, nan_ok=True)
                    compared += 1
        assert compared == 4 * len(dataset.split.test)
        _refusals(tmp_path, store, study, data, new, out, modality, imports)


def _refusals(
    tmp_path: Path, store: StudyStore, study: str, data: str, new: Path, out: Path, modality: str, imports: dict
) -> None:
    args = ("--dataset", data, "--strategy", RESTORATION, "--fraction", "1")
    before = sorted(p.name for p in out.iterdir())
    _refused(study, "--images", str(new), "--out", str(out), *args, fragment="already exists and is not empty")
    assert sorted(p.name for p in out.iterdir()) == before
    fresh = tmp_path / f"none-{modality}" / "labels"
    one = next(new.iterdir())
    given = nibabel.load(str(one))
    data_3d = np.asarray(given.dataobj)
    odd = {
        "orientation LAS": nibabel.Nifti1Image(data_3d, np.diag([-1.0, 1.0, 1.0, 1.0]) @ given.affine),
        "a 2-D volume": nibabel.Nifti1Image(data_3d[..., 0], given.affine),
        "a 4-D volume": nibabel.Nifti1Image(np.stack([data_3d, data_3d], axis=-1), given.affine),
    }
    for i, (fragment, image) in enumerate(odd.items()):
        folder = tmp_path / f"odd-{modality}-{i}"
        folder.mkdir()
        shutil.copy(one, folder / one.name)  # a good volume first: still nothing is written
        nibabel.save(image, str(folder / "zz.nii.gz"))
        _refused(study, "--images", str(folder), "--out", str(fresh), *args, fragment=fragment)
        assert not fresh.parent.exists()
    if modality == "mri":  # a CT in HU: air at -1000 around a body at 40 HU
        other_images = tmp_path / "a-ct"
        other_images.mkdir()
        body = np.full(data_3d.shape, -1000.0, dtype=np.float32)
        body[20:-20, 20:-20] = 40.0
        nibabel.save(nibabel.Nifti1Image(body, given.affine), str(other_images / "ct.nii.gz"))
    else:  # the MRI import's own volumes: magnitudes, nothing near fat's -100 HU
        other_images = next(i for i, _, m in imports.values() if m == "mri")
    _refused(
        study,
        "--images",
        str(other_images),
        "--out",
        str(fresh),
        *args,
        fragment="as a CT in HU" if modality == "mri" else "as an MRI magnitude",
    )
    assert not fresh.parent.exists()
    weights = store.trial_weights_path(_trial(store, data, RESTORATION, 1.0).trial_id)
    weights.rename(weights.with_suffix(".away"))
    try:
        _refused(study, "--images", str(new), "--out", str(fresh), *args, fragment="kept no weights")
    finally:
        weights.with_suffix(".away").rename(weights)
    _refused(
        study,
        "--images",
        str(new),
        "--out",
        str(fresh),
        "--strategy",
        RESTORATION,
        fragment=f"the study has 2 data sets; name one with --dataset: {', '.join(sorted(imports))}",
    )
    _refused(
        study,
        "--images",
        str(new),
        "--out",
        str(fresh),
        "--dataset",
        data,
        "--strategy",
        "nonesuch",
        fragment=f"the study's strategies: {RESTORATION}, supervised",
    )
    assert not fresh.parent.exists()
