"""The 2D U-Net of Dominic et al. 2023 and the transfer of its pretrained weights.

``UNet(UNetConfig(...))`` builds the model; ``parameter_groups`` names its encoder, decoder and head;
``transfer_weights``, ``freeze`` and ``unfreeze`` implement the transfer design choices.
"""

from __future__ import annotations

from study.model._config import ARCHITECTURES, BLOCKS, PAPER_WIDTHS, Architecture, UNetConfig
from study.model._flops import StateSize, unet_macs, unet_state_size
from study.model._layers import RunningGroupNorm, WSConv2d
from study.model._memory import TrainingMemory, activation_bytes, training_memory
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
    "ARCHITECTURES",
    "BLOCKS",
    "GROUPS",
    "PAPER_WIDTHS",
    "Architecture",
    "RunningGroupNorm",
    "SCHEDULES",
    "SCOPES",
    "StateSize",
    "FreezeReport",
    "Schedule",
    "TransferPlan",
    "TransferReport",
    "TrainingMemory",
    "TransferScope",
    "UNet",
    "UNetConfig",
    "WSConv2d",
    "check_schedule",
    "activation_bytes",
    "check_scope",
    "freeze",
    "group_of",
    "parameter_groups",
    "scope_groups",
    "training_memory",
    "transfer_weights",
    "unet_macs",
    "unet_state_size",
    "unfreeze",
]
