"""One declaration per design axis (study/design/axes.py): the ids it leaves unchanged, and the house rule
that an axis's name appears only in its declaration and its science."""

from __future__ import annotations

import ast
import json
import tokenize
from pathlib import Path

from study.design import axes as design_axes
from study.design.plan import make_plan
from study.design.spec_loading import load_spec
from tests.conftest import REPO

HERE = Path(__file__).parent
# Modules of the orchestration that may name axes in general terms without reading one by name.
CORE = ("data", "pretext", "model", "train", "metrics", "analysis")


def test_every_shipped_space_keeps_its_trial_ids_and_pretraining_keys() -> None:
    # trial_ids.json was written by the code before the axes were declared in one place; a change
    # of the version (study.__version__) or of what a trial means changes them on purpose.
    expected = json.loads((HERE / "trial_ids.json").read_text())
    assert sorted(expected) == sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml"))
    for name, want in expected.items():
        plan = make_plan(load_spec(REPO / "search_spaces" / name, want["overrides"]))
        assert sorted(t.id for t in plan.trials) == want["trials"], name
        assert sorted(plan.pretrainings()) == want["pretrainings"], name


def _names(axis: design_axes.DesignAxis) -> set[str]:
    # "lr" is also the baseline's learning rate and the word of every optimiser, and a scale field
    # named by scale_default (pretrain_lr) is the scale's: the dotted path names those axes
    return {n for n in (axis.key, axis.flat, axis.path) if n not in ("lr", axis.scale_default)}


def _uses(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """Where the code reads a name: an identifier, or a string that is the name (a column, a key);
    prose (docstrings, messages) is not a use."""
    out = []
    with path.open("rb") as f:
        tokens = [t for t in tokenize.tokenize(f.readline) if t.type not in (tokenize.NL, tokenize.COMMENT)]
    for before, tok, after in zip([None, *tokens], tokens, [*tokens[1:], None]):
        if tok.type == tokenize.NAME and tok.string in names:
            keyword = before is not None and before.string in ("(", ",") and after is not None and after.string == "="
            if not keyword:  # a keyword argument of another API (Optuna's sampler=) names no axis
                out.append((tok.start[0], tok.string))
        elif tok.type == tokenize.STRING:
            try:
                value = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):  # an f-string
                continue
            if isinstance(value, str) and value in names:
                out.append((tok.start[0], value))
    return out


def test_an_axis_is_named_only_in_its_declaration_and_its_science() -> None:
    found = []
    for path in sorted((REPO / "study").rglob("*.py")):
        rel = path.relative_to(REPO / "study").as_posix()
        if rel == "design/axes.py" or rel.split("/")[0] in CORE:
            continue
        lines = path.read_text().splitlines()
        for axis in design_axes.AXES:
            if not any(rel.startswith(s) for s in axis.science):
                found += [
                    f"study/{rel}:{n}: {axis.path} as {name}: {lines[n - 1].strip()}"
                    for n, name in _uses(path, _names(axis))
                ]
    assert not found, "\n".join(found)
