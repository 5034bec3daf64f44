"""``regsweep launch --pack K`` end to end: the real CLI, real SQLite, tiny generated data."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from regsweep.config.regularization import Regularization
from regsweep.config.schema import REGULARIZERS
from regsweep.data.splits import load_splits
from regsweep.engine.recipe import BatchOrder, train_config
from regsweep.insight.export import export_best
from regsweep.insight.studyview import require_config
from tests.cli.test_cli_launch import AGGRESSIVE_PRUNER, sweep_file
from tests.conftest import IdxData, run_cli, run_cli_here
from tests.engine.test_pack import TOLERANCE
from tests.processes import reaped, regsweep, start, wait_until

N_TRIALS = 10
MAX_EPOCHS = 8
ATTRS = {
    "train_loss",
    "val_loss",
    "val_accuracy",
    "best_epoch",
    "best_val_accuracy",
    "epochs_run",
    "stopped_early",
    "epoch_seconds",
    "weight_sparsity",
    "seed",
    "batch_order",
    "worker",
}


@pytest.fixture(scope="module")
def packed_study(tiny_idx: IdxData, tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    folder = tmp_path_factory.mktemp("packed")
    sweep = sweep_file(
        tiny_idx,
        folder,
        study={"n_trials": N_TRIALS, "pruner": AGGRESSIVE_PRUNER},
        # A large step size makes validation losses bounce, so early stopping triggers.
        train={"max_epochs": MAX_EPOCHS, "lr": 0.05},
    )
    result = run_cli("launch", sweep, "--pack", "4", cwd=folder)
    assert result.code == 0, result.stderr
    assert f"{N_TRIALS} trials (budget of {N_TRIALS} trials reached)" in result.stdout
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'study.db'}")


def test_members_are_real_trials_with_the_solo_attrs(packed_study: optuna.Study) -> None:
    trials = packed_study.trials
    assert len(trials) == N_TRIALS
    for trial in trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert set(trial.params) == set(REGULARIZERS)
        assert set(trial.user_attrs) == ATTRS
        epochs = trial.user_attrs["epochs_run"]
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        assert list(trial.intermediate_values.values()) == trial.user_attrs["val_loss"]
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert len(trial.user_attrs[key]) == epochs
        best = trial.user_attrs["best_epoch"]
        assert trial.user_attrs["val_loss"][best - 1] == min(trial.user_attrs["val_loss"])
        assert trial.user_attrs["best_val_accuracy"] == trial.user_attrs["val_accuracy"][best - 1]
        assert trial.user_attrs["epoch_seconds"] > 0
        assert 0.0 <= trial.user_attrs["weight_sparsity"] <= 1.0
        if trial.state == TrialState.COMPLETE:
            assert trial.value == min(trial.user_attrs["val_loss"])
            stopped = trial.user_attrs["stopped_early"]
            assert epochs == MAX_EPOCHS or stopped
            if stopped:  # patience epochs without improvement after the best one
                assert epochs - best == trial.params["patience"]


def test_members_are_pruned_and_stopped_early_on_their_own(packed_study: optuna.Study) -> None:
    trials = packed_study.trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and any(t.state == TrialState.COMPLETE for t in trials)
    assert all(not t.user_attrs["stopped_early"] for t in pruned)
    assert any(t.user_attrs["stopped_early"] for t in trials)
    # Leaving members differ in length: members left the pack at different epochs.
    assert len({t.user_attrs["epochs_run"] for t in trials}) > 1


def test_a_packed_trial_replays_solo_from_its_stored_batch_order(
    packed_study: optuna.Study, tmp_path: Path
) -> None:
    """What export relies on: seed + batch order + regularizers retrain the trial alone."""
    config = require_config(packed_study)
    splits = load_splits(config.data, config.study.seed)
    orders: dict[int, BatchOrder] = {}
    for t in packed_study.trials:
        order = BatchOrder.from_attr(t.user_attrs["batch_order"])
        assert order is not None
        orders[t.number] = order
    # One pack ran them all: its first member's seed orders every member's batches.
    assert {o.shuffle_seed for o in orders.values()} == {orders[0].shuffle_seed}
    late = [t for t in packed_study.trials if orders[t.number].skip_epochs > 0]
    assert late, "members that joined a running pack: the case a solo seed cannot replay"
    for trial in late[:3]:
        reg = Regularization.from_params(trial.params)
        _, result = train_config(
            config, splits, reg, trial.user_attrs["seed"], order=orders[trial.number]
        )
        stored = trial.user_attrs["val_loss"]
        replayed = [m.val_loss for m in result.history][: len(stored)]
        close = torch.allclose(torch.tensor(replayed), torch.tensor(stored), **TOLERANCE)
        assert close, (trial.number, replayed, stored)
    metrics = export_best(packed_study, tmp_path / "best")
    assert metrics["batch_order"] == packed_study.best_trial.user_attrs["batch_order"]
    assert metrics["validation"]["loss"] == pytest.approx(packed_study.best_value, rel=2e-4)


def test_packed_attrs_match_a_solo_launch(tiny_idx: IdxData, tmp_path: Path) -> None:
    sweep = sweep_file(tiny_idx, tmp_path, study={"n_trials": 1}, train={"max_epochs": 2})
    result = run_cli("launch", sweep, cwd=tmp_path)
    assert result.code == 0, result.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert set(study.trials[0].user_attrs) == ATTRS


def test_bad_pack_is_one_line_naming_the_flag(tiny_idx: IdxData, tmp_path: Path) -> None:
    sweep = sweep_file(tiny_idx, tmp_path)
    result = run_cli_here("validate", sweep, "--pack", "0", cwd=tmp_path)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--pack" in lines[0] and "1" in lines[0], result.stderr
    assert not (tmp_path / "study.db").exists()
    ok = run_cli_here("validate", sweep, "--pack", "8", cwd=tmp_path)
    assert ok.code == 0 and "up to 8 trials at once" in ok.stdout, ok.stderr


def test_sigterm_fails_and_requeues_every_member(tiny_idx: IdxData, tmp_path: Path) -> None:
    sweep = sweep_file(
        tiny_idx,
        tmp_path,
        study={"n_trials": 3, "pruner": "none"},
        train={"max_epochs": 150},
        search_space={"patience": 1000},
    )
    db = tmp_path / "study.db"
    launch = regsweep("launch", sweep, "--pack", "3")
    with reaped([start(launch, tmp_path / "launch.log", cwd=tmp_path)]) as (proc,):
        wait_until(lambda: running_count(db) == 3, "the pack to start", procs=[proc])
        time.sleep(0.5)
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 143, proc.output()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL] * 3 + [TrialState.WAITING] * 3
    for failed, queued in zip(study.trials[:3], study.trials[3:], strict=True):
        assert failed.user_attrs["fail_reason"] == "terminated (SIGTERM)"
        assert queued.system_attrs["fixed_params"] == failed.params


def running_count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as connection:
            rows = connection.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING'")
            return int(rows.fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_a_killed_packed_worker_has_its_trials_failed_and_retried(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    """Heartbeats go out for every member: after a kill -9, all of them turn stale."""
    sweep = sweep_file(
        tiny_idx,
        tmp_path,
        study={"n_trials": 3, "pruner": "none", "heartbeat_interval": 1, "grace_period": 2},
        train={"max_epochs": 150},
        search_space={"patience": 1000},
    )
    db = tmp_path / "study.db"
    launch = regsweep("launch", sweep, "--pack", "3")
    with reaped([start(launch, tmp_path / "launch.log", cwd=tmp_path)]) as (proc,):
        wait_until(lambda: running_count(db) == 3, "the pack to start", procs=[proc])
        time.sleep(0.5)
        proc.popen.kill()  # SIGKILL: no handler runs, only the heartbeats can tell
        proc.wait()
    assert running_count(db) == 3
    time.sleep(2.5)  # past the grace period

    resumed = run_cli("launch", sweep, "--pack", "3", cwd=tmp_path)
    assert resumed.code == 0, resumed.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL] * 3 + [TrialState.COMPLETE] * 3
    assert [t.params for t in study.trials[3:]] == [t.params for t in study.trials[:3]]
