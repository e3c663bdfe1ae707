"""Pretext corruptions for inpainting self-supervised pretraining (Dominic et al. 2023, sec. 2.4).

Samplers place K x K patches (:class:`RandomSampler`, :class:`PoissonDiscSampler`), a
:class:`CorruptionConfig` names a task, a sampler and a patch size, and a :class:`MaskBank` built
once per run corrupts every batch on its own device. ``python -m study.pretext preview`` draws the
paper's Figure 1 for any image.
"""

from __future__ import annotations

from study.constants import PAPER_IMAGE_SIZE, PAPER_PATCH_SIZES, SAMPLERS, TASKS
from study.pretext._base import PatchSampler
from study.pretext._corruption import (
    CorruptionConfig,
    apply_patches,
    moved_pixels,
    scaled_patch_size,
)
from study.pretext._mask_bank import MaskBank
from study.pretext._poisson_disc import PoissonDiscSampler
from study.pretext._preview import (
    PreviewFigure,
    PreviewPanel,
    draw_preview,
    preview_figure,
    render_preview,
    synthetic_image,
)
from study.pretext._random import RandomSampler

__all__ = [
    "PAPER_IMAGE_SIZE",
    "PAPER_PATCH_SIZES",
    "SAMPLERS",
    "TASKS",
    "CorruptionConfig",
    "MaskBank",
    "PatchSampler",
    "PoissonDiscSampler",
    "PreviewFigure",
    "PreviewPanel",
    "RandomSampler",
    "apply_patches",
    "draw_preview",
    "moved_pixels",
    "preview_figure",
    "render_preview",
    "scaled_patch_size",
    "synthetic_image",
]
