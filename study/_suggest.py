"""One wording for a refused name, with the closest valid one suggested ("did you mean").

Imports neither torch nor numpy: the spec checks a file's names long before a model is built.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

# Low enough to catch a dropped or doubled letter in a short name ('poison_disc'), high enough that
# an unrelated word ('grid' among the samplers) gets no suggestion rather than a misleading one.
_CUTOFF = 0.5


def closest(value: object, choices: Sequence[str]) -> str | None:
    """The choice most like ``value``, or None when none is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=_CUTOFF)
    return close[0] if close else None


def did_you_mean(value: object, choices: Sequence[str]) -> str:
    """``"; did you mean 'y'?"`` for the closest choice, or ``""`` when none is close."""
    near = closest(value, choices)
    return f"; did you mean {near!r}?" if near is not None else ""


def unknown_choice(what: str, value: object, choices: Sequence[str]) -> str:
    """``"<what>: unknown value 'x'; did you mean 'y'? Choices: 'y', 'z'"``, without the suggestion
    when no choice is close."""
    near = closest(value, choices)
    hint = f"; did you mean {near!r}?" if near is not None else "."
    return f"{what}: unknown value {value!r}{hint} Choices: {', '.join(repr(c) for c in choices)}"
