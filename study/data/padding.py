"""How an image of any size meets a U-Net that needs multiples of ``2 ** (levels - 1)``.

Each of the ``levels - 1`` poolings halves H and W, so the network sees the slice padded up to the
next multiple, split evenly before and after (the odd pixel after), as MONAI's ``DivisiblePad``
does by default; its outputs are cropped back to the slice's own H x W before any loss or metric
sees them (``study.train``), so padded pixels never count. Only the geometry lives here (no
torch), so ``python -m study.data check`` and a dry run can say what will happen.
"""

from __future__ import annotations

from dataclasses import dataclass

from study.errors import SpecError


@dataclass(frozen=True)
class NetworkPadding:
    """The padding an ``height x width`` slice needs for a U-Net of ``levels`` levels."""

    height: int
    width: int
    levels: int

    @property
    def multiple(self) -> int:
        return 2 ** (self.levels - 1)

    @property
    def padded(self) -> tuple[int, int]:
        m = self.multiple
        return -(-self.height // m) * m, -(-self.width // m) * m

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) in pixels."""
        dh, dw = self.padded[0] - self.height, self.padded[1] - self.width
        return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2

    @property
    def needed(self) -> bool:
        return any(self.pads)

    def check(self, mode: str) -> None:
        """Refuse a mode the slice cannot be padded with: ``mode`` is the spec's ``scale.pad_mode``,
        already one of the pad modes (``study.constants.check_pad_mode``); this checks the geometry."""
        # A reflection mirrors the slice about its border pixel, so it needs more pixels than it adds.
        top, bottom, left, right = self.pads
        if mode == "reflect" and (max(top, bottom) >= self.height or max(left, right) >= self.width):
            raise SpecError(
                f"scale.pad_mode=reflect: {self.height} x {self.width} px is too small to be "
                f"reflected up to {self.padded[0]} x {self.padded[1]}; use constant or replicate"
            )

    def describe(self, mode: str) -> str:
        if not self.needed:
            return f"{self.height} x {self.width} px, no padding for a U-Net of {self.levels} levels"
        return (
            f"{self.height} x {self.width} px padded to {self.padded[0]} x {self.padded[1]} for a U-Net of "
            f"{self.levels} levels ({mode})"
        )
