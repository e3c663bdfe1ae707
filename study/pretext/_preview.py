"""The paper's Figure 1 for any image: example corruptions per task, patch size and sampler.

Dominic et al. 2023, Figure 1 shows context prediction and context restoration at K = 64, 32, 16
and 8 on 512 x 512 images. :func:`preview_figure` computes the same grid (rows: task x sampler,
columns: patch size) as numbers, each panel made by a one-mask :class:`MaskBank`, so the figure
shows exactly what pretraining feeds the model; :func:`draw_preview` draws it with matplotlib (the
HTML report's Figure 1 too) and :func:`render_preview` saves that as a PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from study.constants import PAPER_PATCH_SIZES, SAMPLERS, TASKS
from study.errors import SpecError
from study.pretext._base import SeedLike, as_generator, check_int
from study.pretext._corruption import CorruptionConfig, scaled_patch_size
from study.pretext._mask_bank import MaskBank

if TYPE_CHECKING:  # matplotlib loads only when a grid is drawn
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class PreviewPanel:
    """One corrupted example: ``image (H, W)`` float32 and ``changed (H, W)`` bool."""

    task: str
    sampler: str
    patch_size_512: int  # K in the paper's 512-px units
    patch_size: int  # K in pixels of this image
    image: np.ndarray
    changed: np.ndarray


@dataclass(frozen=True)
class PreviewFigure:
    """The numbers of the preview grid: the original and one panel per (task, sampler, K)."""

    original: np.ndarray  # (H, W) float32, z-scored
    panels: tuple[PreviewPanel, ...]  # row-major: (task, sampler) rows, patch-size columns
    tasks: tuple[str, ...]
    samplers: tuple[str, ...]
    patch_sizes_512: tuple[int, ...]


def synthetic_image(size: int = 128, seed: SeedLike = 0) -> np.ndarray:
    """A smooth ``(size, size)`` float32 test image, z-scored (mean 0, standard deviation 1).

    A sum of a dozen Gaussian blobs over a gentle gradient: structure at several scales, so moved
    and blanked patches stand out, until the phantoms of ``study.data`` can be used instead.
    """
    size = check_int("synthetic_image", "size", size, 8, 4096)
    rng = as_generator(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = 0.5 * x + 0.3 * y
    for _ in range(12):
        cy, cx = rng.uniform(0.1, 0.9, size=2)
        width = rng.uniform(0.03, 0.2)
        image += rng.uniform(-1.0, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    return _zscore(image)


def preview_figure(
    image: np.ndarray,
    patch_sizes_512: Sequence[int] = PAPER_PATCH_SIZES,
    seed: SeedLike = 0,
    tasks: Sequence[str] = TASKS,
    samplers: Sequence[str] = SAMPLERS,
) -> PreviewFigure:
    """Corrupt ``image`` once per task x sampler x patch size.

    Args:
        image: ``(H, W)`` or ``(C, H, W)`` (the first channel is shown); z-scored here so that the
            fill value 0 is the image mean, as in the paper.
        patch_sizes_512: patch sizes in the paper's 512-px units, scaled to this image with
            :func:`scaled_patch_size` on the side ``round(sqrt(H * W))``.
        seed: all panels' masks come from this seed, so one seed gives one figure.
        tasks, samplers: the rows, by name (see ``TASKS`` and ``SAMPLERS``).
    """
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 2 or not np.isfinite(array).all():
        raise SpecError(f"preview image must be a finite (H, W) or (C, H, W) array, got shape {np.shape(image)}")
    if not patch_sizes_512:
        raise SpecError("preview needs at least one patch size")
    original = _zscore(array)
    side = round(math.sqrt(original.shape[0] * original.shape[1]))
    base = int(as_generator(seed).integers(2**63))  # one draw, then a stream per panel
    x = torch.from_numpy(original)[None, None]
    first = torch.zeros(1, dtype=torch.int64)  # mask 0, not turned
    panels = []
    for task in tasks:
        for sampler in samplers:
            for k512 in patch_sizes_512:
                k = scaled_patch_size(k512, side)
                config = CorruptionConfig(task, sampler, k, n_masks=1, rotate=False)
                # its own stream per panel, so that one panel does not shift the next
                rng = np.random.default_rng([base, len(panels)])
                out, changed = MaskBank.build(config, original.shape, rng).apply(x, first, first)
                corrupted = out[0, 0].numpy()
                panels.append(PreviewPanel(task, sampler, k512, k, corrupted, changed[0].numpy()))
    sizes = tuple(patch_sizes_512)
    return PreviewFigure(original, tuple(panels), tuple(tasks), tuple(samplers), sizes)


def render_preview(figure: PreviewFigure, path: str | Path) -> None:
    """Draw ``figure`` as a PNG grid at ``path`` (matplotlib, Agg backend, nothing shown)."""
    from matplotlib import pyplot as plt

    fig = draw_preview(figure)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_preview(
    figure: PreviewFigure, original_title: str = "original", panel_inches: float = 2.0, font_size: float = 8
) -> Figure:
    """The grid of ``figure`` as a matplotlib figure (Agg backend): rows task x sampler, the original
    first, then one column per patch size; the caller saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n_cols = len(figure.patch_sizes_512) + 1
    n_rows = len(figure.tasks) * len(figure.samplers)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel_inches * n_cols, panel_inches * n_rows), squeeze=False)
    low, high = np.percentile(figure.original, [1, 99])
    panels = iter(figure.panels)
    for row in range(n_rows):
        axes[row, 0].imshow(figure.original, cmap="gray", vmin=low, vmax=high)
        task = figure.tasks[row // len(figure.samplers)]
        sampler = figure.samplers[row % len(figure.samplers)]
        axes[row, 0].set_ylabel(f"{task}\n{sampler}", fontsize=font_size)
        for col in range(1, n_cols):
            panel = next(panels)
            axes[row, col].imshow(panel.image, cmap="gray", vmin=low, vmax=high)
            if row == 0:
                title = f"K={panel.patch_size_512} ({panel.patch_size} px)"
                axes[row, col].set_title(title, fontsize=font_size)
    axes[0, 0].set_title(original_title, fontsize=font_size)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _zscore(image: np.ndarray) -> np.ndarray:
    std = image.std()
    return ((image - image.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
