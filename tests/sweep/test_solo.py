"""The study loop on real studies: pruning, diverged trials, budget and interrupted trials."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from regsweep.config.loading import resolve_config
from regsweep.config.schema import SweepConfig
from regsweep.data.splits import load_splits
from regsweep.signals import sigterm_as_exception
from regsweep.storage.rdb import build_storage
from regsweep.sweep.budget import RETRY_ATTR, usage
from regsweep.sweep.objective import Objective
from regsweep.sweep.solo import run_trials
from regsweep.sweep.study import heartbeat_settings, open_study
from tests.conftest import IdxData, idx_sweep


class DeterministicPruner(optuna.pruners.BasePruner):
    """Prunes every trial once it has reported ``prune_at`` epochs (never, when None).

    In the spirit of optuna's ``testing/pruners.py``: pruning decided by the test, not by
    how well a trial happens to do.
    """

    def __init__(self, prune_at: int | None) -> None:
        self.prune_at = prune_at

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        return self.prune_at is not None and step is not None and step >= self.prune_at


def make_config(data: IdxData, tmp_path: Path, **sections: dict[str, Any]) -> SweepConfig:
    raw = idx_sweep(data, tmp_path, **sections)
    # No early stopping unless a test asks: epochs run are then decided by the pruner alone.
    raw["search_space"]["patience"] = 1000
    return resolve_config(raw, source="test", env={})


def sqlite_study(config: SweepConfig, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    storage = build_storage(config.study.storage, heartbeat_settings(config.study))
    return open_study(config, storage, pruner=pruner)


@pytest.mark.parametrize("prune_at", [1, 2])
def test_pruned_trials_stop_where_the_pruner_says(
    tiny_idx: IdxData, tmp_path: Path, prune_at: int
) -> None:
    config = make_config(tiny_idx, tmp_path, study={"n_trials": 2})
    study = sqlite_study(config, DeterministicPruner(prune_at))
    splits = load_splits(config.data, config.study.seed, "cpu")
    outcome = run_trials(study, Objective(config, splits), n_trials=2)
    assert outcome.count(TrialState.PRUNED) == 2 and outcome.budget_reached
    for trial in study.get_trials():
        assert trial.state == TrialState.PRUNED
        assert sorted(trial.intermediate_values) == list(range(1, prune_at + 1))
        assert trial.user_attrs["epochs_run"] == prune_at
        assert trial.user_attrs["val_loss"] == [
            trial.intermediate_values[e] for e in range(1, prune_at + 1)
        ]


def test_unpruned_trials_complete_with_their_best_validation_loss(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    config = make_config(tiny_idx, tmp_path, study={"n_trials": 2})
    study = sqlite_study(config, DeterministicPruner(None))
    splits = load_splits(config.data, config.study.seed, "cpu")
    run_trials(study, Objective(config, splits), n_trials=2)
    for trial in study.get_trials():
        assert trial.state == TrialState.COMPLETE
        assert trial.user_attrs["epochs_run"] == config.train.max_epochs
        assert trial.value == min(trial.user_attrs["val_loss"])
        assert list(trial.intermediate_values.values()) == trial.user_attrs["val_loss"]
        assert set(trial.params) == {"dropout", "weight_decay", "l1", "batch_norm", "patience"}


def test_a_diverged_trial_fails_with_its_reason_and_the_study_goes_on(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    config = make_config(
        tiny_idx,
        tmp_path,
        study={"n_trials": 3, "sampler": "random"},
        train={"optimizer": "sgd", "lr": 0.1, "max_epochs": 2},
        search_space={"l1": {"choices": [0.0, 1.0e30]}},  # 1e30 blows SGD's weights up
    )
    study = sqlite_study(config, DeterministicPruner(None))
    for l1 in (0.0, 1.0e30, 0.0):
        study.enqueue_trial({"l1": l1})
    splits = load_splits(config.data, config.study.seed, "cpu")
    outcome = run_trials(study, Objective(config, splits), n_trials=3)

    assert outcome.budget_reached
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    failed = study.trials[1]
    assert "at epoch 1" in failed.user_attrs["fail_reason"]
    assert "NaN" in failed.user_attrs["fail_reason"] or "inf" in failed.user_attrs["fail_reason"]
    assert failed.user_attrs["epochs_run"] == 1 and len(failed.user_attrs["val_loss"]) == 1
    assert usage(study).finished == 3


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1, 1)
    return x * x


def test_budget_counts_a_retried_trial_once() -> None:
    study = optuna.create_study()

    def interrupted(trial: optuna.Trial) -> float:
        trial.suggest_float("x", -1, 1)
        raise KeyboardInterrupt

    run_trials(study, quadratic, n_trials=1)
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, interrupted, n_trials=3)
    # The interrupted trial failed and its params were queued again: it counts once.
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.WAITING,
    ]
    assert study.trials[1].user_attrs["fail_reason"] == "interrupted"
    assert (usage(study).finished, usage(study).waiting, usage(study).used) == (1, 1, 2)

    outcome = run_trials(study, quadratic, n_trials=3)
    assert len(outcome.finished) == 2  # the queued retry, then one new trial
    retry = study.trials[2]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs[RETRY_ATTR] == 1
    assert retry.params == study.trials[1].params
    assert (usage(study).finished, usage(study).used) == (3, 3)
    assert len(study.trials) == 4  # 3 counted + the failed original

    again = run_trials(study, quadratic, n_trials=3)
    assert again.finished == [] and again.budget_reached


def test_failed_trials_count_and_a_non_finite_value_fails() -> None:
    study = optuna.create_study()
    values = iter([1.0, float("nan"), 2.0])
    run_trials(study, lambda trial: next(values), n_trials=3)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert study.trials[1].user_attrs["fail_reason"] == "objective returned nan"
    assert usage(study).used == 3


def test_an_unexpected_error_fails_the_trial_and_propagates() -> None:
    study = optuna.create_study()

    def broken(trial: optuna.Trial) -> float:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        run_trials(study, broken, n_trials=2)
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"] == "RuntimeError: out of memory"


def test_timeout_stops_before_the_budget() -> None:
    study = optuna.create_study()
    outcome = run_trials(study, quadratic, n_trials=1000, timeout=0.2)
    assert "timeout" in outcome.reason and not outcome.budget_reached
    assert 0 < len(study.trials) < 1000


def test_a_swallowed_ctrl_c_still_stops_the_loop() -> None:
    study = optuna.create_study()
    with sigterm_as_exception():
        # Python drops an exception raised inside a __del__ or weakref callback; this
        # suppress stands for such a place.
        with contextlib.suppress(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler runs (and raises) long before this ends
        with pytest.raises(KeyboardInterrupt):
            run_trials(study, quadratic, n_trials=3)
    assert study.trials == []
    run_trials(study, quadratic, n_trials=1)  # outside the context the loop runs again
    assert len(study.trials) == 1
