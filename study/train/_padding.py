"""The network's view of a batch of any size: padded on the way in, cropped on the way out.

Padding happens here, around each call of the model, rather than in the data loader: corruption
masks are drawn on the slice's own grid (patches lie inside the image, a quarter of *its* area) and
every loss and metric compares outputs with targets on that grid, so padded pixels are never
corrupted, never scored and never counted (docs/science.md §3).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from study.data.padding import NetworkPadding
from study.model._unet import unwrap
from study.train._loop import TrainSettings


def network_forward(model: nn.Module, x: Tensor, settings: TrainSettings) -> Tensor:
    """``model(x)`` for a (B, C, H, W) batch of any H, W: padded to the U-Net's multiple with
    ``settings.pad_mode``, the output cropped back to (B, C_out, H, W)."""
    height, width = int(x.shape[-2]), int(x.shape[-1])
    padding = NetworkPadding(height, width, unwrap(model).config.levels)
    if not padding.needed:
        return model(x)  # the very same call as without padding: bit-identical where none is needed
    top, bottom, left, right = padding.pads
    # settings.to_device restores channels_last on CUDA, which F.pad does not keep.
    padded = settings.to_device(F.pad(x, (left, right, top, bottom), mode=settings.pad_mode))
    return model(padded)[..., top : top + height, left : left + width]
