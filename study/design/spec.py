"""A study specification: the validated :class:`StudySpec` and its parts.

A spec names the data sets, the scale, the design axes (which shape pretraining and which
fine-tuning), the label fractions, the supervised baseline, the search, the resources per trial and
where results go. Reading one from YAML, with ``--set`` overrides and one-line errors, is
:mod:`study.design.spec_loading`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from study._suggest import did_you_mean
from study.constants import DEFAULT_NSD_TOLERANCE_MM, DEFAULT_SEED, MAX_TRIALS, nsd_tolerances
from study.design import axes as design_axes
from study.design.scale import Scale, Strict
from study.errors import SpecError

BUILTIN_DATASETS = ("mri", "ct")
ALGORITHMS = ("grid", "tpe", "random", "gp")
MAX_SPEC_BYTES = 1 << 20  # a spec is a few lines; a bigger file is a mistake, not a study
MAX_SEED = 2**32 - 1  # the largest seed every consumer (NumPy, Optuna, torch) accepts


class LogUniform(Strict):
    loguniform: tuple[float, float]


class Uniform(Strict):
    uniform: tuple[float, float]


Distribution = LogUniform | Uniform
Axis = list[Any] | LogUniform | Uniform


def bounds(d: Distribution) -> tuple[float, float, bool]:
    """``(low, high, log)`` of a continuous axis."""
    return (*d.loguniform, True) if isinstance(d, LogUniform) else (*d.uniform, False)


def distribution(axis: Axis, extra: list = ()) -> Any:
    """An axis's values as an Optuna distribution: its choices (and ``extra``), or its range."""
    import optuna.distributions as d

    if isinstance(axis, list):
        return d.CategoricalDistribution(list(dict.fromkeys([*axis, *extra])))
    low, high, log = bounds(axis)
    return d.FloatDistribution(low, high, log=log)


def _section_model(section: str) -> type[Strict]:
    """The YAML section of a stage's design axes (``pretraining:`` or ``finetuning:``), from the
    axes declared in :mod:`study.design.axes`: a list of values per axis (a range for a learning rate)."""
    fields: dict[str, Any] = {}
    for a in design_axes.of(section):
        if a.continuous:
            annotation = (Axis | None) if a.scale_default else Axis
            default = None if a.scale_default else list(a.default)
        else:
            annotation, default = list[a.type], list(a.default)
        fields[a.key] = (annotation, Field(default, description=a.description))

    def _values(cls, v: Any, info: ValidationInfo) -> Any:
        axis = design_axes.by_path()[f"{section}.{info.field_name}"]
        for value in v if isinstance(v, list) and not axis.continuous else ():
            problem = axis.problem(value)
            if problem is not None:
                raise ValueError(problem + (did_you_mean(value, axis.choices) if axis.choices else ""))
        return v

    name = f"{section.capitalize()}Axes"
    return create_model(
        name,
        __base__=Strict,
        __doc__=f"The {section} design axes (study.design.axes).",
        __validators__={"_values": field_validator("*")(classmethod(_values))},
        **fields,
    )


PretrainingAxes = _section_model("pretraining")
FinetuningAxes = _section_model("finetuning")


class Baseline(Strict):
    """The supervised baseline: random init, trained on the same labels, at each fine-tuning lr."""

    enabled: bool = True
    lr: Axis | None = Field(None, description="default: the fine-tuning lr axis")

    @model_validator(mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class Search(Strict):
    algorithm: Literal["grid", "tpe", "random", "gp"] = "grid"
    num_samples: int | None = Field(None, ge=1, le=MAX_TRIALS, description="trials to sample; grid: the grid size")
    seed: int = Field(0, ge=0, le=MAX_SEED)


class Resources(Strict):
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0)
    max_concurrent_trials: int | None = Field(None, ge=1)


class Pruning(Strict):
    """Statistical early stopping (``study.execution.pruning``): off unless ``enabled``."""

    enabled: bool = False
    alpha: float = Field(0.05, gt=0, lt=1, description="family-wise level of each rung's Holm-corrected tests")
    rungs: list[float] = Field([0.5], description="pauses, as fractions of finetune_max_epochs")
    min_survivors: int = Field(3, ge=1, description="strategies besides the baseline that are never stopped")

    @field_validator("rungs")
    @classmethod
    def _rungs(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < r < 1 for r in v) or sorted(set(v)) != v:
            raise ValueError(f"{v} must be increasing fractions of the fine-tuning budget in (0, 1)")
        return v


class AnalysisOptions(Strict):
    """How ``study.analyze`` and the report judge the study (``docs/analysis.md``)."""

    pairing: Literal["per_case", "pooled"] = Field(
        "per_case", description="per_case: one pair per test case; pooled: the paper's pairs per case and fraction"
    )
    top_k: int = Field(3, ge=1, description="P(top-k), the ranking's spread under resampling, is for the top k")
    rope: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="region of practical equivalence, +-Dice, of the Bayesian "
        "signed-rank test beside every p (NSD too)",
    )
    rope_mm: float = Field(1.0, ge=0, description="the region of practical equivalence, +-mm, when ranking by HD95")
    nsd_tolerance_mm: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_NSD_TOLERANCE_MM),
        description="NSD tolerance in mm per class ('default': any class not named); a trial's table records "
        "the tolerance it was evaluated with (nsd_tol_mm)",
    )

    @field_validator("nsd_tolerance_mm", mode="before")
    @classmethod
    def _tolerances(cls, v: Any) -> dict[str, float]:
        if not isinstance(v, dict):
            raise ValueError("must map class names (or 'default') to a tolerance in mm, e.g. {meniscus: 0.5}")
        return nsd_tolerances(v)  # the defaults, with the classes named here replaced


class StudySpec(Strict):
    """A validated study: see ``search_spaces/*.yaml`` for annotated examples."""

    name: str
    datasets: list[str] = ["mri", "ct"]
    scale: Scale = Scale()
    pretraining: PretrainingAxes | None = PretrainingAxes()
    finetuning: FinetuningAxes = FinetuningAxes()
    label_fractions: list[float] = [0.05, 0.25, 1.0]
    baseline: Baseline = Baseline()
    search: Search = Search()
    resources: Resources = Resources()
    storage: str = "studies"
    keep_weights: Literal["best", "none"] = Field(
        "best",
        description="what a finished trial keeps besides its record: its fine-tuned weights (best) or "
        "nothing (none); its resume checkpoints are deleted either way",
    )
    tracking_uri: str = "sqlite:///mlflow.db"
    retries: int = Field(2, ge=0)
    seed: int = Field(DEFAULT_SEED, ge=0, le=MAX_SEED)
    split_seed: int = Field(0, ge=0, le=MAX_SEED)
    seeds: list[int] | None = Field(None, description="replicates: every trial once per seed (weights, batches, masks)")
    split_seeds: list[int] | None = Field(None, description="one data split per replicate; default: split_seed for all")
    analysis: AnalysisOptions = AnalysisOptions()
    pruning: Pruning = Pruning()

    @model_validator(mode="before")
    @classmethod
    def _seed_lists(cls, value: Any) -> Any:
        # `seed: [0, 1, 2]` (or --set seed=[0,1,2]) means replicates, as `seeds` does.
        if isinstance(value, dict):
            for one, many in (("seed", "seeds"), ("split_seed", "split_seeds")):
                if isinstance(value.get(one), list):
                    if value.get(many) is not None:
                        raise ValueError(f"give {one} or {many}, not both as lists")
                    value = {**value, many: value[one]}
                    value.pop(one)
        return value

    @field_validator("seeds", "split_seeds")
    @classmethod
    def _seed_values(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must list at least one seed")
        if any(not 0 <= s <= MAX_SEED for s in v):
            raise ValueError(f"seeds must lie in 0..{MAX_SEED}")
        return v

    @field_validator("datasets", "label_fractions")
    @classmethod
    def _nonempty(cls, v: list) -> list:
        if not v:
            raise ValueError("must list at least one value")
        if len(set(map(str, v))) != len(v):
            raise ValueError(f"{v} lists a value twice")
        return v

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        # The study folder is <storage>/<name>: a path here could climb out of storage or overwrite.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", v):
            raise ValueError(
                "a study name is a folder name, not a path: up to 100 letters, digits, '_', '.' "
                "or '-', starting with a letter or digit"
            )
        return v

    @field_validator("datasets", "storage", "tracking_uri")
    @classmethod
    def _printable(cls, v: str | list[str]) -> str | list[str]:
        for text in [v] if isinstance(v, str) else v:
            if not text.strip():
                raise ValueError("must name a folder or location, got an empty string")
            if any(ord(c) < 32 or ord(c) == 127 for c in text):
                raise ValueError("holds a control character (a NUL byte, a newline, ...)")
        return v

    @field_validator("label_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0 < f <= 1:
                raise ValueError(f"{f} is outside (0, 1]")
        return v

    @field_validator("scale")
    @classmethod
    def _widths(cls, s: Scale) -> Scale:
        if not s.widths or any(w % s.groups for w in s.widths):
            raise ValueError(f"widths {list(s.widths)} must all be divisible by groups={s.groups}")
        if s.image_size % 2 ** (len(s.widths) - 1):
            raise ValueError(
                f"image_size={s.image_size} must be divisible by 2^{len(s.widths) - 1} for {len(s.widths)} levels"
            )
        return s

    def replicates(self) -> list[tuple[int, int]]:
        """(seed, split_seed) of each replicate; one without ``seeds``."""
        seeds = self.seeds or [self.seed]
        splits = self.split_seeds or [self.split_seed]
        return list(zip(seeds, splits * len(seeds) if len(splits) == 1 else splits))

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        problems: list[str] = []  # every one at once: a user fixes them in one go
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds {self.seeds} lists a seed twice")
        if self.split_seeds is not None and len(self.split_seeds) not in (1, len(self.seeds or [self.seed])):
            problems.append(
                f"split_seeds has {len(self.split_seeds)} values; give one, or one per seed "
                f"({len(self.seeds or [self.seed])})"
            )
        if self.pruning.enabled and self.search.algorithm != "grid":
            problems.append("pruning needs search.algorithm 'grid': its rungs compare every strategy of a data set")
        if len(self.replicates()) > 1 and self.search.algorithm != "grid":
            problems.append("seeds: replicates need search.algorithm 'grid' (a sampled search draws one seed's trials)")
        if self.pretraining is None and not self.baseline.enabled:
            problems.append("nothing to run: no pretraining axes and the baseline is disabled")
        if self.search.algorithm == "grid" and self.search.num_samples is not None:
            problems.append(
                f"search.num_samples={self.search.num_samples}: a grid runs each of its points once; "
                "num_samples is for tpe, random or gp (drop it, or set search.algorithm)"
            )
        if self.search.algorithm == "grid":
            for name, axis in self.axes().items():
                if not isinstance(axis, list):
                    problems.append(
                        f"{name} is a distribution; search.algorithm 'grid' needs a list (or use tpe/random/gp)"
                    )
        for name, axis in self.axes().items():
            if isinstance(axis, list) and not axis:
                problems.append(f"{name} is empty: list at least one value")
            if not isinstance(axis, list) and not 0 < bounds(axis)[0] < bounds(axis)[1] < 1:
                problems.append(f"{name}: bounds must satisfy 0 < low < high < 1 for a learning rate")
            declared = design_axes.by_path().get(name.replace("baseline.", "finetuning."))
            if declared is not None and declared.continuous and isinstance(axis, list):
                problems += [f"{name}: {p}" for p in map(declared.problem, axis) if p is not None]
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))
        return self

    def axes(self) -> dict[str, Axis]:
        """Every design axis by its dotted name (:mod:`study.design.axes`); an axis the spec leaves null
        takes the scale's value (the learning rates)."""
        out: dict[str, Axis] = {}
        for section in ("pretraining", "finetuning"):
            values = getattr(self, section)
            for a in design_axes.of(section) if values is not None else ():
                v = getattr(values, a.key)
                out[a.path] = [getattr(self.scale, a.scale_default)] if v is None and a.scale_default else v
        if self.baseline.enabled and self.baseline.lr is not None:
            out["baseline.lr"] = self.baseline.lr
        return out

    def varied_axes(self) -> dict[str, Axis]:
        """The design axes that take more than one value (a continuous range always does): what a
        view of the study shows as its parameters, and what the dry run counts."""
        return {
            name: axis
            for name, axis in self.axes().items()
            if not isinstance(axis, list) or len({str(v) for v in axis}) > 1
        }

    def storage_dir(self) -> Path:
        try:
            return Path(self.storage).expanduser().resolve() / self.name
        except (RuntimeError, OSError) as exc:  # an unknown ~user, a symlink loop
            raise SpecError(f"storage: {self.storage}: {exc}") from None
