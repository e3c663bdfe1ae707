from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from study.data import DatasetWriter, Split
from study.data.preprocess import mri_input
from study.data.qdess import QDessParams, dess_echoes

PARAMS = QDessParams(repetition_time=18.176, echo_time=5.8, flip_angle=20.0, spoiler_area=3132.0, spoiler_time=1560.0)
CLASSES = ("patellar_cartilage", "femoral_cartilage", "tibial_cartilage", "meniscus")


def synthetic_mri_scan(rng: np.random.Generator, n_slices: int = 3, size: int = 16) -> dict:
    labels = rng.integers(0, 5, size=(n_slices, size, size)).astype(np.uint8)
    t2 = np.where(labels > 0, 20.0 + 5.0 * labels, 35.0).astype(np.float32)
    pd = np.full(labels.shape, 1000.0)
    echo1, echo2 = dess_echoes(pd, 1200.0, t2, PARAMS)
    return {"echo1": echo1, "echo2": echo2, "labels": labels, "t2": t2}


def write_tiny_mri(out: Path, n_train: int = 6, n_val: int = 2, n_test: int = 2, n_unlabeled: int = 4) -> Path:
    rng = np.random.default_rng(0)
    roles = {"train": n_train, "val": n_val, "test": n_test, "unlabeled": n_unlabeled}
    ids: dict[str, list[str]] = {r: [] for r in roles}
    with DatasetWriter(out, "tiny", "mri", CLASSES, 1, {"input": "rss_zscore_volume"}) as writer:
        i = 0
        for role, count in roles.items():
            for _ in range(count):
                scan = synthetic_mri_scan(rng)
                scan_id = f"s{i:02d}"
                writer.add_scan(
                    scan_id,
                    scan_id,
                    mri_input(scan["echo1"], scan["echo2"]),
                    None if role == "unlabeled" else scan["labels"],
                    {"echo1": scan["echo1"], "echo2": scan["echo2"], "t2_true_ms": scan["t2"]},
                    (0.8, 0.3125, 0.3125),
                    PARAMS,
                )
                ids[role].append(scan_id)
                i += 1
        return writer.finish(Split(**{r: tuple(v) for r, v in ids.items()}))


@pytest.fixture
def tiny_mri(tmp_path: Path) -> Path:
    return write_tiny_mri(tmp_path / "tiny")


METADATA_HEADER = "scan_id,RepetitionTime,EchoTime1,FlipAngle,SpoilerGradientArea,SpoilerGradientTime\n"


def write_skmtea(root: Path, shape: tuple[int, int, int] = (12, 10, 5), roles: dict | None = None) -> Path:
    """A miniature SKM-TEA in its documented layout: (X, Y, Z) echoes, (X, Y, Z, 6) one-hot seg."""
    roles = roles or {"train": ["MTR_001", "MTR_002"], "val": ["MTR_003"], "test": ["MTR_004"]}
    (root / "image_files").mkdir(parents=True)
    ann = root / "annotations" / "v1.0.0"
    ann.mkdir(parents=True)
    rng = np.random.default_rng(1)
    all_ids = [s for ids in roles.values() for s in ids] + ["MTR_900"]  # MTR_900: unlabeled
    for scan_id in all_ids:
        with h5py.File(root / "image_files" / f"{scan_id}.h5", "w") as f:
            e1 = rng.uniform(1, 2, shape).astype(np.float32)
            e2 = rng.uniform(0.2, 1, shape).astype(np.float32)
            f["echo1"], f["echo2"] = e1, e2
            channel = rng.integers(-1, 6, size=shape)  # -1 = background
            f["seg"] = (channel[..., None] == np.arange(6)).astype(np.uint8)
            rss = np.sqrt(e1**2 + e2**2)
            for key, value in {"mean": rss.mean(), "std": rss.std(), "min": rss.min(), "max": rss.max()}.items():
                f[f"stats/rss/{key}"] = value
    for role, ids in roles.items():
        images = [
            {
                "file_name": f"{s}.h5",
                "scan_id": s,
                "subject_id": f"subj-{s}",
                "voxel_spacing": [0.3125, 0.3125, 0.8],
                "matrix_shape": list(shape),
                "orientation": ["SI", "AP", "LR"],
            }
            for s in ids
        ]
        (ann / f"{role}.json").write_text(json.dumps({"images": images, "annotations": []}))
    rows = "".join(f"{s},18.176,5.8,20,3132,1560\n" for s in all_ids)
    (root / "all_metadata.csv").write_text(METADATA_HEADER + rows)
    return root


@pytest.fixture
def skmtea_root(tmp_path: Path) -> Path:
    return write_skmtea(tmp_path / "skm-tea")
