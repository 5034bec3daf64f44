"""The trial lifecycle's crash holes, each reproduced on a real SQLite study.

Each test here failed before the lifecycle was one module (issue "One trial lifecycle"):
retry chains, trials stranded without a heartbeat, an interrupt before the first
parameter, a budget lock that was process-local, SIGTERM after a swallowed Ctrl-C.
The same holes with real worker processes are in test_lifecycle_processes.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from regsweep.signals import (
    Terminated,
    raise_pending_interrupt,
    requeued_by,
    signals_deferred,
    sigterm_as_exception,
)
from regsweep.storage import private
from regsweep.storage.locks import advisory_key, creation_lock, study_lock
from regsweep.storage.rdb import build_storage
from regsweep.storage.settings import HeartbeatSettings
from regsweep.sweep.budget import INTERRUPTED_ATTR, RETRY_ATTR, retried_number, usage
from regsweep.sweep.lifecycle import Lifecycle
from regsweep.sweep.solo import run_trials
from tests.processes import unique_name
from tests.proxy import ReplyCutter

# The smallest settings the sweep file allows: a trial is stale 2 s after its last beat.
FAST = HeartbeatSettings(interval=1, grace_period=2, max_retry=5)


def sqlite_storage(
    tmp_path: Path, heartbeat: HeartbeatSettings | None = FAST
) -> optuna.storages.RDBStorage:
    return build_storage(f"sqlite:///{tmp_path / 'lifecycle.db'}", heartbeat)


def quadratic(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -1, 1) ** 2


def test_a_retry_chain_counts_once_in_the_budget(tmp_path: Path) -> None:
    """A failed, B (its retry) failed, C (B's retry) complete: one trial of the budget."""
    storage = sqlite_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="chain")
    a = study.ask()
    a.suggest_float("x", -1, 1)
    for _ in range(2):  # A then B: each beats once, then its "worker" dies
        trial = a if _ == 0 else study.ask()
        storage.record_heartbeat(private.trial_id(trial))
        time.sleep(FAST.grace_period + 1.2)
        optuna.storages.fail_stale_trials(study)  # Optuna's own recovery queues the retry
    c = study.ask()
    study.tell(c, 0.5)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert [retried_number(t) for t in trials] == [None, 0, 1]
    assert usage(study).finished == 1


def test_a_running_trial_that_never_had_a_heartbeat_is_recovered(tmp_path: Path) -> None:
    """A worker killed between ask and its first heartbeat: the trial is failed and retried."""
    storage = sqlite_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="orphan")
    orphan = study.ask()  # RUNNING, no heartbeat row: what the killed worker left
    orphan.suggest_float("x", -1, 1)
    life = Lifecycle(study, storage, n_trials=1)
    # Within the grace period it may still be starting.
    assert [t.state for t in life.recover_stale()] == [TrialState.RUNNING]
    time.sleep(FAST.grace_period + 0.5)
    frozen = life.recover_stale()  # the trials as recovery left them
    assert frozen == study.get_trials()
    assert [t.state for t in frozen] == [TrialState.FAIL, TrialState.WAITING]
    assert "heartbeat" in frozen[0].user_attrs["fail_reason"]
    assert retried_number(frozen[1]) == orphan.number
    outcome = run_trials(study, quadratic, n_trials=1, storage=storage)
    assert outcome.budget_reached
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
    assert usage(study).finished == 1


def test_a_taken_trial_has_a_heartbeat_as_soon_as_it_is_taken(tmp_path: Path) -> None:
    """The first beat is part of taking the trial (under the study lock), not a thread's."""
    storage = sqlite_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="first-beat")
    with Lifecycle(study, storage, n_trials=1) as life:
        trial = life.take()
        assert trial is not None
        assert private.trial_id(trial) in _beating(storage)
        life.tell(trial, value=1.0)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]


def _beating(storage: optuna.storages.RDBStorage) -> set[int]:
    from optuna.storages._rdb import models  # the test reads the heartbeat table itself
    from sqlalchemy.orm import Session

    with Session(storage.engine) as session:
        return {row[0] for row in session.query(models.TrialHeartbeatModel.trial_id).all()}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_before_the_first_parameter_costs_no_budget(
    tmp_path: Path, signum: int
) -> None:
    storage = sqlite_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="early-signal")

    def signalled_at_once(trial: optuna.Trial) -> float:
        os.kill(os.getpid(), signum)  # lands before any suggest_*: the trial has no params
        time.sleep(5)  # never reached: the handler raises
        return 0.0

    expected = KeyboardInterrupt if signum == signal.SIGINT else Terminated
    with sigterm_as_exception(), pytest.raises(expected):
        run_trials(study, signalled_at_once, n_trials=3, storage=storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].params == {}
    assert trials[0].user_attrs[INTERRUPTED_ATTR] is True
    assert trials[1].user_attrs[RETRY_ATTR] == 0
    assert usage(study).finished == 0
    outcome = run_trials(study, quadratic, n_trials=3, storage=storage)
    assert outcome.budget_reached
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 3 and usage(study).finished == 3


def test_an_interrupted_trial_never_counts_even_if_its_retry_was_not_queued(
    tmp_path: Path,
) -> None:
    """The worker died right after failing the trial: the slot still goes back."""
    storage = sqlite_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="no-retry")
    trial = study.ask()
    trial.set_user_attr(INTERRUPTED_ATTR, True)
    study.tell(trial, state=TrialState.FAIL)
    assert usage(study).finished == 0


# A worker that recovers a stale trial in two writes (FAIL, then the retry's INSERT), and
# is SIGKILLed between them: the kill the admitting chaos test once landed by chance.
KILLED_WHILE_RECOVERING = """
import os, signal, sys
import optuna, sqlalchemy
from regsweep.storage.rdb import build_storage
from regsweep.storage.settings import HeartbeatSettings
from regsweep.sweep.lifecycle import Lifecycle

storage = build_storage(sys.argv[1], HeartbeatSettings(interval=1, grace_period=2, max_retry=5))
study = optuna.load_study(study_name=sys.argv[2], storage=storage)

@sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
def die_before_the_retry(conn, cursor, statement, *args):
    if statement.startswith("INSERT INTO trials "):  # a retry's row: the FAILs are committed
        os.kill(os.getpid(), signal.SIGKILL)

with Lifecycle(study, storage, n_trials=2) as life:
    life.take()
sys.exit("no retry was ever inserted")
"""


def test_a_worker_killed_while_recovering_leaves_no_failure_without_its_retry(
    tmp_path: Path,
) -> None:
    """Before: the FAIL without a retry counted as a finished trial, and nobody retried it;
    a survivor ended the study short of its budget. Now the next take queues the retry."""
    storage = sqlite_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="recovering")
    dead = []
    for _ in range(2):  # two trials of a worker that died after one heartbeat
        trial = study.ask()
        trial.suggest_float("x", -1, 1)
        storage.record_heartbeat(private.trial_id(trial))
        dead.append(trial)
    time.sleep(FAST.grace_period + 1.2)
    recovering = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_RECOVERING, storage.url, study.study_name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert recovering.returncode == -signal.SIGKILL, recovering.stderr
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]

    with Lifecycle(study, storage, n_trials=2) as life:
        retries = [life.take(), life.take()]
        assert None not in retries, "the failed trials were counted as finished, not retried"
        for trial in retries:
            assert trial is not None
            life.tell(trial, value=trial.params["x"] ** 2)
        assert life.take() is None  # the two retries are the whole budget
    trials = study.get_trials()
    assert sorted(retried_number(t) for t in trials if t.state == TrialState.COMPLETE) == [0, 1]
    assert [t.params for t in trials[2:]] == [t.params for t in dead]
    assert usage(study).finished == 2


def test_an_interrupted_trial_is_queued_again_before_another_worker_can_take_its_slot(
    tmp_path: Path,
) -> None:
    """Failing an interrupted trial frees its slot, and queuing its retry takes the slot
    back: two writes. Before: a worker taking between them saw a free slot and asked a new
    trial, and the retry then put the study one trial over its budget. Now both writes
    happen under the study lock, and the other worker takes the retry."""
    storage = sqlite_storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="requeue")
    other_storage = sqlite_storage(tmp_path)  # another worker, with its own connections
    other_study = optuna.load_study(study_name="requeue", storage=other_storage)
    enqueue = study.enqueue_trial
    takers: list[threading.Thread] = []
    taken_by_other: list[optuna.Trial | None] = []

    def enqueue_while_another_worker_takes(*args: object, **kwargs: object) -> None:
        # Only the instant is chosen here: the other worker and its lock are real.
        with Lifecycle(other_study, other_storage, n_trials=1) as other:
            taker = threading.Thread(target=lambda: taken_by_other.append(other.take()))
            takers.append(taker)
            taker.start()
            taker.join(3)  # before the fix, it takes the freed slot at once
            enqueue(*args, **kwargs)  # type: ignore[arg-type]

    with Lifecycle(study, storage, n_trials=1) as life:
        trial = life.next_trial()
        assert trial is not None
        trial.suggest_float("x", -1, 1)
        study.enqueue_trial = enqueue_while_another_worker_takes  # type: ignore[method-assign]
        assert life.fail_and_requeue("terminated (SIGTERM)") == [trial.number]
    takers[0].join(30)
    (taken,) = taken_by_other
    assert taken is not None
    assert usage(study).used == 1, [(t.number, t.state.name) for t in study.get_trials()]
    assert retried_number(study.get_trials()[taken.number]) == trial.number


def test_the_budget_lock_is_shared_between_processes_without_heartbeats(
    tmp_path: Path,
) -> None:
    """Without heartbeats the loop must still lock the database, not a process-local lock."""
    storage = sqlite_storage(tmp_path, heartbeat=None)
    study = optuna.create_study(storage=storage, study_name="no-heartbeat")
    # A study loaded as a user would: study._storage is Optuna's cache around the storage.
    loaded = optuna.load_study(study_name="no-heartbeat", storage=storage.url)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another worker inside the lock, as a separate holder
        with study_lock(storage, study.study_name):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    runner = threading.Thread(target=run_trials, args=(loaded, quadratic), kwargs={"n_trials": 1})
    runner.start()
    time.sleep(1.5)
    assert study.get_trials() == []  # blocked on the lock the other holder has
    release.set()
    holder.join()
    runner.join(30)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]


LOCKS = {
    "tables": lambda storage: creation_lock(storage.engine.url),
    "study a": lambda storage: study_lock(storage, "a"),
    "study b": lambda storage: study_lock(storage, "b"),
}


@pytest.mark.parametrize(
    ("held", "wanted"), [("tables", "study a"), ("study a", "tables"), ("study a", "study b")]
)
def test_table_creation_and_each_study_have_their_own_lock(
    tmp_path: Path, held: str, wanted: str
) -> None:
    storage = sqlite_storage(tmp_path, heartbeat=None)
    holding, release, got = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with LOCKS[held](storage):
            holding.set()
            release.wait(10)

    def take() -> None:
        with LOCKS[wanted](storage):
            got.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    taker = threading.Thread(target=take)
    taker.start()
    try:
        assert got.wait(3), f"the {wanted} lock waited for the {held} lock"
    finally:
        release.set()
        holder.join()
        taker.join()


def test_sigterm_after_a_swallowed_ctrl_c_ends_as_sigterm() -> None:
    with sigterm_as_exception(), pytest.raises(Terminated):
        with signals_deferred(raise_after=False):  # a Ctrl-C lands where it is swallowed
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)  # then the scheduler stops the worker
        raise_pending_interrupt()


@pytest.mark.postgres
def test_a_study_lock_lost_while_taking_a_trial_never_overdraws_the_budget(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the session that holds a worker's study lock (``pg_terminate_backend``,
    a restart) after the worker checked the budget and before its ``ask``. The advisory
    lock ends with the session, so a second worker checks the same free slot and takes it.
    Before: two trials RUNNING for a budget of one. Now the first checks again and gives
    its trial back."""
    name = unique_name("lost-lock")
    storage = build_storage(postgres_url, FAST)
    study = optuna.create_study(storage=storage, study_name=name)
    other_storage = build_storage(postgres_url, FAST)  # another worker: its own engine
    other_study = optuna.load_study(study_name=name, storage=other_storage)
    admin = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.NullPool)
    taken_by_other: list[optuna.Trial | None] = []
    ask = study.ask

    def ask_after_the_lock_is_lost() -> optuna.Trial:
        # Only the ask's instant is chosen here; the session's end and the other worker
        # are real. The lock's holder is found by its key, as other tests share the server.
        with admin.connect() as connection:
            ended = connection.execute(
                sqlalchemy.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = "
                    "'advisory' AND granted AND classid = 0 AND objid = CAST(:key AS oid)"
                ),
                {"key": advisory_key(name)},
            ).scalars()
            assert list(ended) == [True]
        with Lifecycle(other_study, other_storage, n_trials=1) as other:
            taken_by_other.append(other.take())  # waits until the server has ended it
        return ask()

    study.ask = ask_after_the_lock_is_lost  # type: ignore[method-assign]
    try:
        with Lifecycle(study, storage, n_trials=1) as life:
            assert life.take() is None
            assert life.running == {}
        (kept,) = taken_by_other
        assert kept is not None
        trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
        assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.FAIL]
        assert trials[0].number == kept.number
        assert trials[1].user_attrs[INTERRUPTED_ATTR] is True  # it never counts
        assert usage(study).used == 1
        assert caplog.text.count(f"trial {trials[1].number} given back") == 1
    finally:
        admin.dispose()
        optuna.delete_study(study_name=name, storage=postgres_url)


@pytest.mark.postgres
def test_an_interrupt_whose_clean_up_loses_the_database_still_stops_as_the_interrupt(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM, and the database is gone when the worker fails its trial: the stop must
    still end as a stop (143), not as "lost the database" (exit 1), and say in one line
    what it could not do. Seen under ``docker compose stop`` with one-epoch trials."""
    parsed = make_url(postgres_url)
    proxy = ReplyCutter(parsed.host or "127.0.0.1", parsed.port or 5432)
    url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    name = unique_name("lost-at-stop")
    study = optuna.create_study(storage=build_storage(url, FAST), study_name=name)
    try:
        with (
            Lifecycle(study, n_trials=2) as life,
            pytest.raises(Terminated) as stopped,
            life.guard(),
        ):
            trial = life.next_trial()
            assert trial is not None
            proxy.sever()
            raise Terminated()
        # Before: the clean-up's OperationalError replaced the Terminated.
        assert requeued_by(stopped.value) == []
        assert f"could not fail and queue again trial {trial.number}" in caplog.text
        # Left RUNNING with its heartbeat row: a survivor's heartbeat check recovers it.
        direct = build_storage(postgres_url, FAST)
        left = optuna.load_study(study_name=name, storage=direct).get_trials()
        assert [t.state for t in left] == [TrialState.RUNNING]
        assert private.stale_trial_ids(direct, direct.get_study_id_from_name(name)) == []
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)
