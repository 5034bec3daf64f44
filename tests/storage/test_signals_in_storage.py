"""A Ctrl-C or SIGTERM that lands inside a storage call waits for the call to end.

Trials write through Optuna's ``_CachedStorage``, which calls private methods of the RDB
storage (``_set_trial_param`` for ``suggest_*``, ``_create_new_trial`` for ``ask``,
``_get_trials`` for samplers and pruners) rather than the public ones. A real SIGTERM is
sent to this process from inside the query (SQLAlchemy's ``before_cursor_execute``): the
query must still run and commit, and the interrupt be raised once the call returns.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy

from regsweep.signals import Terminated, sigterm_as_exception
from regsweep.storage.rdb import build_storage

Step = Callable[[optuna.Study], Any]


def suggest(study: optuna.Study) -> Any:
    trial = study.ask()
    return trial.suggest_float("x", 0.0, 1.0)


def read_trials(study: optuna.Study) -> Any:
    study.ask()
    return study.get_trials(deepcopy=False)


STEPS: dict[str, tuple[str, Step]] = {
    # step: (the statement the signal lands in, the step)
    "suggest writes a parameter": ("INSERT INTO trial_params", suggest),
    "ask creates a trial": ("INSERT INTO trials", lambda study: study.ask()),
    "a sampler reads the trials": ("FROM trials", read_trials),
}


@pytest.mark.parametrize("step", STEPS)
def test_sigterm_inside_a_query_made_through_the_study_waits_for_it(
    tmp_path: Path, step: str
) -> None:
    statement, run = STEPS[step]
    storage = build_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=None)
    study = optuna.create_study(storage=storage, study_name="signals")
    sent: list[str] = []
    finished: list[str] = []

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def send_sigterm(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if statement in sql and not sent:
            sent.append(sql)
            os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode: here

    @sqlalchemy.event.listens_for(storage.engine, "after_cursor_execute")
    def note_done(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if sent and sql == sent[0]:
            finished.append(sql)

    with sigterm_as_exception(), pytest.raises(Terminated):
        run(study)
    assert sent, f"no statement with {statement!r} ran"
    # Before: Terminated was raised inside the listener, and the statement never ran.
    assert finished == sent
    # The connection is left usable: nothing half-done, the storage answers at once.
    trials = optuna.load_study(study_name="signals", storage=storage).get_trials()
    if step == "suggest writes a parameter":
        assert list(trials[0].params) == ["x"]
    storage.engine.dispose()
