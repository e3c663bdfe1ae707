"""Data sets in one data model: the platform's h5 format, SKM-TEA in place, built-in phantoms.

>>> ds = open_dataset(builtin_dataset("mri"))      # doctest: +SKIP
>>> ds.read_image(ds.split.train[0], [0]).shape     # (1, C, H, W)  # doctest: +SKIP

The torch view of a data set, :class:`study.data.slices.SliceDataset`, is imported from its module:
checking a spec's data sets never loads torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from study.data._builtin import (
    BUILTIN_KINDS,
    LATEST_PHANTOM_VERSION,
    PHANTOM_VERSIONS,
    PhantomSettings,
    builtin_dataset,
    describe_phantom,
    make_phantom_dataset,
    phantom_cache_path,
    phantom_rounding,
    phantom_split,
    study_data_paths,
    study_phantom_path,
    study_phantom_version,
)
from study.data._checks import check_contents, write_record
from study.data._h5 import DatasetWriter, H5Dataset, open_h5_dataset
from study.data._model import Dataset, ScanInfo, Split, labels_to_masks
from study.data._skmtea import SkmTeaDataset, is_skmtea_root
from study.data.subsets import (
    DEFAULT_LABEL_FRACTIONS,
    check_selections,
    default_rounding,
    finetuning_scans,
    guard_training_scans,
    label_subsets,
    pretraining_scans,
    subset_size,
)
from study.errors import DataError

__all__ = [
    "BUILTIN_KINDS",
    "DEFAULT_LABEL_FRACTIONS",
    "Dataset",
    "DatasetWriter",
    "check_selections",
    "default_rounding",
    "H5Dataset",
    "LATEST_PHANTOM_VERSION",
    "PHANTOM_VERSIONS",
    "PhantomSettings",
    "ScanInfo",
    "SkmTeaDataset",
    "Split",
    "builtin_dataset",
    "check_contents",
    "describe_phantom",
    "write_record",
    "finetuning_scans",
    "guard_training_scans",
    "label_subsets",
    "labels_to_masks",
    "make_phantom_dataset",
    "open_dataset",
    "phantom_cache_path",
    "phantom_rounding",
    "phantom_split",
    "pretraining_scans",
    "study_data_paths",
    "study_phantom_path",
    "study_phantom_version",
    "subset_size",
]


def open_dataset(path: str | Path) -> Dataset:
    """Open any supported data set: the platform's format (a folder with ``dataset.json``) or an
    SKM-TEA root (``image_files/`` and ``annotations/``)."""
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise DataError(f"{root}: data set not found")
    if not root.is_dir():
        raise DataError(f"{root}: a data set is a folder, this is a file")
    if not os.access(root, os.R_OK | os.X_OK):  # else it would look like a folder that is not a data set
        raise DataError(f"{root}: permission denied")
    try:
        if (root / "dataset.json").exists():
            return open_h5_dataset(root)
        if is_skmtea_root(root):
            return SkmTeaDataset(root)
    except PermissionError as exc:
        raise DataError(f"{exc.filename or root}: permission denied") from None
    raise DataError(f"{root}: not a data set (expected dataset.json, or SKM-TEA's image_files/ and annotations/)")
