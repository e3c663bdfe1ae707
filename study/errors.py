"""Errors meant for the person running the platform.

Every command-line entry point catches :class:`StudyError`, prints its message as one line and exits
with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class StudyError(Exception):
    """Base class of the errors a user can fix: the message names the field or file at fault."""

    exit_code = 2


class SpecError(StudyError):
    """Raised when a study specification, a setting or a command-line value is invalid."""


class DataError(StudyError):
    """Raised when a data set, file or split is missing, unreadable, malformed or would leak."""


class StorageError(StudyError):
    """Raised when the study folder or the tracking store cannot be written (e.g. the disk is full)."""


class BusyError(StudyError):
    """Raised when another driver is running the same study: the message names it."""
