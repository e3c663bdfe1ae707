"""Procedural phantoms: the platform's embedded default data.

:func:`make_mri_phantom` draws one knee qDESS scan (a sagittal volume with cartilage and meniscus
labels and its true T2 map); :func:`make_ct_phantom` draws one L3 abdominal CT slice in Hounsfield
units with body-composition labels. Each call draws a new subject from the given
``numpy.random.Generator``: the same seed gives the same subject.
"""

from __future__ import annotations

from study.data.phantoms._ct import CT_CLASSES, CtPhantom, make_ct_phantom
from study.data.phantoms._mri import MRI_CLASSES, MriPhantom, make_mri_phantom

__all__ = ["CT_CLASSES", "CtPhantom", "MRI_CLASSES", "MriPhantom", "make_ct_phantom", "make_mri_phantom"]
