"""Reading a spec: YAML -> ``--set`` overrides -> a validated :class:`StudySpec`, every problem one
:class:`SpecError` line that names the field (and the closest valid name for a misspelt one).

``--set key=value`` overrides any field before validation (``--set resources.cpus_per_trial=2``,
``--set datasets=[/data/skm-tea]``, Hydra's ``--set label_fractions=0.05,0.1``).
"""

from __future__ import annotations

import os
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError

from study._suggest import closest, did_you_mean
from study.design.scale import Strict
from study.design.spec import MAX_SPEC_BYTES, StudySpec
from study.errors import SpecError


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


# YAML 1.1 reads 1e-4 and 1E5 as text (its floats need a dot); YAML 1.2 and every reader of a
# learning rate mean a number.
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


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
            raise SpecError(
                f"{name}: {path.stat().st_size:,} bytes is too large for a spec "
                f"(at most {MAX_SPEC_BYTES:,}); is it the right file?"
            )
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
    # Access bits do not tell everything: root may "write" under /proc or /sys, where no folder can
    # be made. Those file systems have no blocks; asked without writing, so a dry run changes nothing.
    if existing != folder and os.statvfs(existing).f_blocks == 0:
        raise SpecError(
            f"storage: {existing}: a virtual file system (no disk blocks): the study folder "
            f"{folder} cannot be made there"
        )


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
            field = ".".join(
                str(p)
                for p in err["loc"]
                if not str(p).startswith(("list[", "function-")) and p not in ("LogUniform", "Uniform")
            )
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                near = closest(err["loc"][-1], known_fields(err["loc"][:-1]))
                message = "unknown field" + (
                    f"; did you mean {'.'.join([*field.split('.')[:-1], near])!r}?" if near else ""
                )
            elif err["type"] in ("missing",):
                message = "is required"
            elif err["type"] == "literal_error" and isinstance(err.get("input"), str):
                message += did_you_mean(err["input"], _expected(err))
            if not field:  # a check across fields: its message names them, the input is the whole spec
                problems.setdefault(message, message)
                continue
            got = (
                ""
                if err["type"] in ("extra_forbidden", "missing") or "input" not in err
                else f" (got {_short(err['input'])})"
            )
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
        elif (
            _takes_list(field.annotation)
            and not isinstance(value, list)
            and not (value is None and _takes_none(field.annotation))
        ):
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
