"""The trials table explains how each trial ended: reasons, retries, early stops."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from regsweep.sweep.budget import RETRY_ATTR
from regsweep.sweep.progress import trial_notes, trials_table

DROPOUT = {"dropout": FloatDistribution(0.0, 0.5)}


def study_with_history() -> optuna.Study:
    """0: died silently, retried by Optuna as 2; 1: NaN loss; 3: Ctrl-C, re-queued as 4."""
    study = optuna.create_study()

    def add(state: TrialState, **kwargs: object) -> None:
        study.add_trial(
            create_trial(
                state=state,
                params={"dropout": 0.1},
                distributions=DROPOUT,
                **kwargs,  # type: ignore[arg-type]
            )
        )

    add(TrialState.FAIL)
    add(TrialState.FAIL, user_attrs={"fail_reason": "validation loss became NaN at epoch 3"})
    # What RetryHeartbeatStaleTrialCallback writes on the trial it creates.
    add(TrialState.COMPLETE, value=0.2, system_attrs={"failed_trial": 0, "retry_history": [0]})
    add(TrialState.FAIL, user_attrs={"fail_reason": "interrupted (Ctrl-C)"})
    add(
        TrialState.COMPLETE,
        value=0.1,
        user_attrs={RETRY_ATTR: 3, "stopped_early": True, "best_epoch": 7},
    )
    add(TrialState.PRUNED, value=0.9, user_attrs={"stopped_early": False})
    return study


def test_notes_say_why_each_trial_ended() -> None:
    notes = trial_notes(study_with_history().get_trials())
    assert notes == {
        0: "its worker stopped sending heartbeats; retried as trial 2",
        1: "validation loss became NaN at epoch 3",
        2: "retry of trial 0",
        3: "interrupted (Ctrl-C); retried as trial 4",
        4: "retry of trial 3; stopped early, best epoch 7",
    }


def test_trials_table_shows_the_notes() -> None:
    console = Console(width=250, record=True)
    console.print(trials_table(study_with_history().get_trials(), "study x"))
    text = console.export_text()
    assert "note" in text
    assert "its worker stopped sending heartbeats; retried as trial 2" in text
    assert "retry of trial 3; stopped early, best epoch 7" in text


def test_a_running_trial_shows_its_worker_slurm_task_epoch_and_loss() -> None:
    from regsweep.sweep.progress import running_line

    trial = create_trial(
        state=TrialState.RUNNING,
        params={"dropout": 0.1},
        distributions=DROPOUT,
        intermediate_values={1: 0.9, 2: 0.5},
        user_attrs={"worker": "node7:4242", "slurm_job": "12_3", "slurm_restarts": 1},
    )
    trial.number = 5
    assert running_line(trial, 20) == (
        "#5 epoch 2/20  val_loss 0.5000  on node7:4242 (slurm 12_3, restart 1)"
    )
    assert running_line(trial, 20, stale_for=130.4).endswith("[no heartbeat for 130 s]")


def test_watch_in_a_log_prints_a_line_per_change() -> None:
    from regsweep.sweep.progress import SweepProgress

    console = Console(width=200, record=True, force_terminal=False)
    progress = SweepProgress(console, study_name="s", n_trials=4, done=0, max_epochs=5)
    progress.log_running = True
    trial = create_trial(
        state=TrialState.RUNNING,
        params={"dropout": 0.1},
        distributions=DROPOUT,
        user_attrs={"worker": "h:1"},
    )
    trial.number = 0
    with progress:
        progress.show_running([trial], {0: 1.0}, 10.0)
        progress.show_running([trial], {0: 2.0}, 10.0)  # nothing changed: no line
        progress.show_running([trial], {0: 11.0}, 10.0)
        progress.show_running([trial], {0: 12.0}, 10.0)
        progress.show_running([trial], {0: 0.5}, 10.0)
    lines = console.export_text().strip().splitlines()
    assert lines[0] == "trial    0 running  on h:1"
    assert lines[1].startswith("trial    0 no heartbeat for 11 s (grace period 10 s)")
    assert lines[2] == "trial    0 heartbeat again"
    assert len(lines) == 3
