"""NIfTI volumes of sizes no U-Net can halve (197 x 233 MRI, 61 x 90 CT) imported as a user would,
studied end to end, and per-case Dice recomputed by hand on the original grid.

The hand computation shares nothing with the platform's evaluation but the saved weights and the
network input: it pads with numpy, crops by index, thresholds the logits and counts voxels against
the label maps read back from the NIfTI files themselves. It reads the weights that
``python -m study.train --out`` keeps (the trial's own pipeline), since a study discards its
trials' resume checkpoints once their records are written.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from study.data import open_dataset
from study.design.plan import TrialPoint
from study.folder.store import StudyStore
from study.model import UNet, UNetConfig
from study.train import load_checkpoint
from tests.predict.round_trip import check_predict_and_metrics

from ..conftest import REPO, run_cli

pytestmark = pytest.mark.slow

ZOOMS = (0.7, 0.8, 3.0)  # row, col, slice (mm)
SCALE = {
    "profile": "laptop",
    "widths": [4, 8, 16, 32],
    "groups": 4,
    "batch_size": 4,
    "pretrain_max_epochs": 1,
    "finetune_max_epochs": 2,
    "steps_per_epoch": 2,
    "n_masks": 4,
}
KNEE = ("patellar_cartilage", "femoral_cartilage", "tibial_cartilage", "meniscus")
ABDOMEN = ("muscle", "imat", "vat", "sat")


def _volumes(root: Path, name: str, shape: tuple[int, int], modality: str) -> tuple[Path, Path]:
    """Five volumes of two slices (X, Y, Z), each with four labelled discs that differ in intensity."""
    images, labels = root / name, root / f"{name}-labels"
    images.mkdir(parents=True)
    labels.mkdir()
    rng = np.random.default_rng(len(name))
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    for i in range(5):
        if modality == "ct":
            volume, values = rng.normal(0, 20, size=(*shape, 2)), (40.0, -30.0, -100.0, -90.0)
        else:
            volume, values = rng.normal(100, 10, size=(*shape, 2)), (300.0, 250.0, 200.0, 150.0)
        label = np.zeros((*shape, 2), dtype=np.int16)
        for k, value in enumerate(values, start=1):
            radius = max(3, min(shape) // 8)
            r, c = rng.integers(radius, shape[0] - radius), rng.integers(radius, shape[1] - radius)
            disc = (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
            label[disc] = k
            volume[disc] = value + rng.normal(0, 5, size=(int(disc.sum()), 2))
        for folder, data in ((images, volume.astype(np.float32)), (labels, label)):
            img = nibabel.Nifti1Image(data, np.diag([*ZOOMS, 1.0]))
            img.header.set_zooms(ZOOMS)
            nibabel.save(img, str(folder / f"{name}{i}.nii.gz"))
    return images, labels


def _import(root: Path, name: str, shape: tuple[int, int], modality: str, classes: tuple[str, ...]) -> Path:
    images, labels = _volumes(root, name, shape, modality)
    out = root / f"{name}-data"
    result = run_cli(
        "study.data",
        "import-nifti",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "--modality",
        modality,
        "--classes",
        ",".join(f"{c}={k}" for k, c in enumerate(classes, 1)),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return out


def _hand_dice(pred: np.ndarray, true: np.ndarray) -> float:
    both = pred.sum() + true.sum()
    return float("nan") if both == 0 else 2 * float((pred & true).sum()) / float(both)


def _truth(nifti_labels: Path, subject: str, slices: list[int]) -> np.ndarray:
    """(K, S, H, W) masks straight from the label file, slices first."""
    label = np.moveaxis(np.asarray(nibabel.load(str(nifti_labels / f"{subject}.nii.gz")).dataobj), 2, 0)[slices]
    return np.stack([label == k for k in range(1, 5)])


def _predict_by_hand(model: UNet, image: np.ndarray, batch: int) -> np.ndarray:
    """Logits > 0 on the original grid: numpy pads up to the multiple of 8 (4 levels), split
    evenly with the odd pixel after, and the output is cut back by index."""
    s, _, h, w = image.shape
    dh, dw = -h % 8, -w % 8
    top, left = dh // 2, dw // 2
    padded = np.pad(image, ((0, 0), (0, 0), (top, dh - top), (left, dw - left)))
    with torch.no_grad():
        logits = np.concatenate([model(torch.from_numpy(padded[i : i + batch])).numpy() for i in range(0, s, batch)])
    return np.moveaxis(logits[:, :, top : top + h, left : left + w] > 0, 1, 0)  # (K, S, H, W)


def test_a_study_runs_on_odd_sizes_and_says_how_it_pads_them(tmp_path: Path, study_runner) -> None:
    mri = _import(tmp_path, "knee", (197, 233), "mri", KNEE)
    ct = _import(tmp_path, "abdomen", (61, 90), "ct", ABDOMEN)
    checked = run_cli("study.data", "check", str(mri))
    assert checked.returncode == 0, checked.stderr
    assert (
        "197 x 233 px: padded to 200 x 240 for a U-Net of 4 levels (laptop scale), padded to 208 x 240 "
        "for a U-Net of 5 levels (paper scale); mode constant" in checked.stdout
    )

    scale = yaml.safe_dump(SCALE, default_flow_style=True).strip()
    args = [
        "study.run",
        str(REPO / "search_spaces" / "smoke.yaml"),
        "--set",
        f"datasets=[{mri}, {ct}]",
        "--set",
        f"scale={scale}",
        "--set",
        f"storage={tmp_path / 'studies'}",
        "--set",
        "resources.cpus_per_trial=1",
        "--set",
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    dry = run_cli(*args, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"images of {mri}: 197 x 233 px padded to 200 x 240 for a U-Net of 4 levels (constant)" in dry.stdout
    assert f"images of {ct}: 61 x 90 px padded to 64 x 96 for a U-Net of 4 levels (constant)" in dry.stdout

    ran = study_runner.run(tmp_path, *args[1:])  # the same command, by its main in the session's study runner
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    store = StudyStore(tmp_path / "studies" / "smoke")
    state = json.loads(store.state_path.read_text())
    trials = [TrialPoint.from_json(t) for t in state["trials"]]
    assert len(trials) == 8 and {t.dataset for t in trials} == {str(mri), str(ct)}
    for trial in trials:
        dataset = open_dataset(trial.dataset)
        table = store.read_per_case(trial.id)
        assert list(table["case_id"].unique()) == list(dataset.split.test)
        assert (table.groupby("case_id", sort=False)["class"].apply(tuple) == dataset.class_names).all()
        dice = table["dice"].dropna()
        assert len(dice) > 0 and ((dice >= 0) & (dice <= 1)).all()
    for key in {t.pretraining.key for t in trials if t.pretraining is not None}:
        l2 = store.read_inpainting(key)
        assert l2 is not None and len(l2) > 0 and np.isfinite(l2["l2"]).all() and (l2["l2"] > 0).all()
    # This finished study also carries the boundary metrics' and study.predict's checks (no study of their own).
    check_predict_and_metrics(
        tmp_path,
        store,
        {
            str(mri): (tmp_path / "knee", tmp_path / "knee-labels", "mri"),
            str(ct): (tmp_path / "abdomen", tmp_path / "abdomen-labels", "ct"),
        },
    )


@pytest.mark.parametrize(
    "name, shape, modality, classes", [("knee", (197, 233), "mri", KNEE), ("abdomen", (61, 90), "ct", ABDOMEN)]
)
def test_per_case_dice_equals_a_hand_computation_on_the_original_grid(
    tmp_path: Path, name: str, shape: tuple[int, int], modality: str, classes: tuple[str, ...]
) -> None:
    data = _import(tmp_path, name, shape, modality, classes)
    out = tmp_path / "run"
    # A study trial's code, run whole; its --out folder keeps the fine-tuned weights.
    ran = run_cli(
        "study.train",
        "--data",
        str(data),
        "--fraction",
        "1.0",
        "--task",
        "restoration",
        "--max-epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--widths",
        "4,8,16,32",
        "--groups",
        "4",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    (trial,) = (out / "trials").glob("*/per_case.csv")  # --out is a one-trial study folder
    table = pd.read_csv(trial)
    dataset = open_dataset(data)
    assert list(table["case_id"].unique()) == list(dataset.split.test)
    model = UNet(UNetConfig(in_channels=dataset.in_channels, out_channels=4, widths=(4, 8, 16, 32), groups=4))
    model.load_state_dict(load_checkpoint(trial.parent / "weights.pt"))  # the kept fine-tuned weights
    model.eval()
    checked = 0
    for case in dataset.split.test:
        slices = [int(case[-3:])] if modality == "ct" else [0, 1]
        pred = _predict_by_hand(model, dataset.read_image(case), batch=4)
        true = _truth(tmp_path / f"{name}-labels", dataset.scans[case].subject_id, slices)
        rows = table[table["case_id"] == case].set_index("class")
        for k, cls in enumerate(classes):
            assert rows.loc[cls, "dice"] == pytest.approx(_hand_dice(pred[k], true[k]), abs=1e-12, nan_ok=True)
            checked += 1
            if modality == "ct":  # clinical areas on the same grid: pixels x row x col mm / 100
                assert rows.loc[cls, "area_cm2_pred"] == pytest.approx(pred[k].sum() * 0.7 * 0.8 / 100)
                assert rows.loc[cls, "area_cm2_true"] == pytest.approx(true[k].sum() * 0.7 * 0.8 / 100)
    assert checked == 4 * len(dataset.split.test)
