"""The 2D U-Net of Dominic et al. 2023 and the transfer of its pretrained weights.

``UNet(UNetConfig(...))`` builds the model; ``parameter_groups`` names its encoder, decoder and head;
``transfer_weights``, ``freeze`` and ``unfreeze`` implement the transfer design choices.
"""

from __future__ import annotations

from study.model._config import BLOCKS, PAPER_WIDTHS, UNetConfig
from study.model._flops import unet_macs
from study.model._layers import WSConv2d
from study.model._transfer import (
    SCHEDULES,
    SCOPES,
    FreezeReport,
    Schedule,
    TransferPlan,
    TransferReport,
    TransferScope,
    check_schedule,
    check_scope,
    freeze,
    scope_groups,
    transfer_weights,
    unfreeze,
)
from study.model._unet import GROUPS, UNet, group_of, parameter_groups

__all__ = [
    "BLOCKS",
    "GROUPS",
    "PAPER_WIDTHS",
    "SCHEDULES",
    "SCOPES",
    "FreezeReport",
    "Schedule",
    "TransferPlan",
    "TransferReport",
    "TransferScope",
    "UNet",
    "UNetConfig",
    "WSConv2d",
    "check_schedule",
    "check_scope",
    "freeze",
    "group_of",
    "parameter_groups",
    "scope_groups",
    "transfer_weights",
    "unet_macs",
    "unfreeze",
]
