"""The solo loop: one trial at a time, from the budget to the tell, through the lifecycle.

It is Optuna's ``study.optimize`` loop with regsweep's lifecycle (``lifecycle.py``):
a budget shared by every worker, heartbeats, the wait-and-recover policy, and interrupts
that leave no trial RUNNING.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from regsweep.errors import TrialDiverged
from regsweep.sweep.lifecycle import Lifecycle, RunListener, RunOutcome

ObjectiveFn = Callable[[optuna.Trial], float]


def run_trials(
    study: optuna.Study,
    objective: ObjectiveFn,
    *,
    n_trials: int,
    storage: optuna.storages.BaseStorage | None = None,
    timeout: float | None = None,
    listener: RunListener | None = None,
) -> RunOutcome:
    """Run trials until the study holds ``n_trials`` (all workers together) or time runs out.

    ``storage`` is the storage ``study`` was opened on (by default, the study's own).
    """
    with Lifecycle(study, storage, n_trials=n_trials, timeout=timeout, listener=listener) as life:
        while True:
            with life.guard():
                trial = life.next_trial()
                if trial is None:
                    break
                _run_one(life, objective, trial)
    return life.outcome


def _run_one(life: Lifecycle, objective: ObjectiveFn, trial: optuna.Trial) -> None:
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        life.tell(trial, state=TrialState.PRUNED)
    except TrialDiverged:
        # The objective recorded the reason; a diverged trial is a finding, not a crash.
        life.tell(trial, state=TrialState.FAIL)
    else:
        life.tell(trial, value=value)
