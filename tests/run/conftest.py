from __future__ import annotations

from pathlib import Path

import yaml

TINY_SCALE = {
    "profile": "laptop", "image_size": 32, "widths": [8, 16, 32], "groups": 4, "batch_size": 4,
    "pretrain_max_epochs": 2, "finetune_max_epochs": 2, "steps_per_epoch": 2, "n_masks": 4,
}


def write_spec(folder: Path, name: str = "tiny", **fields) -> Path:
    """A spec for a study that trains in seconds; ``fields`` replace top-level entries."""
    spec = {
        "name": name, "scale": TINY_SCALE,
        "pretraining": {"task": ["restoration"], "patch_size": [64], "sampler": ["random"]},
        "finetuning": {"scope": ["encoder"], "schedule": ["at_once"], "lr": [0.001]},
        "label_fractions": [0.5, 1.0], "baseline": True, "search": {"algorithm": "grid"},
        "storage": str(folder / "studies"), "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
        "resources": {"cpus_per_trial": 1}, "retries": 1,
    }
    spec.update(fields)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
