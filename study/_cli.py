"""What every command-line entry point shares: one-line errors and exit status 2."""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Callable, NoReturn, Sequence

from study.errors import StudyError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line (and exit status 2), not a usage dump."""

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
        print(f"error: {exc.filename or 'storage'}: {exc.strerror}; free space, then run the same command "
              "again to resume", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
