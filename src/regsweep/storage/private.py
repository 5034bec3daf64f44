"""The one module on Optuna's private API: what regsweep needs and Optuna does not expose.

Each function names the private thing it reads, so an Optuna upgrade is fixed here alone.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import optuna
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models  # private: the ORM models of Optuna's tables
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

# Optuna's per-process cache around an RDB storage: what ``optuna.create_study`` wraps an
# ``RDBStorage`` in. ``storage.cache.WorkerCache`` extends it for a worker's own trials.
CachedStorage = _CachedStorage


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study was opened on, unwrapped from Optuna's ``_CachedStorage``.

    ``study._storage`` is private, and for an RDB storage it is a cache around it:
    locking on that would be a lock within this process only.
    """
    storage = study._storage
    return getattr(storage, "_backend", storage)


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of an asked trial (``Trial._trial_id``; public API needs two queries)."""
    return int(trial._trial_id)


def grace_period_s(storage: optuna.storages.RDBStorage) -> float:
    """The storage's grace period, with Optuna's default of two heartbeat intervals."""
    interval = storage.get_heartbeat_interval() or 0
    grace = storage.grace_period  # set in RDBStorage.__init__, not in any public getter
    return float(grace if grace is not None else 2 * interval)


def write_trial_records(
    storage: optuna.storages.RDBStorage,
    trial_id: int,
    intermediate_values: Mapping[int, float],
    user_attrs: Mapping[str, Any],
) -> None:
    """Write intermediate values and user attributes of one trial in one transaction.

    What ``set_trial_intermediate_value`` and ``set_trial_user_attr`` store, with their
    check (``UpdateFinishedTrialError`` if the trial is finished); but each of those is a
    transaction of its own that reads the trial and the row before writing it, through
    the ORM. Here: one read of the trial's state, then one upsert per table for all rows
    (Optuna's table models, private; its ``_create_scoped_session`` where no upsert exists).
    """
    name = storage.engine.name
    if name not in ("postgresql", "sqlite") or (
        name == "sqlite" and sqlite3.sqlite_version_info < (3, 24, 0)
    ):
        # No upsert (Optuna's own condition): its one-row helpers, still in one transaction.
        with _create_scoped_session(storage.scoped_session) as session:
            for step, value in intermediate_values.items():
                storage._set_trial_intermediate_value_without_commit(session, trial_id, step, value)
            for key, item in user_attrs.items():
                storage._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, key, item
                )
        return
    upsert_values, upsert_attrs = _upserts(storage.engine.name)
    trials = models.TrialModel.__table__
    to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
    # A connection, not an ORM session: a session's set-up and clean-up cost more than
    # these three statements.
    with storage.engine.begin() as connection:
        state = connection.execute(
            select(trials.c.state).where(trials.c.trial_id == trial_id)
        ).scalar_one_or_none()
        if state is None:
            raise KeyError(models.NOT_FOUND_MSG)
        storage.check_trial_is_updatable(trial_id, state)
        if intermediate_values:
            rows = []
            for step, value in intermediate_values.items():
                stored, kind = to_stored(value)
                rows.append(
                    {
                        "trial_id": trial_id,
                        "step": step,
                        "intermediate_value": stored,
                        "intermediate_value_type": kind,
                    }
                )
            connection.execute(upsert_values, rows)
        if user_attrs:
            connection.execute(
                upsert_attrs,
                [
                    {"trial_id": trial_id, "key": key, "value_json": json.dumps(item)}
                    for key, item in user_attrs.items()
                ],
            )


@functools.cache
def _upserts(dialect_name: str) -> tuple[Any, Any]:
    """Insert-or-update statements for a trial's intermediate values and user attributes,
    on the unique keys of Optuna's tables; built once (SQLAlchemy caches their SQL)."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[dialect_name]
    values = models.TrialIntermediateValueModel.__table__
    value_insert = dialect.insert(values)
    attrs = models.TrialUserAttributeModel.__table__
    attr_insert = dialect.insert(attrs)
    return (
        value_insert.on_conflict_do_update(
            index_elements=[values.c.trial_id, values.c.step],
            set_={
                "intermediate_value": value_insert.excluded.intermediate_value,
                "intermediate_value_type": value_insert.excluded.intermediate_value_type,
            },
        ),
        attr_insert.on_conflict_do_update(
            index_elements=[attrs.c.trial_id, attrs.c.key],
            set_={"value_json": attr_insert.excluded.value_json},
        ),
    )


def stale_trial_ids(storage: optuna.storages.RDBStorage, study_id: int) -> list[int]:
    """RUNNING trials whose worker is gone: heartbeat older than the grace period, or none.

    Optuna's own check (``RDBStorage._get_stale_trial_ids``) never returns a RUNNING trial
    without a heartbeat row, so a worker killed between ``ask`` and its first heartbeat
    would strand the trial forever. regsweep records the first heartbeat under the study
    lock that ``ask`` runs under, so a trial seen without one is orphaned; it is still
    given the grace period, counted from its start, in case another tool asked it.
    """
    stale = set(storage._get_stale_trial_ids(study_id))
    # datetime_start is written by the asking client's clock, as naive UTC (the private
    # column behind TrialModel.datetime_start), so it is compared with this client's clock.
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    cutoff = now - timedelta(seconds=grace_period_s(storage))
    with Session(storage.engine) as session:
        rows = (
            session.query(models.TrialModel.trial_id)
            .outerjoin(models.TrialHeartbeatModel)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
            .filter(models.TrialModel._datetime_start_utc < cutoff)
            .all()
        )
    stale.update(int(row[0]) for row in rows)
    return sorted(stale)


# The RDBStorage methods that Optuna's ``_CachedStorage`` (what a study's trials write
# through) calls instead of the public ones: ``suggest_*`` writes a parameter with
# ``_set_trial_param``, ``ask`` creates a trial with ``_create_new_trial``, and samplers and
# pruners read trials with ``_get_trials``. A guard on the public methods alone misses them.
CACHE_BACKEND_READS = ("_get_trials", "_get_best_trial_id", "_get_stale_trial_ids")
# A parameter written twice hits its unique key, which Optuna ignores: safe to redo.
CACHE_BACKEND_IDEMPOTENT_WRITES = ("_set_trial_param",)
# A trial created twice would be two trials: never redone blind.
CACHE_BACKEND_WRITES = ("_create_new_trial",)


class HyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with the bracket studies it hands to samplers made once.

    Hyperband gives samplers and its own pruners a ``_BracketStudy`` (a private class) for
    the trial's bracket, made anew at every ``should_prune`` and every ``suggest_*``, each
    with a per-trial cache of the study's trials of its own (``Study._thread_local``, which
    ``ask`` and ``tell`` reset). So TPE, which reads the trials "once per trial" through
    that cache, read them from the database at every suggestion. Here a study's bracket
    studies are made once and share the study's own cache, as a plain study's sampler does.
    """

    # (id of the study, bracket) -> its bracket study. Made on first use, not in __init__,
    # whose signature regsweep reads to check a sweep file's options. A bracket study holds
    # its study, so an id cannot be reused while its entry exists.
    _bracket_studies: dict[tuple[int, int], optuna.Study] | None = None

    def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
        if self._bracket_studies is None:
            self._bracket_studies = {}
        key = (id(study), bracket_id)
        if key not in self._bracket_studies:
            bracket = super()._create_bracket_study(study, bracket_id)
            bracket._thread_local = study._thread_local  # the study's per-trial cache
            self._bracket_studies[key] = bracket
        return self._bracket_studies[key]
