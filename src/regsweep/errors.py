"""One exception tree. The CLI turns every :class:`RegsweepError` into one line and exit 2."""

from __future__ import annotations

from typing import Any


class RegsweepError(Exception):
    """Base of every error regsweep reports to a user as a one-line message."""

    exit_code: int = 2


class ConfigError(RegsweepError):
    """The sweep file, a ``--set`` override or a flag is invalid."""


class DataError(RegsweepError):
    """The data set cannot be found, read or downloaded."""


class StorageError(RegsweepError):
    """The storage URL is invalid, unreachable, or holds an incompatible study."""


class StorageLost(StorageError):
    """The database went away while trials ran; not bad input, so the exit status is 1."""

    exit_code = 1


class WorkerFailed(RegsweepError):
    """A worker process of ``launch --workers`` stopped with an error."""

    exit_code = 1


class StudyError(RegsweepError):
    """The study is missing, has no finished trials, or conflicts with the sweep file."""


class TrialDiverged(Exception):
    """A trial's loss became NaN or infinite; the trial fails and the study goes on."""

    def __init__(self, message: str, partial_attrs: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        # The epochs trained before the divergence, so the failed trial still tells its story.
        self.partial_attrs = partial_attrs or {}
