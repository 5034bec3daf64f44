"""The study's trial budget, shared by every worker, and the lock that keeps it exact.

``study.n_trials`` counts trials across all workers: complete, pruned and failed
ones, plus those running or queued. A failed trial that was re-queued for a retry
is counted once, through its retry. Checking the count and asking for a trial
happen under one lock per study, so N workers never overshoot the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

RETRY_ATTR = "retry_of"

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def retried_number(trial: FrozenTrial) -> int | None:
    """The number of the failed trial that ``trial`` retries, if it is a retry."""
    number = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    if number is None:
        number = trial.user_attrs.get(RETRY_ATTR)
    return int(number) if number is not None else None


@dataclass(frozen=True)
class Usage:
    finished: int  # complete + pruned + failed-and-not-retried
    running: int
    waiting: int

    @property
    def used(self) -> int:
        return self.finished + self.running + self.waiting


def usage(study: optuna.Study) -> Usage:
    trials = study.get_trials(deepcopy=False)
    retried = {n for n in (retried_number(t) for t in trials) if n is not None}
    finished = sum(
        1
        for t in trials
        if t.state in _FINISHED and not (t.state == TrialState.FAIL and t.number in retried)
    )
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    return Usage(finished, running, waiting)
