"""Locks shared by every process on one storage: table creation, and each study's budget.

SQLite: lock files beside the database. PostgreSQL: session advisory locks, which the
server releases by itself if the holder's connection dies.
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

# Key of the PostgreSQL advisory lock held while Optuna creates its tables.
_INIT_LOCK_KEY = zlib.crc32(b"regsweep:create-tables")


@contextlib.contextmanager
def creation_lock(url: URL) -> Iterator[None]:
    """Serialize table creation between processes that open a fresh database at once.

    Optuna creates its tables and version row without a lock, so eight workers starting
    together on an empty database would race (duplicate-table and duplicate-key errors).
    """
    if url.get_backend_name() == "sqlite":
        from filelock import FileLock

        with FileLock(lock_path(url, "tables")):
            yield
        return
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.NullPool, connect_args={"connect_timeout": 10}
    )
    try:
        with engine.connect() as connection:
            connection.execute(
                sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _INIT_LOCK_KEY}
            )
            try:
                yield
            finally:
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _INIT_LOCK_KEY}
                )
    finally:
        engine.dispose()


def lock_path(url: URL, what: str) -> str:
    """The lock file for ``what`` beside a SQLite database: ``regsweep.db.<what>.lock``.

    One file per purpose: table creation and each study's budget must not wait for
    each other (a worker creating a study's first trial would hold up every other study).
    """
    return f"{Path(url.database or '').expanduser()}.{what}.lock"


_LOCAL_LOCKS: dict[str, threading.Lock] = {}


class HeldLock:
    """A lock this process holds. ``intact()`` says whether it has been held all along:
    a file or in-process lock always is; a PostgreSQL advisory lock ends with its session."""

    def __init__(self, connection: sqlalchemy.Connection | None = None) -> None:
        self._connection = connection
        self.lost = False  # its session was seen to have ended

    def intact(self) -> bool:
        if self._connection is None or self.lost:
            return not self.lost
        try:
            # A session lock lives as long as its session: a session that still answers
            # has held it since it was taken.
            self._connection.execute(text("SELECT 1"))
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            self.lost = True
        return not self.lost


def advisory_key(study_name: str) -> int:
    """The PostgreSQL advisory lock key of a study's budget lock."""
    return zlib.crc32(f"regsweep:{study_name}".encode())


@contextlib.contextmanager
def study_lock(storage: optuna.storages.BaseStorage, study_name: str) -> Iterator[HeldLock]:
    """Hold a lock on ``study_name`` shared by every process using ``storage``.

    SQLite: a lock file beside the database, one per study. PostgreSQL: a session
    advisory lock, which the server releases by itself if the worker's connection dies
    (and then another worker may take it while this one still runs inside: ask the
    yielded lock whether it stayed ``intact()``). Other storages (in-memory, for tests):
    a lock within this process. Give the storage itself, not ``study._storage``: Optuna
    wraps an RDB storage in a cache, which would silently get the process-local lock
    (``private.study_storage`` unwraps it).
    """
    if isinstance(storage, optuna.storages.RDBStorage):
        url = storage.engine.url
        if url.get_backend_name() == "sqlite":
            from filelock import FileLock

            with FileLock(lock_path(url, f"study-{zlib.crc32(study_name.encode()):08x}")):
                yield HeldLock()
            return
        if url.get_backend_name() == "postgresql":
            with _advisory_lock(storage.engine, advisory_key(study_name)) as held:
                yield held
            return
    with _LOCAL_LOCKS.setdefault(study_name, threading.Lock()):
        yield HeldLock()


@contextlib.contextmanager
def _advisory_lock(engine: sqlalchemy.Engine, key: int) -> Iterator[HeldLock]:
    """A session advisory lock that survives its connection being killed around it.

    If the server ends the session (``pg_terminate_backend``, a restart) the lock ends
    with it: taking it is tried once more on a fresh connection, and a failed unlock of a
    dead session is nothing to undo.
    """
    for attempt in (1, 2):
        connection = engine.connect()
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            break
        except DBAPIError as exc:
            connection.close()
            if attempt == 2 or not exc.connection_invalidated:
                raise
    held = HeldLock(connection)
    try:
        yield held
    finally:
        try:
            if not held.lost:  # a lost lock is nothing to undo
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        finally:
            connection.close()
