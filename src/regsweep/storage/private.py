"""The one module on Optuna's private API: what regsweep needs and Optuna does not expose.

Each function names the private thing it reads, so an Optuna upgrade is fixed here alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import optuna
from optuna.storages._rdb import models  # private: the ORM models of Optuna's tables
from optuna.trial import TrialState
from sqlalchemy import func, select
from sqlalchemy.orm import Session


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
