"""What a NIfTI import records about its volumes, so that new volumes can be read the same way.

``python -m study.data import-nifti`` stores this under ``preprocessing.nifti`` in the data set's
``dataset.json``; ``python -m study.predict`` reads it to lay out a new volume as the import did
(the slice axis), to refuse one the network never saw the like of (another orientation or
dimensionality), and to write label maps with the label values the user declared::

    {"slice_axis": 2, "per_slice": false, "classes": {"tibial_cartilage": [3, 4], ...},
     "orientations": ["RAS"], "ndims": [3]}

A data set not imported from NIfTI (the built-in phantoms, SKM-TEA) has no record; study.predict
then takes slice axis 2 and label values 1..K, the importer's defaults, and checks no orientation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from study.errors import DataError


def nibabel_module():
    try:
        import nibabel
    except ImportError:
        raise DataError('NIfTI files need nibabel: pip install -e ".[nifti]" (in the repository)') from None
    return nibabel


def orientation(image: Any) -> str:
    """The axis codes of a NIfTI image's affine, e.g. ``RAS`` or ``LPS`` (nibabel's ``aff2axcodes``)."""
    nibabel = nibabel_module()
    return "".join(str(c) for c in nibabel.aff2axcodes(image.affine))


def header_of(path: Path) -> Any:
    """The NIfTI image at ``path``, its voxels not read; :class:`DataError` naming it if unreadable."""
    nibabel = nibabel_module()
    try:
        return nibabel.load(str(path))
    except Exception as exc:  # nibabel raises many types for a corrupt file
        raise DataError(f"{path}: not a readable NIfTI file ({exc})") from None


def import_record(
    slice_axis: int, per_slice: bool, classes: Mapping[str, Sequence[int]], paths: Iterable[Path]
) -> dict[str, Any]:
    """The record of an import of the images at ``paths`` (headers only)."""
    orientations, ndims = set(), set()
    for path in paths:
        image = header_of(path)
        orientations.add(orientation(image))
        ndims.add(len(image.shape))
    return {
        "slice_axis": int(slice_axis),
        "per_slice": bool(per_slice),
        "classes": {name: [int(v) for v in values] for name, values in classes.items()},
        "orientations": sorted(orientations),
        "ndims": sorted(ndims),
    }
