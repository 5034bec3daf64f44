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
