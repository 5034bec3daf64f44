"""One trial lifecycle: take a trial, keep it alive, tell it, and clean up after any stop.

Every state change of a trial in regsweep happens here, as in Optuna's own
``study.optimize``; the solo loop (``solo.py``) and the packed loop (``packed.py``) are two
short drivers over it. What it adds to Optuna's loop is what a sweep service needs:

- a budget shared by every worker, checked and taken under one lock per study;
- a heartbeat from the moment a trial is taken (recorded before that lock is released),
  so that a worker killed at any instant leaves a trial that others can recover;
- one wait-and-recover policy: a worker with nothing left to take waits while trials
  run elsewhere, failing and retrying those whose worker is gone;
- interrupts (Ctrl-C, SIGTERM) that fail and queue again every trial the worker holds,
  whatever instant they land on, without using up the budget;
- a trial failed elsewhere (its heartbeat looked stale) is dropped with one line.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from regsweep.signals import (
    Terminated,
    note_requeued,
    raise_pending_interrupt,
    signals_deferred,
)
from regsweep.storage import private
from regsweep.storage.locks import study_lock
from regsweep.sweep.budget import (
    INTERRUPTED_ATTR,
    RETRY_ATTR,
    Usage,
    retried_numbers,
    usage,
    usage_of,
)
from regsweep.sweep.placement import scheduler_attrs

log = logging.getLogger("regsweep")

# regsweep runs its own heartbeat thread around ask/tell, which Optuna cannot see.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

# The trial's user attributes that say who ran it and why it failed.
WORKER_ATTR = "worker"
FAIL_REASON_ATTR = "fail_reason"

# How often a worker with nothing left to take looks again at trials running elsewhere.
WAIT_POLL_S = 2.0

# The fail reason of a trial whose worker is gone. Every path that fails a trial writes
# its own reason, so a failed trial with this one was failed by heartbeat recovery (a
# retry starts without its parent's attributes: storage.rdb.FreshRetry).
STALE_REASON = "its worker sent no heartbeat"
STALE_CAUSES = "(killed, out of memory, or cut off from the database)"
# The fail reason of a trial taken beyond the budget by a worker whose study lock was lost.
GIVEN_BACK_REASON = "given back: taken beyond the budget while its worker's study lock was lost"


def failed_as_stale(trial: FrozenTrial) -> bool:
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    return trial.state == TrialState.FAIL and str(reason).startswith(STALE_REASON)


def worker_name() -> str:
    """``host:pid``, as shown in logs, trials and the database's connection list."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunListener(Protocol):
    def trial_started(self, trial: optuna.Trial) -> None: ...

    def trial_finished(self, trial: FrozenTrial) -> None: ...

    def waiting_for_others(self, running: int) -> None: ...


@dataclass
class RunOutcome:
    finished: list[FrozenTrial] = field(default_factory=list)
    reason: str = ""  # why the loop stopped: budget reached, timeout
    budget_reached: bool = False
    dropped: list[int] = field(default_factory=list)  # trials failed by another worker

    def count(self, state: TrialState) -> int:
        return sum(1 for t in self.finished if t.state == state)


class Heartbeat:
    """One thread that records a heartbeat, every interval, for each trial this worker holds."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.storage = storage if isinstance(storage, optuna.storages.RDBStorage) else None
        self.interval = self.storage.get_heartbeat_interval() if self.storage else None
        self._ids: dict[int, int] = {}  # trial number -> trial id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self.storage is not None and self.interval is not None

    def add(self, trial: optuna.Trial) -> None:
        """Start beating for ``trial``, with a first beat now (raises if the storage fails)."""
        if not self.enabled:
            return
        assert self.storage is not None
        trial_id = private.trial_id(trial)
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self._ids[trial.number] = trial_id

    def discard(self, number: int) -> None:
        with self._lock:
            self._ids.pop(number, None)

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        assert self.storage is not None and self.interval is not None
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self._ids.values())
            try:
                for trial_id in ids:
                    self.storage.record_heartbeat(trial_id)
            except Exception as exc:  # a dropped connection: try again at the next beat
                if not self._failing:
                    log.warning("heartbeat failed (%s); retrying every %ss", exc, self.interval)
                self._failing = True
            else:
                if self._failing:
                    log.warning("heartbeat recovered")
                self._failing = False


class Lifecycle:
    """The trials one worker holds, from taking them to telling them.

    Use it as a context manager (it runs the heartbeat thread) and run every step that
    touches a held trial inside :meth:`guard`, which fails and re-queues them on an
    interrupt and fails them on a crash.
    """

    def __init__(
        self,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage | None = None,
        *,
        n_trials: int,
        timeout: float | None = None,
        listener: RunListener | None = None,
    ) -> None:
        self.study = study
        # The storage the study was opened on: its lock keeps the budget exact between
        # workers, its heartbeats (when enabled) let survivors recover a dead worker's trial.
        self.storage = storage if storage is not None else private.study_storage(study)
        self.n_trials = n_trials
        self.timeout = timeout
        self.listener = listener
        self.heartbeat = Heartbeat(self.storage)
        self.running: dict[int, optuna.Trial] = {}
        self.outcome = RunOutcome()
        self._started = time.monotonic()
        self._last: Usage | None = None
        self._budget_full = False  # the last take found the budget used up
        self._study_id: int | None = None
        self._requeued: list[int] = []  # by the last fail_and_requeue, also if it failed

    def __enter__(self) -> Lifecycle:
        self.heartbeat.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.heartbeat.__exit__(*exc)

    # -- taking -------------------------------------------------------------------------

    def take(self) -> optuna.Trial | None:
        """A new trial of the budget for this worker, or None if there is none to take now.

        Under the study lock: recover trials whose worker is gone, check the budget, ask,
        and record the trial's first heartbeat, so that no instant exists at which this
        worker holds a trial that nobody could recover if it died.
        """
        raise_pending_interrupt()
        if self.timeout is not None and time.monotonic() - self._started >= self.timeout:
            self.outcome.reason = f"timeout of {self.timeout:g} s reached"
            self._last, self._budget_full = None, False
            return None
        # A signal landing inside the lock would leave the lock held on a pooled connection
        # or an asked trial untracked: it waits until the trial is in self.running.
        with (
            signals_deferred(raise_after=False),
            study_lock(self.storage, self.study.study_name) as lock,
        ):
            trials = self.recover_stale() if self.heartbeat.enabled else None
            if not self._budget_has_room(trials):
                return None
            trial = self.study.ask()  # takes a queued (retried) trial first, if any
            self.running[trial.number] = trial
            self.heartbeat.add(trial)
            lock_held = lock.intact()
        if not lock_held and not self._confirm(trial):
            return None if self._budget_full else self.take()
        raise_pending_interrupt()  # one that came while the trial was being taken
        # Who runs it: host:pid, and the Slurm job where there is one.
        for key, value in {WORKER_ATTR: worker_name(), **scheduler_attrs()}.items():
            trial.set_user_attr(key, value)
        if self.listener is not None:
            self.listener.trial_started(trial)
        return trial

    def _budget_has_room(self, trials: list[FrozenTrial] | None = None) -> bool:
        used = self._last = usage(self.study) if trials is None else usage_of(trials)
        self._budget_full = used.waiting == 0 and used.used >= self.n_trials
        if self._budget_full:
            self.outcome.reason = f"budget of {self.n_trials} trials reached"
        return not self._budget_full

    def _confirm(self, trial: optuna.Trial) -> bool:
        """Keep ``trial``, taken while the study lock was lost, only if the budget allows.

        The server ended the lock's session (a restart, ``pg_terminate_backend``) between
        the budget check and the ask, so another worker may have checked the same free
        slot and taken it too. Checked again under the lock: a trial beyond the budget is
        given back, failed as one that never counts (``INTERRUPTED_ATTR``) and not
        queued again, since the trial the other worker took stands in for it.
        """
        with signals_deferred(raise_after=False), study_lock(self.storage, self.study.study_name):
            used = usage(self.study)
            if used.used <= self.n_trials:
                return True
            self._fail(trial, GIVEN_BACK_REASON, interrupted=True)
            self._budget_has_room()  # without the trial given back
        log.warning(
            "trial %d given back: this worker lost its database session (and the study "
            "lock) while taking it, and another worker took the last free slot meanwhile",
            trial.number,
        )
        return False

    def should_wait(self) -> bool:
        """Nothing to take now, but trials run elsewhere: if their worker dies, a survivor
        must run the retry, so a worker waits for them rather than exit."""
        if self._last is None or not self.heartbeat.enabled:
            return False
        return self._last.running > len(self.running)

    def wait(self) -> None:
        assert self._last is not None
        if self.listener is not None:
            self.listener.waiting_for_others(self._last.running - len(self.running))
        time.sleep(min(WAIT_POLL_S, float(self.heartbeat.interval or 1)))

    def next_trial(self) -> optuna.Trial | None:
        """Take the next trial, waiting for trials running elsewhere; None when done."""
        while True:
            trial = self.take()
            if trial is not None:
                return trial
            if not self.should_wait():
                self.done()
                return None
            self.wait()

    def done(self) -> None:
        """Nothing left to take or wait for: record why the loop ends."""
        self.outcome.budget_reached = self._budget_full

    def recover_stale(self) -> list[FrozenTrial]:
        """Fail the trials whose worker stopped sending heartbeats, and queue their retries;
        returns the study's trials as they are afterwards.

        Optuna's ``fail_stale_trials`` does this too, but without saying why a trial
        failed and without the trials that died before their first heartbeat. Failing a
        trial and queuing its retry are two writes, and a worker can be killed between
        them; so the retries are queued for every trial failed as stale that has none yet,
        not only for those failed just now. The study lock (held by :meth:`take`) makes
        this run in one worker at a time, so each failure gets one retry.
        """
        storage = self.storage
        assert isinstance(storage, optuna.storages.RDBStorage)
        if self._study_id is None:  # looked up once: this runs before every take
            self._study_id = storage.get_study_id_from_name(self.study.study_name)
        study_id = self._study_id
        grace = private.grace_period_s(storage)
        for trial_id in private.stale_trial_ids(storage, study_id):
            reason = f"{STALE_REASON} for over {grace:g} s {STALE_CAUSES}"
            try:
                storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
                storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                pass  # another worker recovered it first, or its worker told it just now
        trials = self.study.get_trials(deepcopy=False)
        callback = storage.get_heartbeat_stale_trial_callback()
        if callback is None:
            return trials
        stale = [t for t in trials if failed_as_stale(t)]  # cheap: most studies have none
        retried = retried_numbers(trials) if stale else set()
        unretried = [t for t in stale if t.number not in retried]
        for trial in unretried:
            # A copy: the callback appends to the trial's own retry history list. It
            # queues nothing once the chain is max_retry long.
            callback(self.study, copy.deepcopy(trial))
        # Read again only if retries may have been queued: most takes find none to queue.
        return self.study.get_trials(deepcopy=False) if unretried else trials

    # -- telling ------------------------------------------------------------------------

    def tell(
        self,
        trial: optuna.Trial,
        *,
        value: float | None = None,
        state: TrialState = TrialState.COMPLETE,
        attrs: dict[str, Any] | None = None,
    ) -> FrozenTrial | None:
        """Record ``attrs`` and finish ``trial``; None if another worker had failed it."""
        if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
            attrs = {**(attrs or {}), FAIL_REASON_ATTR: f"objective returned {value}"}
            state, value = TrialState.FAIL, None
        with signals_deferred():  # told whole, or (after an interrupt) failed and re-queued
            try:
                for key, item in (attrs or {}).items():
                    trial.set_user_attr(key, item)
                # skip_if_finished: failed elsewhere between the attributes and the tell.
                if state == TrialState.COMPLETE:
                    frozen = self.study.tell(trial, value, skip_if_finished=True)
                else:
                    frozen = self.study.tell(trial, state=state, skip_if_finished=True)
            except UpdateFinishedTrialError:
                frozen = None
            if frozen is None or frozen.state != state:
                self.drop(trial)
                return None
            self._forget(trial.number)
        self.outcome.finished.append(frozen)
        if self.listener is not None:
            self.listener.trial_finished(frozen)
        return frozen

    def drop(self, trial: optuna.Trial) -> None:
        """Let go of a trial that another worker failed (it judged our heartbeat stale)."""
        self._forget(trial.number)
        self.outcome.dropped.append(trial.number)
        log.warning(
            "trial %d was failed by another worker (our heartbeat looked stale to it); "
            "dropped, its retry runs elsewhere",
            trial.number,
        )

    def finished_elsewhere(self, trial: optuna.Trial) -> bool:
        frozen = self.storage.get_trial(private.trial_id(trial))
        return frozen.state.is_finished()

    def _forget(self, number: int) -> None:
        self.running.pop(number, None)
        self.heartbeat.discard(number)

    # -- stopping -----------------------------------------------------------------------

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run a step over the held trials: an interrupt fails and re-queues them all, a
        crash fails them, and a trial failed elsewhere is dropped and the step skipped."""
        try:
            yield
        except (KeyboardInterrupt, Terminated) as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated (SIGTERM)"
            with signals_deferred():  # a second Ctrl-C must not leave a trial half-told
                note_requeued(exc, self._requeue_after(reason))
            raise
        except UpdateFinishedTrialError:
            with signals_deferred():
                for trial in list(self.running.values()):
                    if self.finished_elsewhere(trial):
                        self.drop(trial)
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            # The database went away in the middle of a step, and the worker stops (it
            # says so in one line). Its trials are no finding: they go back to the queue
            # if the database still answers, else the heartbeat check recovers them.
            with signals_deferred(), contextlib.suppress(Exception):
                self.fail_and_requeue(f"its worker lost the database ({type(exc).__name__})")
            raise
        except Exception as exc:
            with signals_deferred():
                for trial in list(self.running.values()):
                    self._fail(trial, f"{type(exc).__name__}: {exc}")
            raise

    def _requeue_after(self, reason: str) -> list[int]:
        """:meth:`fail_and_requeue` after an interrupt, which stands whatever the database
        does: a clean-up that loses the database leaves one line, not a crash in place of
        the stop (exit 1 instead of 130 or 143). Nothing is lost: an interrupted trial
        never counts in the budget, and one left RUNNING keeps its heartbeat row, so
        another worker recovers it after the grace period."""
        held = sorted(self.running)
        try:
            return self.fail_and_requeue(reason)
        except Exception as exc:
            left = [n for n in held if n not in self._requeued]
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
            log.warning(
                "could not fail and queue again trial %s (%s: %s); the budget keeps its "
                "slot, and another worker's heartbeat check recovers it",
                ", ".join(map(str, left)),
                type(exc).__name__,
                detail,
            )
            return list(self._requeued)

    def fail_and_requeue(self, reason: str) -> list[int]:
        """End every held trial as FAIL and queue it again; returns their numbers.

        A trial is queued again even before it has any parameter (the signal landed
        between ``ask`` and the first suggestion): the budget counts the retry, never the
        interrupted trial (``INTERRUPTED_ATTR``), so a stop costs no slot, whatever the
        instant it lands on, even if this process dies before the retry is queued.
        """
        requeued = self._requeued = []
        if not self.running:
            return requeued
        # Under the study lock: once failed, a trial no longer counts, and its retry counts
        # in its place; a worker taking in between would see a free slot, and the retry
        # would then put the study one trial over its budget.
        with study_lock(self.storage, self.study.study_name):
            for trial in list(self.running.values()):
                if not self._fail(trial, reason, interrupted=True):
                    continue
                retry = {RETRY_ATTR: trial.number}
                self.study.enqueue_trial(dict(trial.params), user_attrs=retry)
                requeued.append(trial.number)
        return requeued

    def _fail(self, trial: optuna.Trial, reason: str, *, interrupted: bool = False) -> bool:
        """Fail ``trial`` with ``reason``; False if it was already finished."""
        self._forget(trial.number)
        try:
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            if interrupted:
                trial.set_user_attr(INTERRUPTED_ATTR, True)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except UpdateFinishedTrialError:
            return False  # told just before the signal, or failed elsewhere as stale
        return True
