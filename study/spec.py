"""A study specification: the validated :class:`StudySpec` and its parts.

A spec names the data sets, the scale, the design axes (which shape pretraining and which
fine-tuning), the label fractions, the supervised baseline, the search, the resources per trial and
where results go. Reading one from YAML, with ``--set`` overrides and one-line errors, is
:mod:`study.spec_loading`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from study.constants import DEFAULT_NSD_TOLERANCE_MM, nsd_tolerances
from study.constants import DEFAULT_SEED, MAX_TRIALS, PAPER_IMAGE_SIZE, SAMPLERS, SCHEDULES, SCOPES, TASKS
from study._suggest import did_you_mean
from study.errors import SpecError
from study.scale import Scale, Strict

BUILTIN_DATASETS = ("mri", "ct")
ALGORITHMS = ("grid", "tpe", "random", "gp")
MAX_SPEC_BYTES = 1 << 20  # a spec is a few lines; a bigger file is a mistake, not a study
MAX_SEED = 2**32 - 1  # the largest seed every consumer (NumPy, Optuna, torch) accepts



class LogUniform(Strict):
    loguniform: tuple[float, float]


class Uniform(Strict):
    uniform: tuple[float, float]


Distribution = Union[LogUniform, Uniform]
Axis = Union[list[Any], LogUniform, Uniform]


def bounds(d: Distribution) -> tuple[float, float, bool]:
    """``(low, high, log)`` of a continuous axis."""
    return (*d.loguniform, True) if isinstance(d, LogUniform) else (*d.uniform, False)


class PretrainingAxes(Strict):
    task: list[str] = ["restoration"]
    patch_size: list[int] = Field([32], description="K in pixels of a 512 x 512 image")
    sampler: list[str] = ["poisson_disc"]
    extent: list[float] = Field([1.0], description="pretraining data in multiples of the training set")
    lr: Axis | None = Field(None, description="null: the scale's pretrain_lr (laptop 0.01, paper 1e-3)")

    @field_validator("task")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        return _members(v, TASKS)

    @field_validator("sampler")
    @classmethod
    def _samplers(cls, v: list[str]) -> list[str]:
        return _members(v, SAMPLERS)

    @field_validator("patch_size")
    @classmethod
    def _patches(cls, v: list[int]) -> list[int]:
        for k in v:
            if not 1 <= k <= PAPER_IMAGE_SIZE // 2:
                raise ValueError(f"{k} is not a patch size in 1..{PAPER_IMAGE_SIZE // 2} (pixels of a 512-px image)")
        return v

    @field_validator("extent")
    @classmethod
    def _extents(cls, v: list[float]) -> list[float]:
        if any(not (e > 0 and math.isfinite(e)) for e in v):
            raise ValueError(f"{v} must be positive multiples of the training set")
        return v


class FinetuningAxes(Strict):
    scope: list[str] = ["encoder"]
    schedule: list[str] = ["at_once"]
    lr: Axis | None = Field(None, description="null: the scale's finetune_lr (laptop 0.01, paper 1e-3)")
    unfrozen_lr: Axis = Field([None], description="initial lr after unfreezing; null: same as lr")

    @field_validator("scope")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        return _members(v, tuple(s for s in SCOPES if s != "none"))

    @field_validator("schedule")
    @classmethod
    def _schedules(cls, v: list[str]) -> list[str]:
        return _members(v, SCHEDULES)


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
    """Statistical early stopping (``study.pruning``): off unless ``enabled``."""

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
        "per_case", description="per_case: one pair per test case; pooled: the paper's pairs per case and fraction")
    top_k: int = Field(3, ge=1, description="P(top-k), the ranking's spread under resampling, is for the top k")
    rope: float = Field(0.01, ge=0, lt=1, description="region of practical equivalence, +-Dice, of the Bayesian "
                        "signed-rank test beside every p (NSD too)")
    rope_mm: float = Field(1.0, ge=0, description="the region of practical equivalence, +-mm, when ranking by HD95")
    nsd_tolerance_mm: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_NSD_TOLERANCE_MM),
        description="NSD tolerance in mm per class ('default': any class not named); a trial's table records "
        "the tolerance it was evaluated with (nsd_tol_mm)")

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
        "best", description="what a finished trial keeps besides its record: its fine-tuned weights (best) or "
        "nothing (none); its resume checkpoints are deleted either way")
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
            raise ValueError("a study name is a folder name, not a path: up to 100 letters, digits, '_', '.' "
                             "or '-', starting with a letter or digit")
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
            raise ValueError(f"image_size={s.image_size} must be divisible by 2^{len(s.widths) - 1} for {len(s.widths)} levels")
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
            problems.append(f"split_seeds has {len(self.split_seeds)} values; give one, or one per seed "
                             f"({len(self.seeds or [self.seed])})")
        if self.pruning.enabled and self.search.algorithm != "grid":
            problems.append("pruning needs search.algorithm 'grid': its rungs compare every strategy of a data set")
        if len(self.replicates()) > 1 and self.search.algorithm != "grid":
            problems.append("seeds: replicates need search.algorithm 'grid' (a sampled search draws one seed's trials)")
        if self.pretraining is None and not self.baseline.enabled:
            problems.append("nothing to run: no pretraining axes and the baseline is disabled")
        if self.search.algorithm == "grid" and self.search.num_samples is not None:
            problems.append(f"search.num_samples={self.search.num_samples}: a grid runs each of its points once; "
                            "num_samples is for tpe, random or gp (drop it, or set search.algorithm)")
        if self.search.algorithm == "grid":
            for name, axis in self.axes().items():
                if not isinstance(axis, list):
                    problems.append(f"{name} is a distribution; search.algorithm 'grid' needs a list (or use tpe/random/gp)")
        for name, axis in self.axes().items():
            if isinstance(axis, list) and not axis:
                problems.append(f"{name} is empty: list at least one value")
            if not isinstance(axis, list) and not 0 < bounds(axis)[0] < bounds(axis)[1] < 1:
                problems.append(f"{name}: bounds must satisfy 0 < low < high < 1 for a learning rate")
            if name.endswith("lr") and isinstance(axis, list):
                for lr in axis:
                    if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr < 1):
                        problems.append(f"{name}: {lr} is not a learning rate in (0, 1)")
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))
        return self

    def axes(self) -> dict[str, Axis]:
        """Every design axis by its dotted field name; an lr axis the spec leaves out is the scale's."""
        out: dict[str, Axis] = {}
        if self.pretraining is not None:
            out.update({f"pretraining.{k}": v for k, v in self.pretraining.model_dump().items()})
            lr = self.pretraining.lr
            out["pretraining.lr"] = [self.scale.pretrain_lr] if lr is None else lr
        out.update({f"finetuning.{k}": v for k, v in self.finetuning.model_dump().items()})
        lr = self.finetuning.lr
        out["finetuning.lr"] = [self.scale.finetune_lr] if lr is None else lr
        out["finetuning.unfrozen_lr"] = self.finetuning.unfrozen_lr
        if self.baseline.enabled and self.baseline.lr is not None:
            out["baseline.lr"] = self.baseline.lr
        return out

    def varied_axes(self) -> dict[str, Axis]:
        """The design axes that take more than one value (a continuous range always does): what a
        view of the study shows as its parameters, and what the dry run counts."""
        return {name: axis for name, axis in self.axes().items()
                if not isinstance(axis, list) or len({str(v) for v in axis}) > 1}

    def storage_dir(self) -> Path:
        try:
            return Path(self.storage).expanduser().resolve() / self.name
        except (RuntimeError, OSError) as exc:  # an unknown ~user, a symlink loop
            raise SpecError(f"storage: {self.storage}: {exc}") from None


def _members(values: list[str], allowed: tuple[str, ...]) -> list[str]:
    for v in values:
        if v not in allowed:
            raise ValueError(f"{v!r} is not one of {', '.join(allowed)}{did_you_mean(v, allowed)}")
    return values
