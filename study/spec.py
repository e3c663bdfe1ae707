"""A study specification: YAML -> validated :class:`StudySpec`, errors that name the field.

A spec names the data sets, the scale, the design axes (which shape pretraining and which
fine-tuning), the label fractions, the supervised baseline, the search, the resources per trial and
where results go. ``--set key=value`` overrides any field before validation
(``--set resources.cpus_per_trial=2``, ``--set datasets=[/data/skm-tea]``).
"""

from __future__ import annotations

import math
import os
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from yaml.constructor import ConstructorError

from study.constants import DEFAULT_SEED, MAX_TRIALS, PAPER_IMAGE_SIZE, SAMPLERS, SCHEDULES, SCOPES, TASKS
from study._suggest import closest, did_you_mean
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
    rungs: list[float] = Field([0.25, 0.5], description="pauses, as fractions of finetune_max_epochs")
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
    top_k: int = Field(3, ge=1, description="the optimum holds a top-k place in every data set")


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


class _SpecLoader(yaml.SafeLoader):
    """``yaml.safe_load`` (no Python tags, so nothing in a spec runs) that also refuses a key given
    twice: YAML forbids it, and PyYAML would silently keep the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise ConstructorError(None, None, f"{key.value!r} is given twice", key.start_mark)
                seen.add(key.value)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - _SpecLoader is a SafeLoader


def load_spec(path: str | Path, overrides: list[str] = ()) -> StudySpec:
    """Read, override and validate a spec; every problem is one :class:`SpecError` line."""
    path = Path(path)
    name = _one_line(str(path))  # the path as typed may hold a newline: the error stays one line
    try:
        if path.exists() and not path.is_file():  # a folder, or /dev/zero that would never end
            raise SpecError(f"{name}: not a spec file (a folder or a device)")
        if path.exists() and path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(f"{name}: {path.stat().st_size:,} bytes is too large for a spec "
                            f"(at most {MAX_SPEC_BYTES:,}); is it the right file?")
        raw = _parse_yaml(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{name}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{name}: cannot read ({_one_line(str(exc))})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{name}{where}: not valid YAML ({_yaml_problem(exc)})") from None
    except RecursionError:
        raise SpecError(f"{name}: nested too deeply to be a spec") from None
    if raw is None:
        raise SpecError(f"{name}: the file is empty; a spec is a mapping of fields (name, datasets, ...)")
    if not isinstance(raw, dict):
        raise SpecError(f"{name}: a spec is a mapping of fields (name, datasets, ...), got {type(raw).__name__}")
    for item in overrides:
        _override(raw, item)
    raw.setdefault("name", path.stem)
    spec = validate(raw, source=str(path))
    check_storage(spec)
    return spec


def spec_yaml(spec: StudySpec) -> str:
    """The resolved spec as YAML, every default filled in: what ``--print-spec`` shows and the
    parent run keeps per invocation."""
    dump = spec.model_dump(mode="json")
    # The scale's own dump leaves out what its profile implies (trial ids hash it); here every
    # setting a trial will use is shown.
    dump["scale"] = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(spec.scale).items()}
    return yaml.safe_dump(dump, sort_keys=False, default_flow_style=None, width=100)


def check_storage(spec: StudySpec) -> None:
    """Refuse, before anything runs, a study folder that could never be made; nothing is created."""
    folder = spec.storage_dir()
    if any(len(part.encode()) > 255 for part in folder.parts):
        raise SpecError(f"storage: {_short(str(folder))}: a folder name is longer than 255 bytes")
    existing = folder
    try:
        while not existing.exists():
            existing = existing.parent
    except PermissionError:
        raise SpecError(f"storage: {existing}: permission denied") from None
    if not existing.is_dir():
        raise SpecError(f"storage: {existing} is a file, not a folder: the study folder {folder} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        raise SpecError(f"storage: {existing}: {'read-only file system' if read_only else 'permission denied'}")


MAX_ERRORS = 8  # shown at once; the rest are counted


def validate(raw: dict, source: str = "spec") -> StudySpec:
    """The spec a mapping means, or one :class:`SpecError` line naming every field at fault (the
    closest valid name suggested for a misspelt one). A scalar where a list is expected is a
    one-element list. The command line and the Python API both come here."""
    try:
        return StudySpec.model_validate(as_lists(raw))
    except ValidationError as exc:
        problems: dict[str, str] = {}  # field -> its first problem (a union reports one per member)
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("list[", "function-"))
                             and p not in ("LogUniform", "Uniform"))
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                near = closest(err["loc"][-1], known_fields(err["loc"][:-1]))
                message = "unknown field" + (f"; did you mean {'.'.join([*field.split('.')[:-1], near])!r}?" if near else "")
            elif err["type"] in ("missing",):
                message = "is required"
            elif err["type"] == "literal_error" and isinstance(err.get("input"), str):
                message += did_you_mean(err["input"], _expected(err))
            if not field:  # a check across fields: its message names them, the input is the whole spec
                problems.setdefault(message, message)
                continue
            got = "" if err["type"] in ("extra_forbidden", "missing") or "input" not in err else f" (got {_short(err['input'])})"
            problems.setdefault(field, f"{field}: {message}{got}")
        shown = list(problems.values())
        more = f"; and {len(shown) - MAX_ERRORS} more" if len(shown) > MAX_ERRORS else ""
        raise SpecError(_one_line(f"{source}: {'; '.join(shown[:MAX_ERRORS])}{more}")) from None


def _expected(err: dict) -> list[str]:
    """The choices of a Literal, from pydantic's ``"'grid', 'tpe', 'random' or 'gp'"``."""
    text = str((err.get("ctx") or {}).get("expected", ""))
    return [c.strip().strip("'") for c in text.replace(" or ", ", ").split(", ") if c.strip()]


def _model_at(loc: tuple) -> type | None:
    """The spec model a location inside the spec names (None past a leaf)."""
    model: Any = StudySpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _one_model(field.annotation)
    return model


def known_fields(loc: tuple) -> list[str]:
    """The field names allowed at ``loc`` (``()``: the spec's top level)."""
    model = _model_at(loc)
    return list(model.model_fields) if model is not None else []


def _members_of(annotation: Any) -> tuple:
    return typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else (annotation,)


def _one_model(annotation: Any) -> type | None:
    models = [a for a in _members_of(annotation) if isinstance(a, type) and issubclass(a, Strict)]
    return models[0] if len(models) == 1 else None


def _takes_list(annotation: Any) -> bool:
    return any(typing.get_origin(a) is list for a in _members_of(annotation))


def _takes_none(annotation: Any) -> bool:
    return type(None) in _members_of(annotation)


def field_annotation(path: list[str]) -> Any:
    """The annotation of a dotted spec field (None when there is no such field)."""
    model = _model_at(tuple(path[:-1]))
    field = model.model_fields.get(path[-1]) if model is not None else None
    return field.annotation if field is not None else None


def as_lists(raw: Any, model: type = None) -> Any:
    """``label_fractions: 0.05`` means ``[0.05]``: a scalar where the spec expects a list (an axis,
    the data sets, the fractions, the seeds) becomes a one-element list, as Hydra's overrides do.
    ``null`` stays ``null`` where a field takes it (an lr axis left to the profile)."""
    model = model or StudySpec
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for name, value in raw.items():
        field = model.model_fields.get(str(name))
        if field is None:
            continue
        if isinstance(value, dict):
            inner = _one_model(field.annotation)
            if inner is not None:
                out[name] = as_lists(value, inner)
        elif _takes_list(field.annotation) and not isinstance(value, list) and not (value is None and _takes_none(field.annotation)):
            out[name] = [value]
    return out


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 80, 80, 2


def _short(value: Any) -> str:
    """repr, cut short: an input may be a megabyte string or an alias bomb of nested lists."""
    return _REPR.repr(value)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):  # binary junk: its str() spans two lines
        return f"character #x{exc.character:04x} at byte {exc.position} is not text: {exc.reason}"
    return _one_line(str(getattr(exc, "problem", None) or exc))


def _one_line(text: str) -> str:
    """Errors are one line: control characters (from a YAML key, a parser's message) are escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _override(raw: dict, item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise SpecError(f"--set {_short(item)}: expected key=value, e.g. resources.cpus_per_trial=2")
    try:
        value = _parse_yaml(text)
        # Hydra's `a,b,c`: a list, except where the field is text (a folder, a URI, a name).
        if isinstance(value, str) and "," in value and field_annotation(key.split(".")) not in (str, None):
            value = [_parse_yaml(part.strip()) for part in text.split(",")]
    except (yaml.YAMLError, RecursionError):
        raise SpecError(f"--set {_short(item)}: the value is not valid YAML") from None
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.get(part)
        if child is None or isinstance(child, str):  # e.g. scale: laptop -> {profile: laptop}
            child = {} if child is None else {"profile": child}
            node[part] = child
        if not isinstance(child, dict):
            raise SpecError(_one_line(f"--set {key}: {part} is not a section"))
        node = child
    node[leaf] = value
