"""The study's design axes, each declared once.

A design axis is a choice a study varies: the pretext task, the patch size, the fine-tuning
learning rate. Its :class:`DesignAxis` says all the orchestration needs: its section and key in the
YAML (and the field of the trial's point), the values it takes and how they are checked, its part
of a strategy's name and of an MLflow run's name, and its flat name, which is at once the record
field, the MLflow parameter, the Optuna view's parameter and the per-case table's column. The spec's
sections, the points and their ids, the records, MLflow, the Optuna search and view, the effects
table and ``python -m study.train``'s flags all derive from :data:`AXES`: adding an axis is its
declaration here plus its science (the field of ``PretrainConfig`` or ``FinetuneConfig`` it sets).

Axes of one's own (a lab's, a test's) live in modules named by ``SSL_STUDY_AXES`` (comma-separated
module names, each calling :func:`declare` when imported). This module imports them, so every
process of a study sees the same axes, Ray's workers too, when the variable is set before the
study starts.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from study.constants import PAPER_IMAGE_SIZE, SAMPLERS, SCHEDULES, SCOPES, TASKS

Section = Literal["pretraining", "finetuning"]
EXTRA_AXES_ENV = "SSL_STUDY_AXES"
ALWAYS_IN_ID = object()  # an axis's id_default when every value enters trial ids
TUNED = "tuned"  # an axis's baseline: the baseline trains at each of its values (``baseline.<key>`` replaces them)


@dataclass(frozen=True, kw_only=True)
class DesignAxis:
    section: Section
    key: str  # its key under the section in YAML, and the field of the trial's point
    type: type  # str, int or float: what each value is
    default: tuple  # the spec's values when the section leaves the key out
    description: str
    title: str  # how the analysis and the report name it: "patch size K"
    flat: str = ""  # record field, MLflow param, Optuna view parameter, table column (default: key)
    choices: tuple | None = None  # the allowed values of a categorical axis
    check: Callable[[Any], str | None] | None = None  # the problem with one value, or None
    continuous: bool = False  # a learning rate: a range ({loguniform: [a, b]}) may replace the list
    scale_default: str | None = None  # null in the spec: the scale's field of this name
    optional: bool = False  # a value may be null, which means null_means
    null_means: str = ""  # what null stands for, as the report shows it: "the learning rate"
    stages: Callable[[Any], int] | None = None  # fine-tuning runs one value makes (the schedule's; default 1)
    baseline: Any = None  # what the supervised baseline's record and point hold
    label: Callable[[Any], str] | None = None  # its part of a strategy's name ('' leaves it out); None: none
    run_label: Callable[[Any], str] | None = None  # its part of an MLflow run's name; None: none
    canonical: Callable[[Any, dict], Any] | None = None  # its value as the section's other values make it mean
    effect: bool = False  # a row of the design-effects table
    in_unit: bool = False  # not in the strategy's name, but tells the analysis's units apart (a learning rate)
    config: str | None = None  # the keyword of PretrainConfig / FinetuneConfig it sets (default: key)
    cli_help: str = ""
    id_default: Any = field(default=ALWAYS_IN_ID, repr=False)  # left out of ids while it holds this value
    science: tuple[str, ...] = ()  # the paths under study/ that read it by name (the house test's allowance)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flat", self.flat or self.key)
        object.__setattr__(self, "config", self.config or self.key)

    @property
    def path(self) -> str:
        """``pretraining.patch_size``: the dotted name of the spec field, the sampled search's parameter."""
        return f"{self.section}.{self.key}"

    @property
    def flag(self) -> str:
        """``--patch-size``: its flag of ``python -m study.train``."""
        return "--" + self.flat.replace("_", "-")

    def problem(self, value: Any) -> str | None:
        """Why one value of the axis is refused (None: it is fine)."""
        if value is None:
            return None if self.optional else "null is not a value of this axis"
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(str, self.choices))}"
        return self.check(value) if self.check else None

    def typed(self, value: Any) -> Any:
        return None if value is None else self.type(value)

    def in_id(self, value: Any) -> bool:
        """Whether the value enters trial ids and pretraining keys: an axis added after studies
        ran leaves them unchanged while it holds its old implicit value."""
        return self.id_default is ALWAYS_IN_ID or value != self.id_default


def _patch(k: int) -> str | None:
    if not 1 <= k <= PAPER_IMAGE_SIZE // 2:
        return f"{k} is not a patch size in 1..{PAPER_IMAGE_SIZE // 2} (pixels of a 512-px image)"
    return None


def _multiple(e: float) -> str | None:
    return None if e > 0 and math.isfinite(e) else f"{e} must be a positive multiple of the training set"


def _learning_rate(lr: Any) -> str | None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1:
        return f"{lr} is not a learning rate in (0, 1)"
    return None


def canonical_unfrozen_lr(schedule: str, lr: float, unfrozen_lr: float | None) -> float | None:
    """What the unfrozen learning rate means in context: nothing under ``at_once`` (nothing is
    unfrozen), and ``None`` (the learning rate) when it equals the learning rate, so configurations
    that train alike get one id."""
    if schedule != "freeze_then_unfreeze" or unfrozen_lr is None or float(unfrozen_lr) == float(lr):
        return None
    return float(unfrozen_lr)


_SHORT_SAMPLERS = {"poisson_disc": "poisson", "poisson_disc_spread": "poisson-spread"}
_SHORT_SCOPES = {"encoder": "", "encoder+decoder": "enc+dec"}
_SHORT_SCHEDULES = {"at_once": "", "freeze_then_unfreeze": "freeze"}

AXES: list[DesignAxis] = [
    DesignAxis(
        section="pretraining",
        key="task",
        type=str,
        default=("restoration",),
        choices=TASKS,
        baseline="none",
        title="pretext task",
        label=str,
        run_label=str,
        effect=True,
        description="the pretext task: context prediction or context restoration",
        cli_help="none: the supervised baseline",
        science=("pretext", "train/_pretrain.py", "report/_figures.py"),
    ),
    DesignAxis(
        section="pretraining",
        key="patch_size",
        type=int,
        default=(32,),
        check=_patch,
        title="patch size K",
        label=lambda k: f"K{k}",
        run_label=lambda k: f"K{k}",
        effect=True,
        description="K in pixels of a 512 x 512 image",
        cli_help="K in pixels of a 512-px image (8, 16, 32, 64)",
        science=("pretext", "train/_pretrain.py", "data/phantoms", "report/_figures.py"),
    ),
    DesignAxis(
        section="pretraining",
        key="sampler",
        type=str,
        default=("poisson_disc",),
        choices=SAMPLERS,
        title="sampler",
        label=str,
        run_label=lambda s: _SHORT_SAMPLERS.get(s, s),
        effect=True,
        description="how patch locations are sampled",
        science=("pretext", "train/_pretrain.py", "report/_figures.py"),
    ),
    DesignAxis(
        section="pretraining",
        key="extent",
        type=float,
        default=(1.0,),
        check=_multiple,
        title="extent",
        label=lambda e: "" if e == 1 else f"x{e:g}",
        run_label=lambda e: "" if e == 1 else f"x{e:g}",
        effect=True,
        description="pretraining data in multiples of the training set",
        cli_help="pretraining data, multiples of the training set",
        science=(
            "train/_pretrain.py",
            "analysis/_scaling.py",
            "analysis/_analysis.py",
            "report/_figures.py",
            "preflight/workload.py",
            "run.py",
        ),
    ),
    DesignAxis(
        section="pretraining",
        key="lr",
        flat="pretrain_lr",
        type=float,
        default=(None,),
        check=_learning_rate,
        continuous=True,
        scale_default="pretrain_lr",
        title="pretraining lr",
        description="null: the scale's pretrain_lr (laptop 0.01, paper 1e-3)",
        cli_help="initial pretraining learning rate",
        science=("train/_pretrain.py",),
    ),
    DesignAxis(
        section="finetuning",
        key="scope",
        type=str,
        default=("encoder",),
        choices=tuple(s for s in SCOPES if s != "none"),
        baseline="none",
        title="transfer scope",
        label=str,
        run_label=lambda s: _SHORT_SCOPES.get(s, s),
        effect=True,
        description="the weights transferred",
        cli_help="transfer scope",
        science=("model", "train/_finetune.py", "analysis/_transfer.py", "report/_figures.py"),
    ),
    DesignAxis(
        section="finetuning",
        key="schedule",
        type=str,
        default=("at_once",),
        choices=SCHEDULES,
        baseline="at_once",
        title="schedule",
        label=str,
        run_label=lambda s: _SHORT_SCHEDULES.get(s, s),
        stages=lambda s: 2 if s == "freeze_then_unfreeze" else 1,
        effect=True,
        description="fine-tune at once, or frozen first then unfrozen",
        science=("model", "train/_finetune.py", "analysis/_transfer.py", "report/_figures.py"),
    ),
    DesignAxis(
        section="finetuning",
        key="lr",
        type=float,
        default=(None,),
        check=_learning_rate,
        continuous=True,
        scale_default="finetune_lr",
        baseline=TUNED,
        in_unit=True,
        title="fine-tuning lr",
        effect=True,
        description="null: the scale's finetune_lr (laptop 0.01, paper 1e-3)",
        cli_help="initial fine-tuning learning rate",
        science=("train/_finetune.py",),
    ),
    DesignAxis(
        section="finetuning",
        key="unfrozen_lr",
        type=float,
        default=(None,),
        check=_learning_rate,
        continuous=True,
        optional=True,
        null_means="the learning rate",
        title="lr after unfreezing",
        in_unit=True,
        canonical=lambda v, values: canonical_unfrozen_lr(values["schedule"], values["lr"], v),
        description="initial lr after unfreezing; null: same as lr",
        cli_help="initial learning rate after unfreezing (default: --lr)",
        science=("train/_finetune.py", "analysis/_transfer.py", "report/_figures.py"),
    ),
]


# The parameter value of a sampled search that means the supervised baseline: no pretext task.
BASELINE_CHOICE = ("pretraining.task", "none")


def declare(axis: DesignAxis) -> DesignAxis:
    """Add an axis (from a module named in ``SSL_STUDY_AXES``, imported before any spec is read)."""
    if any(a.path == axis.path or a.flat == axis.flat for a in AXES):
        raise ValueError(f"design axis {axis.path} ({axis.flat}) is declared twice")
    AXES.append(axis)
    return axis


def of(section: Section) -> list[DesignAxis]:
    return [a for a in AXES if a.section == section]


def by_flat() -> dict[str, DesignAxis]:
    return {a.flat: a for a in AXES}


def by_path() -> dict[str, DesignAxis]:
    return {a.path: a for a in AXES}


def tuned_by_baseline() -> list[DesignAxis]:
    """The axes the baseline is trained at each value of (the fine-tuning lr)."""
    return [a for a in of("finetuning") if a.baseline == TUNED]


def _given(a: DesignAxis, params: dict[str, Any]) -> Any:
    if a.path in params:
        return a.typed(params[a.path])
    if a.optional:
        return None
    if a.id_default is not ALWAYS_IN_ID:
        return a.id_default
    raise KeyError(a.path)


def canonical(params: dict[str, Any], section: Section) -> dict[str, Any]:
    """A section's values by key from parameters by dotted name, typed, then made canonical."""
    values = {a.key: _given(a, params) for a in of(section)}
    for a in of(section):
        if a.canonical is not None:
            values[a.key] = a.canonical(values[a.key], values)
    return values


def baseline_values(params: dict[str, Any]) -> dict[str, Any]:
    """The supervised baseline's fine-tuning values: each axis's baseline, the tuned ones as given
    (``baseline.<key>`` before the axis's own name)."""
    return {
        a.key: a.typed(params.get(f"baseline.{a.key}", params[a.path])) if a.baseline == TUNED else a.baseline
        for a in of("finetuning")
    }


def stages(values: dict[str, Any]) -> int:
    """The fine-tuning runs a trial makes, from its fine-tuning values by key."""
    return max([1, *(a.stages(values[a.key]) for a in of("finetuning") if a.stages)])


def finetuning_stages(axes: dict[str, Any]) -> int:
    """The most fine-tuning runs one trial of a spec's axes (:meth:`StudySpec.axes`) makes."""
    return max(
        [
            1,
            *(
                a.stages(v)
                for a in of("finetuning")
                if a.stages and isinstance(axes.get(a.path), list)
                for v in axes[a.path]
            ),
        ]
    )


def unit_columns() -> tuple[str, ...]:
    """The flat names that, with the strategy, tell the analysis's units apart: ``lr``, ``unfrozen_lr``."""
    return tuple(a.flat for a in AXES if a.in_unit)


def unit_name(strategy: str, values: dict[str, Any]) -> str:
    """A unit's label, ``<strategy> lr=<lr>[ unfrozen_lr=<lr>]`` (values by flat name, None left
    out): what the analysis ranks and what pruning judges and stops."""
    return strategy + "".join(f" {k}={v:g}" for k, v in values.items() if v is not None)


def default_params(scale: Any) -> dict[str, Any]:
    """Each axis's first default by dotted name, the scale's value where the spec would leave it to
    the scale: the trial ``python -m study.train`` runs with no flags (benchmarks time that trial)."""
    return {a.path: getattr(scale, a.scale_default) if a.scale_default else a.default[0] for a in AXES}


def example_values(section: Section) -> dict[str, Any]:
    """A valid value of each axis of a section, by key (its first default; a mid-range learning
    rate where the scale gives it): for configs shown, not run."""
    return {a.key: 0.5 if a.default[0] is None and a.scale_default else a.default[0] for a in of(section)}


def strategy_name(values: dict[str, Any], section: Section) -> str:
    """A section's part of the strategy name: ``restoration/K32/poisson_disc`` from the point's values."""
    parts = (a.label(values[a.key]) for a in of(section) if a.label is not None)
    return "/".join(p for p in parts if p)


def run_name(values: dict[str, Any], section: Section) -> str:
    """A section's part of an MLflow run name: ``restoration K32 poisson``."""
    parts = (a.run_label(values[a.key]) for a in of(section) if a.run_label is not None)
    return " ".join(p for p in parts if p)


for _module in filter(None, (m.strip() for m in os.environ.get(EXTRA_AXES_ENV, "").split(","))):
    importlib.import_module(_module)
