"""Turn the sweep file's search space into Optuna suggestions (and grids)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from regsweep.config.schema import RULES, ParamSpec, SearchSpace
from regsweep.errors import ConfigError
from regsweep.storage.cache import drawn_together

if TYPE_CHECKING:
    from regsweep.config.regularization import Regularization


def suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    """Ask ``trial`` for one regularizer.

    A fixed value is recorded too (as a one-choice categorical), so every trial
    carries all five parameters and reports can compare them.
    """
    if spec.value is not None:
        return trial.suggest_categorical(name, [spec.value])
    if spec.choices is not None:
        return trial.suggest_categorical(name, list(spec.choices))
    assert spec.low is not None and spec.high is not None  # ParamSpec guarantees a range
    if RULES[name].kind is int:
        step = int(spec.step) if spec.step is not None else 1
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)


def suggest_regularization(trial: optuna.Trial, space: SearchSpace) -> Regularization:
    from regsweep.engine.fit import Regularization  # PyTorch: imported only where trials train

    # A worker's storage writes the five (and the sampler's notes) as one, stored before the
    # trial trains: a retry of it, should its worker die, runs the same config.
    with drawn_together(trial):
        params = {name: suggest(trial, name, spec) for name, spec in space.items()}
    return Regularization.from_params(params)


def grid(space: SearchSpace) -> dict[str, list[Any]]:
    """The grid for ``sampler: grid``: choices as given, stepped ranges expanded."""
    result: dict[str, list[Any]] = {}
    for name, spec in space.items():
        if spec.value is not None:
            result[name] = [spec.value]
        elif spec.choices is not None:
            result[name] = list(spec.choices)
        elif spec.step is not None and spec.low is not None and spec.high is not None:
            values = np.arange(spec.low, spec.high + spec.step / 2, spec.step)
            cast = int if RULES[name].kind is int else float
            result[name] = [cast(round(v, 12)) for v in values]
        else:
            raise ConfigError(
                f"study.sampler: grid needs choices or a step for search_space.{name} "
                "(a continuous range has no grid)"
            )
    return result


def signature(space: SearchSpace) -> dict[str, Any]:
    """The comparable form of a search space, stored with the study."""
    return space.model_dump(mode="json")
