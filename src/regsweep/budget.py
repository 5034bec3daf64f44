"""The study's trial budget, shared by every worker, and the lock that keeps it exact.

``study.n_trials`` counts trials across all workers: complete, pruned and failed
ones, plus those running or queued. A failed trial that was re-queued for a retry
is counted once, through its retry. Checking the count and asking for a trial
happen under one lock per study, so N workers never overshoot the budget.
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import text

RETRY_ATTR = "retry_of"

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def retried_number(trial: FrozenTrial) -> int | None:
    """The number of the failed trial that ``trial`` retries, if it is a retry."""
    number = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    if number is None:
        number = trial.user_attrs.get(RETRY_ATTR)
    return int(number) if number is not None else None


@dataclass(frozen=True)
class Usage:
    finished: int  # complete + pruned + failed-and-not-retried
    running: int
    waiting: int

    @property
    def used(self) -> int:
        return self.finished + self.running + self.waiting


def usage(study: optuna.Study) -> Usage:
    trials = study.get_trials(deepcopy=False)
    retried = {n for n in (retried_number(t) for t in trials) if n is not None}
    finished = sum(
        1
        for t in trials
        if t.state in _FINISHED and not (t.state == TrialState.FAIL and t.number in retried)
    )
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    return Usage(finished, running, waiting)


_LOCAL_LOCKS: dict[str, threading.Lock] = {}


@contextlib.contextmanager
def study_lock(storage: optuna.storages.BaseStorage, study_name: str) -> Iterator[None]:
    """Hold a lock on ``study_name`` shared by every process using ``storage``.

    SQLite: a lock file beside the database. PostgreSQL: a session advisory lock,
    which the server releases by itself if the worker's connection dies.
    Other storages (in-memory, for tests): a lock within this process.
    """
    if isinstance(storage, optuna.storages.RDBStorage):
        url = storage.engine.url
        if url.get_backend_name() == "sqlite":
            from filelock import FileLock

            with FileLock(str(Path(url.database or "").expanduser()) + ".lock"):
                yield
            return
        if url.get_backend_name() == "postgresql":
            key = zlib.crc32(f"regsweep:{study_name}".encode())
            with storage.engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
            return
    with _LOCAL_LOCKS.setdefault(study_name, threading.Lock()):
        yield
