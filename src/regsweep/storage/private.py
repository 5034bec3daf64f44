"""The one module on Optuna's private API: what regsweep needs and Optuna does not expose.

Each function names the private thing it reads, so an Optuna upgrade is fixed here alone.
"""

from __future__ import annotations

import copy
import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models  # private: the ORM models of Optuna's tables
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study was opened on, unwrapped from Optuna's ``_CachedStorage``.

    ``study._storage`` is private, and for an RDB storage it is a cache around it:
    locking on that would be a lock within this process only.
    """
    storage = study._storage
    return getattr(storage, "_backend", storage)


def trial_storage(trial: optuna.Trial) -> optuna.storages.BaseStorage:
    """The storage an asked trial writes through (``Trial.storage``, not documented)."""
    return trial.storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (``_trial_id``; public API needs two queries)."""
    return int(trial._trial_id)


def grace_period_s(storage: optuna.storages.RDBStorage) -> float:
    """The storage's grace period, with Optuna's default of two heartbeat intervals."""
    interval = storage.get_heartbeat_interval() or 0
    grace = storage.grace_period  # set in RDBStorage.__init__, not in any public getter
    return float(grace if grace is not None else 2 * interval)


# -- heartbeats and retries -------------------------------------------------------------


def may_be_heartbeat_retry(trial: FrozenTrial) -> bool:
    """Whether ``trial`` carries what Optuna's ``RetryHeartbeatStaleTrialCallback`` writes on
    the retries it queues: the system attributes its ``retried_trial_number`` and
    ``retry_history`` read (``failed_trial``, ``retry_history``). Those two warn (as
    experimental) at every call, which over every trial of a study adds up."""
    return "failed_trial" in trial.system_attrs or "retry_history" in trial.system_attrs


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


def heartbeat_ages(storage: optuna.storages.RDBStorage, study_id: int) -> dict[int, float]:
    """Seconds since the last heartbeat of each RUNNING trial that has one, by trial number.

    Both times are the database server's (``TrialHeartbeatModel.heartbeat`` is written with
    its ``now()``), as Optuna's own stale check compares them, so no client clock enters.
    """
    with Session(storage.engine) as session:
        now = session.execute(select(func.now())).scalar_one().replace(tzinfo=None)
        rows = (
            session.query(models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
            .join(models.TrialHeartbeatModel)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
    return {
        int(number): max(0.0, (now - beat.replace(tzinfo=None)).total_seconds())
        for number, beat in rows
    }


# -- a worker's own trials (storage/cache.py) -------------------------------------------


# A parameter to write: its internal value, its distribution, and the distribution this
# process saw first for that name in the study (None: Optuna looks one up in the database).
ParamRecord = tuple[float, BaseDistribution, BaseDistribution | None]


def has_upserts(storage: optuna.storages.RDBStorage) -> bool:
    """Whether :func:`write_trial_records` can write to ``storage``'s database: PostgreSQL,
    or SQLite from 3.24 (Optuna's own condition for its upserts)."""
    name = storage.engine.name
    return name == "postgresql" or (name == "sqlite" and sqlite3.sqlite_version_info >= (3, 24))


def write_trial_records(
    storage: optuna.storages.RDBStorage,
    trial_id: int,
    params: Mapping[str, ParamRecord],
    intermediate_values: Mapping[int, float],
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
) -> None:
    """Write parameters, intermediate values, user and system attributes of one trial in
    one transaction.

    What ``set_trial_param``, ``set_trial_intermediate_value``, ``set_trial_user_attr`` and
    ``set_trial_system_attr`` store, with their checks (``UpdateFinishedTrialError`` if the
    trial is finished; ``ValueError`` for a distribution that contradicts the study's); but
    each of those is
    a transaction of its own, through the ORM, that reads the trial and the row before
    writing one value. Here: one read of the trial, then one statement per table for all
    rows (Optuna's table models: private). A parameter that is already stored is what a
    redo after a lost reply finds: the whole first attempt was committed, so that
    integrity error is ignored, as Optuna's ``_set_trial_param`` ignores it.
    """
    name = storage.engine.name
    trials = models.TrialModel.__table__
    upsert_values, upsert_user_attrs, upsert_system_attrs = _upserts(name)
    to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
    try:
        # A connection, not an ORM session: the session's set-up and clean-up cost more
        # than these few statements.
        with storage.engine.begin() as connection:
            trial = connection.execute(
                select(trials.c.state, trials.c.study_id).where(trials.c.trial_id == trial_id)
            ).one_or_none()
            if trial is None:
                raise KeyError(models.NOT_FOUND_MSG)
            storage.check_trial_is_updatable(trial_id, trial.state)
            if params:
                rows = []
                for param, (value, distribution, previous) in params.items():
                    _check_distribution(connection, trial.study_id, param, distribution, previous)
                    rows.append(
                        {
                            "trial_id": trial_id,
                            "param_name": param,
                            "param_value": value,
                            "distribution_json": distribution_to_json(distribution),
                        }
                    )
                connection.execute(models.TrialParamModel.__table__.insert(), rows)
            if intermediate_values:
                rows = []
                for step, item in intermediate_values.items():
                    stored, kind = to_stored(item)
                    rows.append(
                        {
                            "trial_id": trial_id,
                            "step": step,
                            "intermediate_value": stored,
                            "intermediate_value_type": kind,
                        }
                    )
                connection.execute(upsert_values, rows)
            for upsert, attrs in (
                (upsert_user_attrs, user_attrs),
                (upsert_system_attrs, system_attrs),
            ):
                if attrs:
                    connection.execute(
                        upsert,
                        [
                            {"trial_id": trial_id, "key": key, "value_json": json.dumps(item)}
                            for key, item in attrs.items()
                        ],
                    )
    except IntegrityError:
        if not params:
            raise


def _check_distribution(
    connection: Connection,
    study_id: int,
    param: str,
    distribution: BaseDistribution,
    previous: BaseDistribution | None,
) -> None:
    """Optuna's check of a new parameter: against the distribution its cache saw first, or
    else against one stored in the study (``_set_trial_param_without_commit``)."""
    if previous is None:
        stored_params, trials = models.TrialParamModel.__table__, models.TrialModel.__table__
        stored = connection.execute(
            select(stored_params.c.distribution_json)
            .join(trials, trials.c.trial_id == stored_params.c.trial_id)
            .where(trials.c.study_id == study_id, stored_params.c.param_name == param)
            .limit(1)
        ).scalar_one_or_none()
        if stored is None:
            return
        previous = json_to_distribution(stored)
    check_distribution_compatibility(previous, distribution)


@functools.cache
def _upserts(dialect_name: str) -> tuple[Any, Any, Any]:
    """Insert-or-update statements for a trial's intermediate values, user attributes and
    system attributes, on the unique keys of Optuna's tables; built once."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[dialect_name]
    values = models.TrialIntermediateValueModel.__table__
    value_insert = dialect.insert(values)
    statements: list[Any] = [
        value_insert.on_conflict_do_update(
            index_elements=[values.c.trial_id, values.c.step],
            set_={
                "intermediate_value": value_insert.excluded.intermediate_value,
                "intermediate_value_type": value_insert.excluded.intermediate_value_type,
            },
        )
    ]
    for model in (models.TrialUserAttributeModel, models.TrialSystemAttributeModel):
        attrs = model.__table__
        attr_insert = dialect.insert(attrs)
        statements.append(
            attr_insert.on_conflict_do_update(
                index_elements=[attrs.c.trial_id, attrs.c.key],
                set_={"value_json": attr_insert.excluded.value_json},
            )
        )
    return tuple(statements)


def _reading(storage: optuna.storages.RDBStorage) -> Connection:
    """A connection for one read, without a transaction around it: on PostgreSQL that
    saves the round trips of ``BEGIN`` and of the ``ROLLBACK`` when it is given back."""
    return storage.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def trial_states(
    storage: optuna.storages.RDBStorage, study_id: int, trial_ids: Iterable[int], after: int
) -> list[tuple[int, TrialState]]:
    """Id and state of the study's trials in ``trial_ids`` or with an id above ``after``:
    the trials a read of Optuna's cache would load whole, in one small query."""
    trials = models.TrialModel.__table__
    wanted = trials.c.trial_id > after
    ids = list(trial_ids)
    if ids:
        wanted = or_(wanted, trials.c.trial_id.in_(ids))
    with _reading(storage) as connection:
        rows = connection.execute(
            select(trials.c.trial_id, trials.c.state).where(trials.c.study_id == study_id, wanted)
        ).all()
    return [(int(trial_id), state) for trial_id, state in rows]


def trial_state_and_end(
    storage: optuna.storages.RDBStorage, trial_id: int
) -> tuple[TrialState, datetime | None]:
    """A trial's state and ``datetime_complete`` (as a ``FrozenTrial`` shows it: the column
    holds naive UTC, ``TrialModel.datetime_complete`` turns it into naive local time)."""
    trials = models.TrialModel.__table__
    with _reading(storage) as connection:
        row = connection.execute(
            select(trials.c.state, trials.c.datetime_complete).where(trials.c.trial_id == trial_id)
        ).one_or_none()
    if row is None:
        raise KeyError(models.NOT_FOUND_MSG)
    end = row.datetime_complete
    if end is not None:
        end = end.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)
    return row.state, end


class CachedStorage(_CachedStorage):
    """Optuna's per-process cache around an RDB storage (``_CachedStorage``: what
    ``optuna.create_study`` wraps an ``RDBStorage`` in), with what ``storage.cache`` needs
    of its insides, for the trials a worker holds.

    Optuna's cache reads every unfinished trial of the study again, whole (its parameters,
    values and attributes: six queries), at every read of the study: at every ``ask``,
    sampler and pruner look. A worker's own running trial is among them, and it has
    nothing new to read: this process wrote all of it. Here a read first asks the trials'
    ids and states (one small query), and loads whole only the others, and a trial of
    this process that is no longer running (failed by another worker, say).
    """

    def skips_reading(self, trial_id: int) -> bool:
        """Whether a RUNNING trial's cached copy is current (it need not be read again)."""
        return False

    def has_final_copy(self, trial_id: int) -> bool:
        """Whether a finished trial's cached copy is as stored (it need not be read)."""
        return False

    def trials_read(self, trials: list[FrozenTrial]) -> None:
        """Called with the trials a read has just put in the cache."""

    def cached_copy(self, trial_id: int) -> FrozenTrial | None:
        """A copy of the trial as reads of its study return it; None if not cached."""
        with self._lock:
            where = self._trial_id_to_study_id_and_number.get(trial_id)
            trial = None if where is None else self._studies[where[0]].trials.get(where[1])
            return copy.deepcopy(trial)

    def edit_cached(self, trial_id: int, edit: Callable[[FrozenTrial], None]) -> None:
        """Apply ``edit`` to the copy of a trial that reads of its study return.

        To a new copy, which then replaces it: a list of trials read before (a pruner's,
        a sampler's) keeps the trial as it was when read, as a list read from the
        database would.
        """
        with self._lock:
            where = self._trial_id_to_study_id_and_number.get(trial_id)
            if where is None:
                return
            trials = self._studies[where[0]].trials
            before = trials.get(where[1])
            if before is None:
                return
            after = copy.copy(before)
            after.params, after.distributions = dict(before.params), dict(before.distributions)
            after.user_attrs, after.system_attrs = (
                dict(before.user_attrs),
                dict(before.system_attrs),
            )
            after.intermediate_values = dict(before.intermediate_values)
            edit(after)
            trials[where[1]] = after

    def known_distribution(self, trial_id: int, param: str) -> BaseDistribution | None:
        """The distribution the cache saw first for ``param`` in the study of ``trial_id``
        (Optuna's cache checks every later one against it, and writes it with the next)."""
        with self._lock:
            study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
            return self._studies[study_id].param_distribution.get(param)

    def remember_distribution(
        self, trial_id: int, param: str, distribution: BaseDistribution
    ) -> None:
        with self._lock:
            study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
            self._studies[study_id].param_distribution.setdefault(param, distribution)

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """Optuna's read (``_CachedStorage._read_trials_from_remote_storage``), but trials
        that ``skips_reading`` are not loaded again while they run."""
        states = getattr(self._backend, "get_trial_states", None)
        if states is None:  # not regsweep's RDB storage
            super()._read_trials_from_remote_storage(study_id)
            return
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            study = self._studies[study_id]
            to_read = set()
            newest = study.last_finished_trial_id
            for trial_id, state in states(
                study_id, study.unfinished_trial_ids, study.last_finished_trial_id
            ):
                newest = max(newest, trial_id)
                if state == TrialState.RUNNING and self.skips_reading(trial_id):
                    study.unfinished_trial_ids.add(trial_id)  # read once it has finished
                elif state.is_finished() and self.has_final_copy(trial_id):
                    # As if read: told by this process, which knows what it stored.
                    study.last_finished_trial_id = max(study.last_finished_trial_id, trial_id)
                    study.unfinished_trial_ids.discard(trial_id)
                else:
                    to_read.add(trial_id)
            if not to_read:
                return
            # Optuna's own read of those: the ones listed, and any trial newer than every
            # trial the states query saw (created since). Not "newer than the ones listed":
            # that would load whole this worker's own running trial whenever an older
            # trial of another worker still runs.
            trials = self._backend._get_trials(
                study_id,
                states=None,
                included_trial_ids=to_read,
                trial_id_greater_than=newest,
            )
            if not trials:
                return
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:  # as Optuna's read does
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)
        self.trials_read(trials)


# -- Hyperband --------------------------------------------------------------------------


class HyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with its bracket studies made once and its brackets remembered.

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

    # (study name, trial number) -> bracket: Hyperband hashes both at every look, and its
    # bracket studies filter every trial of the study by it at every rung.
    _bracket_ids: dict[tuple[str, int], int] | None = None

    def _get_bracket_id(self, study: optuna.Study, trial: FrozenTrial) -> int:
        if not self._pruners:  # not set up yet (it sets up on the first prune): bracket 0
            return int(super()._get_bracket_id(study, trial))
        if self._bracket_ids is None:
            self._bracket_ids = {}
        key = (study.study_name, trial.number)
        if key not in self._bracket_ids:
            self._bracket_ids[key] = super()._get_bracket_id(study, trial)
        return self._bracket_ids[key]

    def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
        if self._bracket_studies is None:
            self._bracket_studies = {}
        key = (id(study), bracket_id)
        if key not in self._bracket_studies:
            bracket = super()._create_bracket_study(study, bracket_id)
            bracket._thread_local = study._thread_local  # the study's per-trial cache
            self._bracket_studies[key] = bracket
        return self._bracket_studies[key]
