"""The study's trial budget, shared by every worker, and the lock that keeps it exact.

``study.n_trials`` counts trials across all workers: complete, pruned and failed
ones, plus those running or queued. A failed trial that was re-queued for a retry
is counted once, through its retry; one stopped by Ctrl-C or SIGTERM is never counted.
Checking the count and asking for a trial happen under one lock per study
(``storage.locks.study_lock``), so N workers never overshoot the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from regsweep.storage import private

# A trial's user attributes: the trial it retries (queued by regsweep after an interrupt),
# and that it was failed because its worker stopped (Ctrl-C, SIGTERM, a lost database),
# not because of anything it found: such a trial never uses up the budget.
RETRY_ATTR = "retry_of"
INTERRUPTED_ATTR = "interrupted"

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def retried_number(trial: FrozenTrial) -> int | None:
    """The number of the failed trial that ``trial`` directly retries, if it is a retry.

    Optuna's ``retried_trial_number`` names the first trial of a chain (A failed, B
    retried A and failed, C retries B: it says A for C), which would count B as finished;
    the last entry of ``retry_history`` is the trial retried directly.
    """
    if RETRY_ATTR not in trial.user_attrs and not private.may_be_heartbeat_retry(trial):
        # Most trials: this runs for every trial of the study at every take, and the
        # callback's readers below warn (as experimental) at every call.
        return None
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback
    history = callback.retry_history(trial)
    if history:
        return int(history[-1])
    number = trial.user_attrs.get(RETRY_ATTR)
    if number is None:  # a retry without a history (written by hand or an old Optuna)
        number = callback.retried_trial_number(trial)
    return int(number) if number is not None else None


@dataclass(frozen=True)
class Usage:
    finished: int  # complete + pruned + failed (not retried, not interrupted)
    running: int
    waiting: int

    @property
    def used(self) -> int:
        return self.finished + self.running + self.waiting


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """The numbers of the trials that some trial of ``trials`` retries."""
    return {n for n in (retried_number(t) for t in trials) if n is not None}


def usage(study: optuna.Study) -> Usage:
    return usage_of(study.get_trials(deepcopy=False))


def usage_of(trials: list[FrozenTrial]) -> Usage:
    """:func:`usage` of trials already read (one read serves a take's every check)."""
    retried = retried_numbers(trials)
    finished = sum(1 for t in trials if t.state in _FINISHED and not _freed(t, retried))
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    return Usage(finished, running, waiting)


def _freed(trial: FrozenTrial, retried: set[int]) -> bool:
    """A failed trial whose slot goes back to the budget: retried, or stopped by a signal."""
    return trial.state == TrialState.FAIL and (
        trial.number in retried or bool(trial.user_attrs.get(INTERRUPTED_ATTR))
    )
