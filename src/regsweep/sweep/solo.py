"""The study loop: reserve a slot in the budget, ask, train, tell, repeat.

It owns every trial state change, as Optuna's own ``study.optimize`` does, and adds
what a sweep service needs: a budget shared by all workers, heartbeats for crash
recovery, and interruption (Ctrl-C, SIGTERM) that leaves no trial RUNNING.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from regsweep.errors import TrialDiverged

# Re-exported: the signal handling started here and other modules import it from here.
from regsweep.signals import Terminated as Terminated
from regsweep.signals import raise_pending_interrupt as raise_pending_interrupt
from regsweep.signals import signals_deferred as signals_deferred
from regsweep.signals import sigterm_as_exception as sigterm_as_exception
from regsweep.storage.locks import study_lock
from regsweep.sweep.budget import RETRY_ATTR, Usage, usage

# regsweep runs its own heartbeat thread around ask/tell, which Optuna cannot see.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


class RunListener(Protocol):
    def trial_started(self, trial: optuna.Trial) -> None: ...

    def trial_finished(self, trial: FrozenTrial) -> None: ...

    def waiting_for_others(self, running: int) -> None: ...


@dataclass
class RunOutcome:
    finished: list[FrozenTrial] = field(default_factory=list)
    reason: str = ""  # why the loop stopped: budget reached, timeout
    budget_reached: bool = False

    def count(self, state: TrialState) -> int:
        return sum(1 for t in self.finished if t.state == state)


ObjectiveFn = Callable[[optuna.Trial], float]

# The trial's user attribute naming the worker that ran it.
WORKER_ATTR = "worker"


def worker_name() -> str:
    """``host:pid``, as shown in logs, trials and the database's connection list."""
    return f"{socket.gethostname()}:{os.getpid()}"


# How often a worker with nothing left to ask for looks again at the trials other workers run.
WAIT_POLL_S = 2.0


def run_trials(
    study: optuna.Study,
    objective: ObjectiveFn,
    *,
    n_trials: int,
    timeout: float | None = None,
    listener: RunListener | None = None,
    heartbeat_storage: optuna.storages.BaseStorage | None = None,
) -> RunOutcome:
    """Run trials until the study holds ``n_trials`` (all workers together) or time runs out.

    ``heartbeat_storage`` is the storage to send heartbeats to, when it has them enabled.
    With heartbeats, a worker whose budget is used up by trials still running elsewhere
    waits for them: if their worker died, one of the survivors must run the retry.
    """
    outcome = RunOutcome()
    started = time.monotonic()
    storage = heartbeat_storage
    beating: BaseHeartbeat | None = None
    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None:
        beating = storage
    while True:
        raise_pending_interrupt()
        if timeout is not None and time.monotonic() - started >= timeout:
            outcome.reason = f"timeout of {timeout:g} s reached"
            break
        if beating is not None:
            # Fails (and re-queues) trials whose worker died: what optimize() does too.
            optuna.storages.fail_stale_trials(study)
        trial, used = _reserve(study, n_trials, storage)
        if trial is None:
            if beating is not None and used.running > 0:
                if listener is not None:
                    listener.waiting_for_others(used.running)
                time.sleep(min(WAIT_POLL_S, float(beating.get_heartbeat_interval() or 1)))
                continue
            outcome.reason = f"budget of {n_trials} trials reached"
            outcome.budget_reached = True
            break
        frozen = _run_guarded(study, objective, trial, listener, beating)
        outcome.finished.append(frozen)
        if listener is not None:
            listener.trial_finished(frozen)
    return outcome


def _reserve(
    study: optuna.Study, n_trials: int, storage: optuna.storages.BaseStorage | None
) -> tuple[optuna.Trial | None, Usage]:
    # A signal landing here would leave an asked trial RUNNING, or the study's lock held
    # on a pooled connection: it is deferred until the trial is ours to clean up, in
    # _run_guarded.
    lock = study_lock(storage or _storage_of(study), study.study_name)
    with signals_deferred(raise_after=False), lock:
        used = usage(study)
        if used.waiting == 0 and used.used >= n_trials:
            return None, used
        return study.ask(), used  # takes a queued (retried) trial first, if any


def _storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage  # only for in-memory studies in tests; workers pass their storage


def _run_guarded(
    study: optuna.Study,
    objective: ObjectiveFn,
    trial: optuna.Trial,
    listener: RunListener | None,
    heartbeat_storage: BaseHeartbeat | None,
) -> FrozenTrial:
    """Run one asked trial; an interruption anywhere ends it as failed and queued again."""
    try:
        with _heartbeat(heartbeat_storage, study, trial):
            raise_pending_interrupt()  # one that came while the trial was being asked
            trial.set_user_attr(WORKER_ATTR, worker_name())
            if listener is not None:
                listener.trial_started(trial)
            return _run_one(study, objective, trial)
    except (KeyboardInterrupt, Terminated) as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated (SIGTERM)"
        with signals_deferred():  # a second Ctrl-C must not leave the trial half-told
            _fail_and_requeue(study, trial, reason)
        raise


def _run_one(study: optuna.Study, objective: ObjectiveFn, trial: optuna.Trial) -> FrozenTrial:
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        with signals_deferred():
            return study.tell(trial, state=TrialState.PRUNED)
    except TrialDiverged:
        # The objective recorded the reason; a diverged trial is a finding, not a crash.
        with signals_deferred():
            return study.tell(trial, state=TrialState.FAIL)
    except Exception as exc:
        with signals_deferred():
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
        raise
    with signals_deferred():
        if not math.isfinite(value):
            trial.set_user_attr("fail_reason", f"objective returned {value}")
            return study.tell(trial, state=TrialState.FAIL)
        return study.tell(trial, value)


def _fail_and_requeue(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """End an interrupted trial as FAIL and queue its params, so a resumed study reruns it."""
    storage = study._storage
    if storage.get_trial(trial._trial_id).state.is_finished():
        return  # the signal came after the trial was told: nothing to undo
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
    if trial.params:
        study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: trial.number})


@contextlib.contextmanager
def _heartbeat(
    storage: BaseHeartbeat | None, study: optuna.Study, trial: optuna.Trial
) -> Iterator[None]:
    """Record a heartbeat for ``trial`` every interval, from a thread, while it runs."""
    if storage is None or not isinstance(storage, optuna.storages.BaseStorage):
        yield
        return
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    interval = storage.get_heartbeat_interval() or 60
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a dropped connection: try at the next beat
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
