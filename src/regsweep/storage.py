"""Build Optuna storage from a URL: the only place in regsweep that creates database engines.

SQLite (embedded, the default) and PostgreSQL through psycopg 3 are supported.
The engine settings are the ones that survive real use: several local workers on
one SQLite file, and server connections that are dropped or recycled.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from regsweep.config import (
    DEFAULT_GRACE_PERIOD_S,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_MAX_RETRY,
    StudyConfig,
)
from regsweep.errors import StorageError
from regsweep.signals import signals_deferred

ALLOWED = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"

# SQLite waits this long for a lock held by another worker before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60


def _is_disconnect(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F, *, retry: bool) -> F:
    """``method`` run with Ctrl-C and SIGTERM held back until it returns, and, with
    ``retry``, run once more if the server dropped its connection."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # An exception raised inside a query leaves the connection mid-transaction and
        # unusable, so the clean-up of the interrupted trial would fail with it.
        with signals_deferred():
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if not (retry and _is_disconnect(exc)):
                    raise
                # SQLAlchemy has discarded the dead connection; the pool opens a fresh one.
                return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, safe to interrupt and retrying once a dropped connection.

    ``pool_pre_ping`` replaces a connection that died while idle in the pool; the retry
    covers one that dies during a query (a server restart, ``pg_terminate_backend``, a
    proxy timeout). Only calls that can safely run twice are retried: creating a study
    or a trial is not, because a lost reply may hide a successful commit.
    """


_NOT_RETRIED = ("create_new_study", "delete_study", "create_new_trial")
_RETRIED = (
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
    "record_heartbeat",
    "_get_stale_trial_ids",
)
for _name in _NOT_RETRIED + _RETRIED:
    setattr(
        ReconnectingRDBStorage,
        _name,
        _guarded(getattr(optuna.storages.RDBStorage, _name), retry=_name in _RETRIED),
    )


@dataclass(frozen=True)
class HeartbeatSettings:
    """A trial whose worker sent no heartbeat for ``grace_period`` s is failed and retried."""

    interval: int = DEFAULT_HEARTBEAT_INTERVAL_S
    grace_period: int = DEFAULT_GRACE_PERIOD_S
    max_retry: int = DEFAULT_MAX_RETRY

    @classmethod
    def from_study(cls, study: StudyConfig) -> HeartbeatSettings:
        return cls(study.heartbeat_interval, study.grace_period, study.max_retry)


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``, safe for messages, logs and attrs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        pass
    # Not a URL SQLAlchemy understands (a slash missing, a typo in the scheme): still
    # never echo anything that looks like a secret, i.e. what lies between a user
    # name's colon and the last @.
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    match = _USERINFO.match(head)
    return f"{match[1] or ''}{match[2]}:***@{tail}" if match else url


# [scheme:/ or scheme://]user:password, the scheme optional.
_USERINFO = re.compile(r"^([^:]*:/*)?([^:@/]*):(.*)$", re.S)


def parse_url(url: str) -> URL:
    """Check that ``url`` is a storage regsweep supports, and normalize its driver.

    A bare ``postgresql://`` URL would pick psycopg2, which is not installed: it is
    rewritten to psycopg 3.
    """
    if "://" not in url:
        hint = f"; did you mean 'sqlite:///{url}'?" if url.endswith((".db", ".sqlite")) else ""
        raise StorageError(
            f"study.storage: {redact(url)!r} is not a database URL (allowed: {ALLOWED}){hint}"
        )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(
            f"study.storage: cannot parse {redact(url)!r} ({exc}); allowed: {ALLOWED}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise StorageError(
                f"study.storage: driver {driver!r} is not installed; use postgresql+psycopg://"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StorageError(
                "study.storage: an in-memory SQLite database vanishes with the process; "
                "give a file, e.g. sqlite:///regsweep.db"
            )
        return parsed
    raise StorageError(f"study.storage: backend {backend!r} is not supported (allowed: {ALLOWED})")


def application_name() -> str:
    """How this process shows in ``pg_stat_activity``: which worker holds which connection."""
    return f"regsweep {socket.gethostname()}:{os.getpid()}"[:63]


def engine_kwargs(url: URL) -> dict[str, object]:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {
        "pool_pre_ping": True,  # a connection the server dropped is replaced, not raised
        "pool_recycle": 300,  # stay under idle timeouts of servers and proxies
        "pool_size": 2,  # one worker needs one connection, plus one for its heartbeat
        "max_overflow": 4,
        "connect_args": {"connect_timeout": 10, "application_name": application_name()},
    }


# Key of the PostgreSQL advisory lock held while Optuna creates its tables.
_INIT_LOCK_KEY = zlib.crc32(b"regsweep:create-tables")


@contextlib.contextmanager
def _creation_lock(url: URL) -> Iterator[None]:
    """Serialize table creation between processes that open a fresh database at once.

    Optuna creates its tables and version row without a lock, so eight workers starting
    together on an empty database would race (duplicate-table and duplicate-key errors).
    """
    if url.get_backend_name() == "sqlite":
        from filelock import FileLock

        with FileLock(str(Path(url.database or "").expanduser()) + ".lock"):
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


def build_storage(
    url: str, heartbeat: HeartbeatSettings | None = HeartbeatSettings()
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for ``url``, with heartbeats unless ``heartbeat`` is None.

    Raises:
        StorageError: the URL is invalid, the database unreachable, or its schema
            was written by an incompatible Optuna version.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
    rendered = parsed.render_as_string(hide_password=False)
    heartbeat_kwargs: dict[str, Any] = {}
    if heartbeat is not None:
        heartbeat_kwargs = {
            "heartbeat_interval": heartbeat.interval,
            "grace_period": heartbeat.grace_period,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=heartbeat.max_retry
            ),
        }
    try:
        with _creation_lock(parsed):
            storage = ReconnectingRDBStorage(
                rendered, engine_kwargs=engine_kwargs(parsed), **heartbeat_kwargs
            )
            if parsed.get_backend_name() == "sqlite":
                _enable_wal(storage.engine)
    except SQLAlchemyError as exc:
        raise StorageError(
            f"study.storage: cannot open {redact(url)} ({error_line(exc)}); "
            "check that the database server is running and the URL is right"
        ) from None
    except RuntimeError as exc:
        if "schema" in str(exc) or "upgrade" in str(exc):
            raise StorageError(
                f"study.storage: {redact(url)} was written by another Optuna version "
                f"({error_line(exc).split('. Please')[0]}); back it up, then run "
                f"`optuna storage upgrade --storage {redact(url)}`, or use a new database"
            ) from None
        raise
    return storage


def _enable_wal(engine: sqlalchemy.Engine) -> None:
    # WAL lets readers (the dashboard, other workers) run while one worker writes.
    # The mode is stored in the database file, so setting it once is enough.
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")

    # synchronous is per connection. In WAL mode NORMAL still survives a crashed or killed
    # worker (only a power cut can lose the last commits) and skips an fsync per commit:
    # a trial makes about 30 (a report per epoch, its attributes, tell), about a third of
    # its time in the storage (BENCHMARKS.md, orchestration).
    @sqlalchemy.event.listens_for(engine, "connect")
    def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    engine.dispose()  # connections opened before the listener get it when reopened


def error_line(exc: BaseException) -> str:
    """The first line of a database error: the driver's own message, without SQL or URL."""
    # Optuna wraps SQLAlchemy's error in a StorageInternalError that says nothing useful.
    cause = exc.__cause__
    if isinstance(exc, optuna.exceptions.StorageInternalError) and cause is not None:
        exc = cause
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@functools.lru_cache(maxsize=8)
def cached_storage(
    url: str, heartbeat: HeartbeatSettings | None = HeartbeatSettings()
) -> optuna.storages.RDBStorage:
    """One storage (and engine pool) per URL per process."""
    return build_storage(url, heartbeat)
