"""Build Optuna storage from a URL: the only place in regsweep that creates database engines.

SQLite (embedded, the default) and PostgreSQL through psycopg 3 are supported.
The engine settings are the ones that survive real use: several local workers on
one SQLite file, and server connections that are dropped or recycled.
"""

from __future__ import annotations

import copy
import functools
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from regsweep.errors import StorageError
from regsweep.signals import signals_deferred
from regsweep.storage import private
from regsweep.storage.locks import creation_lock
from regsweep.storage.settings import DEFAULT_HEARTBEAT, HeartbeatSettings
from regsweep.storage.urls import parse_url, redact

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
    """Optuna's RDB storage, safe to interrupt and riding out a dropped connection.

    ``pool_pre_ping`` replaces a connection that died while idle in the pool; the retry
    covers one that dies during a query (a server restart, ``pg_terminate_backend``, a
    proxy timeout). Only calls that can safely run twice are retried as they are: creating
    a study or a trial is not, because a lost reply may hide a successful commit. A state
    change (``ask`` taking a queued trial, ``tell``) is re-read before it is redone.
    """

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        with signals_deferred():
            try:
                return super().set_trial_state_values(trial_id, state, values)
            except Exception as exc:
                if not _is_disconnect(exc):
                    raise
            # The reply was lost, not necessarily the change: if it was committed, running
            # it again would fail (a finished trial) or return False (a queued trial taken
            # already, so ask would move on and strand it RUNNING). The caller holds the
            # trial (or, for ask, the study lock), so a state already equal to the wanted
            # one is this call's own commit.
            current = super().get_trial(trial_id)
            if current.state == state and (values is None or list(values) == current.values):
                return True
            return super().set_trial_state_values(trial_id, state, values)

    def set_trial_records(
        self,
        trial_id: int,
        params: Mapping[str, private.ParamRecord],
        intermediate_values: Mapping[int, float],
        user_attrs: Mapping[str, Any],
        system_attrs: Mapping[str, Any],
    ) -> None:
        """Store parameters, intermediate values, user and system attributes of a trial in
        one transaction (what ``storage.cache`` batches; safe to redo after a lost reply)."""
        private.write_trial_records(
            self, trial_id, params, intermediate_values, user_attrs, system_attrs
        )

    def get_trial_states(
        self, study_id: int, trial_ids: Iterable[int], after: int
    ) -> list[tuple[int, TrialState]]:
        """Id and state of the study's trials in ``trial_ids`` or newer than ``after``
        (what ``storage.private.CachedStorage`` reads before it loads trials whole)."""
        return private.trial_states(self, study_id, trial_ids, after)

    def get_trial_state_and_end(self, trial_id: int) -> tuple[TrialState, datetime | None]:
        """A trial's state and ``datetime_complete``, without loading the rest of it."""
        return private.trial_state_and_end(self, trial_id)


_NOT_RETRIED = (
    "create_new_study",
    "delete_study",
    "create_new_trial",
    *private.CACHE_BACKEND_WRITES,
)
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
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
    "record_heartbeat",
    "set_trial_records",
    "get_trial_states",
    "get_trial_state_and_end",
    *private.CACHE_BACKEND_READS,
    *private.CACHE_BACKEND_IDEMPOTENT_WRITES,
)
for _name in _NOT_RETRIED + _RETRIED:
    setattr(
        ReconnectingRDBStorage,
        _name,
        _guarded(getattr(ReconnectingRDBStorage, _name), retry=_name in _RETRIED),
    )


class FreshRetry(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose worker died, without the dead run's user attributes.

    Optuna's callback copies every user attribute of the failed trial onto its retry:
    the ``fail_reason`` (optuna-dashboard shows them all, so a retry that completed read
    as failed there), the learning curves and the ``worker`` of the dead run, and a budget
    flag of a trial whose worker died while failing it. They describe that run, which
    keeps them; the retry records its own as it runs. Its parameters and Optuna's
    ``retry_history`` (the chain of trials it retries) carry over as before.
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        fresh = copy.deepcopy(trial)  # the callback appends to the retry history it reads
        fresh.user_attrs = {}
        super().__call__(study, fresh)


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


def build_storage(
    url: str, heartbeat: HeartbeatSettings | None = DEFAULT_HEARTBEAT
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
            "heartbeat_stale_trial_callback": FreshRetry(max_retry=heartbeat.max_retry),
        }
    try:
        with creation_lock(parsed):
            storage = ReconnectingRDBStorage(
                rendered, engine_kwargs=engine_kwargs(parsed), **heartbeat_kwargs
            )
            if parsed.get_backend_name() == "sqlite":
                _enable_wal(storage.engine)
    except SQLAlchemyError as exc:
        line = error_line(exc)
        raise StorageError(
            f"study.storage: cannot open {redact(url)} ({line}); "
            + (
                full_server_hint(line)
                or "check that the database server is running and the URL is right"
            )
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


# How PostgreSQL refuses a connection once it holds as many as it may: max_connections
# ("sorry, too many clients already"), the slots kept for superusers ("remaining connection
# slots are reserved for ..."), or a role's or a database's CONNECTION LIMIT.
_FULL_SERVER = (
    "too many clients",
    "remaining connection slots are reserved",
    "too many connections for",
)
# Connections one worker opens: the engine's pool (pool_size + max_overflow, see
# engine_kwargs), plus one for a moment at start-up (table creation's lock).
MAX_CONNECTIONS_PER_WORKER = 7


def full_server_hint(line: str) -> str | None:
    """What to do when the server refused a connection because it is full, else None."""
    if not any(text in line for text in _FULL_SERVER):
        return None
    return (
        "the server takes no more connections: each regsweep worker holds 2 or 3 (at most "
        f"{MAX_CONNECTIONS_PER_WORKER}), so raise the server's max_connections (or the role's or "
        "database's CONNECTION LIMIT), run fewer workers, or put a pooler in session mode in "
        "front of it (README: 'Many workers on one PostgreSQL')"
    )


def error_line(exc: BaseException) -> str:
    """The first line of a database error: the driver's own message, without SQL or URL."""
    # Optuna wraps SQLAlchemy's error in a StorageInternalError that says nothing useful.
    cause = exc.__cause__
    if isinstance(exc, optuna.exceptions.StorageInternalError) and cause is not None:
        exc = cause
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
