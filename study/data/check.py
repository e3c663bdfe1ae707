"""Validate a data set end to end and summarise it (``python -m study.data check PATH``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from study.constants import DEFAULT_PAD_MODE, LAPTOP_WIDTHS, PAPER_WIDTHS
from study.data._checks import check_contents
from study.data._model import Dataset
from study.data.padding import NetworkPadding
from study.data.subsets import DEFAULT_LABEL_FRACTIONS, default_rounding, label_subsets
from study.errors import DataError


@dataclass
class DatasetSummary:
    name: str
    modality: str
    source: str
    n_scans: dict[str, int]
    n_slices: dict[str, int]
    shape: tuple[int, int]
    in_channels: int
    class_voxels: dict[str, int]
    spacing_mm: tuple[tuple[float, ...], tuple[float, ...]]
    subset_sizes: dict[float, int] = field(default_factory=dict)
    unit: str = "scans"

    def lines(self) -> list[str]:
        lo, hi = self.spacing_mm
        spacing = "x".join(f"{v:g}" for v in lo) + ("" if lo == hi else " .. " + "x".join(f"{v:g}" for v in hi))
        out = [
            f"data set   {self.name} ({self.modality}) at {self.source}",
            f"images     {self.shape[0]} x {self.shape[1]} px, {self.in_channels} input channel(s), "
            f"spacing {spacing} mm (slice x row x col)",
            "split      "
            + ", ".join(f"{r} {n} {self.unit} / {self.n_slices[r]} slices" for r, n in self.n_scans.items()),
            "classes    " + ", ".join(f"{c} {v} voxels" for c, v in self.class_voxels.items()),
            "subsets    "
            + ", ".join(f"{f:.0%}: {n}" for f, n in self.subset_sizes.items())
            + f" {self.unit} of the training split",
            "network    " + self._padding(),
        ]
        return out

    def _padding(self) -> str:
        # A data set does not know the U-Net it will meet: say what both profiles' depths do to it.
        scales = [
            (p, NetworkPadding(*self.shape, len(w))) for p, w in (("laptop", LAPTOP_WIDTHS), ("paper", PAPER_WIDTHS))
        ]
        parts = [
            (f"padded to {g.padded[0]} x {g.padded[1]}" if g.needed else "no padding")
            + f" for a U-Net of {g.levels} levels ({p} scale)"
            for p, g in scales
        ]
        mode = (
            f"; mode {DEFAULT_PAD_MODE} (scale.pad_mode), outputs cropped back"
            if any(g.needed for _, g in scales)
            else ""
        )
        return f"{self.shape[0]} x {self.shape[1]} px: " + ", ".join(parts) + mode


def check_dataset(dataset: Dataset) -> DatasetSummary:
    """Read every scan of the split once and summarise the data set.

    Raises :class:`DataError` at the first problem: the checks a study runs before it starts
    (:func:`study.data.check_contents`), in the same words, so the two never disagree.
    """
    counts = np.zeros(len(dataset.class_names), dtype=np.int64)
    check_contents(dataset, class_voxels=counts)
    spacings = np.array([info.spacing_mm for info in dataset.scans.values()])
    shapes = {(info.height, info.width) for info in dataset.scans.values()}
    if len(shapes) != 1:
        raise DataError(f"{dataset.source}: scans have different in-plane sizes {sorted(shapes)}")
    rounding = default_rounding(dataset)
    subsets = label_subsets(dataset.split.train, DEFAULT_LABEL_FRACTIONS, 0, rounding)
    roles = dataset.split.roles()
    return DatasetSummary(
        name=dataset.name,
        modality=dataset.modality,
        source=dataset.source,
        n_scans={r: len(ids) for r, ids in roles.items()},
        n_slices={r: sum(dataset.scans[s].n_slices for s in ids) for r, ids in roles.items()},
        shape=shapes.pop(),
        in_channels=dataset.in_channels,
        class_voxels={c: int(n) for c, n in zip(dataset.class_names, counts)},
        spacing_mm=(tuple(spacings.min(0)), tuple(spacings.max(0))),
        subset_sizes={f: len(ids) for f, ids in subsets.items()},
        unit="volumes" if dataset.volumetric else "slices",
    )
