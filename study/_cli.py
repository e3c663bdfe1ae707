"""What every command-line entry point shares: one-line errors and exit status 2."""

from __future__ import annotations

import argparse
import errno
import gc
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import NoReturn

from study.errors import StudyError


def plain(text: str) -> str:
    """reST markup as a terminal shows it: ``code`` and :role:`name` become code and name."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")


def examples(doc: str) -> str:
    """The indented command lines of a module docstring (its examples), as they should be typed."""
    lines = [line.strip() for line in doc.splitlines() if line.startswith("    ") and line.strip()]
    return "\n".join(f"  {plain(line)}" for line in lines)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line (and exit status 2), not a usage dump.

    ``doc`` (a module docstring) gives the description (its first line) and the examples its
    indented lines hold, shown in ``--help`` before any ``epilog``, which is wrapped as prose.
    """

    def __init__(self, *args, doc: str | None = None, **kwargs) -> None:
        if doc is not None:
            kwargs.setdefault("description", plain(doc.strip().splitlines()[0]))
            shown = examples(doc)
            epilog = textwrap.fill(kwargs.pop("epilog", "") or "", width=100)
            kwargs["epilog"] = "\n\n".join(part for part in (f"examples:\n{shown}" if shown else "", epilog) if part)
            kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main`` and turn a :class:`StudyError` into one line on stderr and exit status 2."""
    try:
        code = main(argv)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A full disk is the user's to fix, and nothing finished is lost: say so in one line.
        print(
            f"error: {exc.filename or 'storage'}: {exc.strerror}; free space, then run the same command "
            "again to resume",
            file=sys.stderr,
        )
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    if argv is None:  # the process's own command, which ends here
        # Python's last collection would walk every object the run left (Ray, Tune, MLflow, pandas):
        # about 2 s on a 2-core machine, for memory the process is about to give back anyway.
        gc.freeze()
    sys.exit(code)
