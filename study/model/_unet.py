"""The 2D U-Net of Dominic et al. 2023 (Sec. 2.3, Fig. 2) and its three parameter groups.

Submodules are named by level so that a parameter's group is a prefix of its name, as MONAI's
``BasicUNet`` names ``conv_0``, ``down_1`` ... ``upcat_1``, ``final_conv``::

    enc_1 ... enc_{L-1}   encoder levels, full resolution first          } group "encoder"
    bottleneck            the deepest level, after the last pooling      }
    dec_{L-1} ... dec_1   decoder levels, dec_k back at enc_k's size       group "decoder"
    head                  the final convolution (the paper's "post-processing" layer), group "head"

Transfer learning moves whole groups (``study.model.transfer_weights``); the head is never moved
because its channels differ between inpainting (C_in) and segmentation (4).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from study.model._config import UNetConfig
from study.model._layers import DecoderLevel, level_block

GROUPS: tuple[str, ...] = ("encoder", "decoder", "head")


class UNet(nn.Module):
    """2D U-Net: GroupNorm, weight-standardised 3x3 convolutions, He-normal init, zero biases.

    Input (B, C_in, H, W) with H and W multiples of ``config.size_multiple``; output
    (B, out_channels, H, W) with no activation: an image for inpainting, logits for segmentation
    (the sigmoid is applied by the Dice loss and by the evaluation, Sec. 2.3 and Appendix A.1).

    Args:
        config: the architecture.
        seed: if given, the initial weights depend on this seed alone (a private generator is used,
            the global torch RNG is left as it was); if None, the global torch RNG draws them.
    """

    def __init__(self, config: UNetConfig, seed: int | None = None) -> None:
        super().__init__()
        self.config = config
        # Layer constructors draw a default init from the global RNG; a seeded model must neither
        # depend on nor advance it, so those draws happen on a forked copy.
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            self._build(config)
        self.reset_parameters(seed)

    def _build(self, config: UNetConfig) -> None:
        w = config.widths
        self.pool = nn.MaxPool2d(2)
        self.encoder_names = tuple(f"enc_{i}" for i in range(1, len(w)))
        self.decoder_names = tuple(f"dec_{i}" for i in range(len(w) - 1, 0, -1))  # deepest first
        for i, name in enumerate(self.encoder_names):
            self.add_module(name, level_block(config.in_channels if i == 0 else w[i - 1], w[i], config))
        self.bottleneck = level_block(w[-2], w[-1], config)
        for name in self.decoder_names:
            i = int(name.removeprefix("dec_"))  # dec_i works at enc_i's resolution and width
            self.add_module(name, DecoderLevel(w[i], w[i - 1], config))
        k = config.head_kernel
        self.head = nn.Conv2d(w[0], config.out_channels, k, padding=k // 2)

    def reset_parameters(self, seed: int | None = None) -> None:
        """He-normal weights (fan_in, ReLU gain: std = sqrt(2 / fan_in)), zero biases, GroupNorm 1 / 0.

        He et al. 2015, as the paper's Sec. 2.3 and Keras' ``he_normal`` in the authors' code. Keras
        draws from a normal truncated at 2 std (older versions without restoring the std, which then
        comes out about 12 % small); PyTorch's ``kaiming_normal_`` is untruncated. A weight-standardised
        convolution's output does not depend on its weight's scale, only its effective step size
        does. For a transposed convolution fan_in is C_out * k * k in both frameworks.
        """
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, out_channels, H, W), linear output (image or logits)."""
        self._check_input(x)
        skips = []
        for i, name in enumerate(self.encoder_names):
            x = getattr(self, name)(x if i == 0 else self.pool(x))  # (B, w_i, H / 2^i, W / 2^i)
            skips.append(x)
        x = self.bottleneck(self.pool(x))  # (B, w_last, H / 2^(L-1), W / 2^(L-1))
        for name, skip in zip(self.decoder_names, reversed(skips)):
            x = getattr(self, name)(x, skip)  # back up one level, (B, w_i, H / 2^i, W / 2^i)
        return self.head(x)  # (B, out_channels, H, W)

    def _check_input(self, x: Tensor) -> None:
        # Checked here because a wrong size otherwise fails deep inside torch.cat with a shape
        # message that names neither the image size nor the depth.
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"UNet expects (B, {self.config.in_channels}, H, W) input, got shape {tuple(x.shape)}")
        self.config.check_input_size(int(x.shape[-2]), int(x.shape[-1]))


def group_of(name: str) -> str:
    """The group ("encoder", "decoder" or "head") of a UNet parameter or state-dict key."""
    top = name.split(".", 1)[0]
    if top.startswith("enc_") or top == "bottleneck":
        return "encoder"
    if top.startswith("dec_"):
        return "decoder"
    if top == "head":
        return "head"
    raise ValueError(f"{name!r} is not a UNet parameter name (expected enc_*, bottleneck, dec_* or head)")


def unwrap(model: nn.Module) -> UNet:
    """The UNet itself, also when it was wrapped by ``torch.compile`` (whose keys gain ``_orig_mod.``)."""
    inner = getattr(model, "_orig_mod", model)
    if not isinstance(inner, UNet):
        raise TypeError(f"expected a study.model.UNet, got {type(model).__name__}")
    return inner


def parameter_groups(model: nn.Module) -> dict[str, list[str]]:
    """Parameter names per group, in ``named_parameters`` order: {"encoder": [...], "decoder": [...],
    "head": [...]}. The three lists partition the model's parameters; GroupNorm affine parameters
    belong to the group of their level, and so do the running statistics of a
    ``norm_running_stats`` model (buffers, not listed here; ``group_of`` names their group and
    ``transfer_weights`` moves them with it)."""
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    for name, _ in unwrap(model).named_parameters():
        groups[group_of(name)].append(name)
    return groups
