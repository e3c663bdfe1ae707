"""Moving pretrained weights into a segmentation U-Net, and freezing them.

Dominic et al. 2023 (Sec. 2.4, design choices #1 and #2) compare transferring the encoder only with
transferring encoder and decoder, and fine-tuning everything at once with freezing the transferred
weights, training to convergence, then unfreezing and training everything again. This module holds
the vocabulary of those choices and the primitives; running a schedule is the training code's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from study._suggest import unknown_choice
from study.constants import SCHEDULES, SCOPES, Schedule, TransferScope
from study.errors import SpecError
from study.model._unet import GROUPS, group_of, parameter_groups, unwrap

# The head is absent from every scope: its output channels differ between the tasks.
_SCOPE_GROUPS: dict[str, tuple[str, ...]] = {
    "none": (),
    "encoder": ("encoder",),
    "encoder+decoder": ("encoder", "decoder"),
}
_COMPILED_PREFIX = "_orig_mod."


def _look_up(field: str, value: object, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    raise SpecError(unknown_choice(field, value, choices))


def check_scope(scope: object) -> TransferScope:
    """Return ``scope`` if it is a valid :data:`TransferScope`, else raise SpecError naming the closest."""
    return _look_up("transfer scope", scope, SCOPES)  # type: ignore[return-value]


def check_schedule(schedule: object) -> Schedule:
    """Return ``schedule`` if it is a valid :data:`Schedule`, else raise SpecError naming the closest."""
    return _look_up("fine-tuning schedule", schedule, SCHEDULES)  # type: ignore[return-value]


def scope_groups(scope: TransferScope) -> tuple[str, ...]:
    """Parameter groups a scope transfers, and that ``freeze_then_unfreeze`` freezes first."""
    return _SCOPE_GROUPS[check_scope(scope)]


@dataclass(frozen=True)
class TransferPlan:
    """Design choices #1 and #2 of the paper, validated together.

    ``freeze_then_unfreeze`` with scope ``none`` is refused: there would be nothing to freeze, and
    the run would silently be the supervised baseline trained twice.
    """

    scope: TransferScope = "encoder"
    schedule: Schedule = "at_once"

    def __post_init__(self) -> None:
        check_scope(self.scope)
        check_schedule(self.schedule)
        if self.scope == "none" and self.schedule == "freeze_then_unfreeze":
            raise SpecError(
                "fine-tuning schedule 'freeze_then_unfreeze' needs transferred weights to freeze; "
                "with transfer scope 'none' use schedule 'at_once'"
            )

    @property
    def frozen_groups(self) -> tuple[str, ...]:
        """Groups to freeze in the first run of the schedule (empty for ``at_once``)."""
        return scope_groups(self.scope) if self.schedule == "freeze_then_unfreeze" else ()


@dataclass(frozen=True)
class TransferReport:
    """What :func:`transfer_weights` did, tensor by tensor.

    ``copied`` lists the target's state-dict keys now equal to the source's; ``skipped`` pairs every
    other key of the target with the reason it kept its own value.
    """

    scope: TransferScope
    copied: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]

    def summary(self) -> str:
        """One line for a log."""
        return f"transfer scope {self.scope!r}: copied {len(self.copied)} tensors, kept {len(self.skipped)}"


def transfer_weights(
    source_state_dict: Mapping[str, Tensor], target: nn.Module, scope: TransferScope
) -> TransferReport:
    """Copy the tensors of the groups in ``scope`` from a pretrained UNet's state dict into ``target``.

    Every target tensor of those groups must be present in the source with the same shape, and the
    source must hold no extra tensor in them (a deeper or wider pretrained model is a mistake in the
    study, not something to truncate): otherwise SpecError names the tensor and both shapes, and
    ``target`` is left untouched. Keys saved from a ``torch.compile``-d model (``_orig_mod.`` prefix)
    are accepted. Values are copied into the existing parameters (same device, dtype and
    ``requires_grad``); the source is never aliased.
    """
    scope = check_scope(scope)
    model = unwrap(target)
    groups = _SCOPE_GROUPS[scope]
    source = {k.removeprefix(_COMPILED_PREFIX): v for k, v in source_state_dict.items()}
    target_state = model.state_dict()

    plan: list[tuple[str, Tensor]] = []
    skipped: list[tuple[str, str]] = []
    for name, tensor in target_state.items():
        group = group_of(name)
        if group not in groups:
            reason = "the head is never transferred" if group == "head" else f"{group} is outside scope {scope!r}"
            skipped.append((name, reason))
            continue
        if name not in source:
            raise SpecError(f"pretrained weights lack tensor {name!r} (target shape {tuple(tensor.shape)})")
        if source[name].shape != tensor.shape:
            raise SpecError(
                f"pretrained tensor {name!r} has shape {tuple(source[name].shape)}, "
                f"the target expects {tuple(tensor.shape)}; do the two UNetConfigs match?"
            )
        plan.append((name, source[name]))
    extra = sorted(k for k in source if k not in target_state and _group_or_none(k) in groups)
    if extra:
        raise SpecError(
            f"pretrained weights hold {len(extra)} {'/'.join(groups)} tensors the target lacks, e.g. {extra[0]!r}"
        )

    # Checked everything first, so a failure above leaves the target as it was.
    with torch.no_grad():
        for name, value in plan:
            target_state[name].copy_(value)
    return TransferReport(scope=scope, copied=tuple(n for n, _ in plan), skipped=tuple(skipped))


def _group_or_none(name: str) -> str | None:
    try:
        return group_of(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class FreezeReport:
    """Parameter names after :func:`freeze` or :func:`unfreeze`: which get no gradient, which do."""

    frozen: tuple[str, ...]
    trainable: tuple[str, ...]


def freeze(model: nn.Module, groups: Iterable[str]) -> FreezeReport:
    """Stop gradients to every parameter of ``groups`` (``requires_grad = False``).

    A group is frozen whole: its 3x3 weights, biases, transposed convolutions and GroupNorm affine
    weights and biases. Plain GroupNorm has no running statistics, and a ``RunningGroupNorm`` whose
    weight is frozen stops updating its own, so nothing else can drift while frozen and
    ``train()`` / ``eval()`` need not change. Frozen parameters get ``grad is None`` after
    backward; Adam skips such parameters, so an optimiser built over all parameters leaves them as
    they are, though building it over the trainable ones only saves its state memory. Parameters
    outside ``groups`` are made trainable, so the report describes the whole model.
    """
    wanted = tuple(groups)
    for g in wanted:
        _look_up("parameter group", g, GROUPS)
    names = parameter_groups(model)
    frozen = {n for g in wanted for n in names[g]}
    for name, param in unwrap(model).named_parameters():
        param.requires_grad_(name not in frozen)
    return _report(model)


def unfreeze(model: nn.Module) -> FreezeReport:
    """Make every parameter trainable again (the second run of ``freeze_then_unfreeze``)."""
    for param in unwrap(model).parameters():
        param.requires_grad_(True)
    return _report(model)


def _report(model: nn.Module) -> FreezeReport:
    named = list(unwrap(model).named_parameters())
    return FreezeReport(
        frozen=tuple(n for n, p in named if not p.requires_grad),
        trainable=tuple(n for n, p in named if p.requires_grad),
    )
