"""A committed state change whose reply is lost: ``ask`` and ``tell`` must not be redone blind.

A real TCP proxy in front of the real PostgreSQL server forwards a ``COMMIT`` and then
cuts the connection before the server's answer comes back: the change is committed,
the client sees a dropped connection, exactly as after a network blip or a proxy timeout.
"""

from __future__ import annotations

from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from regsweep.storage.rdb import build_storage
from tests.processes import unique_name
from tests.proxy import ReplyCutter

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[ReplyCutter, optuna.Study]]:
    parsed = make_url(postgres_url)
    cutter = ReplyCutter(parsed.host or "127.0.0.1", parsed.port or 5432)
    url = parsed.set(host="127.0.0.1", port=cutter.port).render_as_string(hide_password=False)
    storage = build_storage(url, heartbeat=None)
    name = unique_name("lost-reply")
    study = optuna.create_study(storage=storage, study_name=name)
    yield cutter, study
    storage.engine.dispose()
    optuna.delete_study(study_name=name, storage=postgres_url)
    cutter.close()


def test_a_tell_whose_reply_is_lost_is_not_told_twice(
    proxied: tuple[ReplyCutter, optuna.Study],
) -> None:
    cutter, study = proxied
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    cutter.armed.set()
    frozen = study.tell(trial, 0.25)
    assert cutter.cuts == 1
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.25
    assert [(t.state, t.value) for t in study.get_trials()] == [(TrialState.COMPLETE, 0.25)]


def test_an_ask_whose_reply_is_lost_takes_the_queued_trial_once(
    proxied: tuple[ReplyCutter, optuna.Study],
) -> None:
    cutter, study = proxied
    study.enqueue_trial({"x": 0.5})
    cutter.armed.set()
    trial = study.ask()  # WAITING -> RUNNING is committed, its reply lost
    assert cutter.cuts == 1
    assert trial.number == 0 and trial.suggest_float("x", 0, 1) == 0.5
    # Before: the retry found the trial RUNNING already, ask moved on and made trial 1,
    # and trial 0 stayed RUNNING with no one to run it.
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
