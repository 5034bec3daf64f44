"""What ``report``, ``ablate`` and ``export`` read from an existing study.

They work from the storage alone: the resolved sweep config stored with the study
says how its trials were trained, so the sweep file is never needed again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from regsweep.config.regularization import Regularization
from regsweep.config.schema import REGULARIZERS, SweepConfig
from regsweep.errors import StudyError
from regsweep.sweep.study import config_of


def require_config(study: optuna.Study) -> SweepConfig:
    """The sweep config stored with ``study``; a study not made by regsweep has none."""
    try:
        config = config_of(study)
    except ValidationError as exc:
        raise StudyError(
            f"--study: the sweep config stored with {study.study_name!r} no longer validates "
            f"({exc.error_count()} problem(s)); was it written by another regsweep version?"
        ) from None
    if config is None:
        raise StudyError(
            f"--study: {study.study_name!r} was not created by `regsweep launch` "
            "(it has no stored sweep config), so it cannot be retrained or reported"
        )
    return config


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials per state, in the order Optuna lists states, zero counts left out."""
    counts = Counter(t.state for t in trials)
    return {state.name.lower(): counts[state] for state in TrialState if counts[state]}


def require_best(study: optuna.Study) -> FrozenTrial:
    """The best completed trial; pruned and failed trials have no comparable value."""
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        held = ", ".join(f"{n} {s}" for s, n in state_counts(trials).items()) or "no trials"
        raise StudyError(
            f"--study: study {study.study_name!r} has no completed trial yet ({held}); "
            "run `regsweep launch` until one completes"
        )
    return study.best_trial


def regularization_of(params: dict[str, Any]) -> Regularization:
    return Regularization.from_params(params)


def off_values(max_epochs: int) -> dict[str, Any]:
    """Each regularizer's "off" value; patience >= max_epochs never stops a run early."""
    return {
        "dropout": 0.0,
        "weight_decay": 0.0,
        "l1": 0.0,
        "batch_norm": False,
        "patience": max_epochs,
    }


def effective(params: dict[str, Any], max_epochs: int) -> tuple[Any, ...]:
    """A comparable form of ``params``: every patience >= max_epochs is the same (off)."""
    reg = regularization_of(params)
    return (reg.dropout, reg.weight_decay, reg.l1, reg.batch_norm, min(reg.patience, max_epochs))


def is_unregularized(params: dict[str, Any], max_epochs: int) -> bool:
    return effective(params, max_epochs) == effective(off_values(max_epochs), max_epochs)


def param_values(study: optuna.Study) -> dict[str, set[Any]]:
    """Every value each regularizer took across the study's trials."""
    values: dict[str, set[Any]] = {name: set() for name in REGULARIZERS}
    for trial in study.get_trials(deepcopy=False):
        for name in REGULARIZERS:
            if name in trial.params:
                values[name].add(trial.params[name])
    return values


def varied_params(study: optuna.Study) -> list[str]:
    """Regularizers that took more than one value; a fixed one has nothing to compare."""
    return [name for name, values in param_values(study).items() if len(values) > 1]


def fixed_params(study: optuna.Study) -> dict[str, Any]:
    """Regularizers that took one value in every trial, with that value."""
    return {name: next(iter(v)) for name, v in param_values(study).items() if len(v) == 1}
