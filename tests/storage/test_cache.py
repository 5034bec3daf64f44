"""A worker's cache of its own trials (storage/cache.py), on real SQLite and PostgreSQL.

What it must keep: what a worker writes reaches the database before the trial is told (and
within the write interval), another process sees it as before, a trial failed elsewhere
still raises at the worker's next write, and a sweep samples and prunes exactly as it did
through Optuna's own cache, only with fewer statements.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from regsweep.config.loading import resolve_config
from regsweep.data.splits import load_splits
from regsweep.storage import private
from regsweep.storage.cache import WRITE_INTERVAL_S, WorkerCache, store_now, worker_storage
from regsweep.storage.rdb import build_storage
from regsweep.storage.settings import HeartbeatSettings
from regsweep.sweep.objective import Objective
from regsweep.sweep.solo import run_trials
from regsweep.sweep.study import build_sampler, open_study
from tests.conftest import IdxData, idx_sweep
from tests.processes import unique_name

FAST = HeartbeatSettings(interval=1, grace_period=2, max_retry=5)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if getattr(request, "param", "sqlite") == "postgres":
        yield request.getfixturevalue("postgres_url")
    else:
        yield f"sqlite:///{tmp_path / 'cache.db'}"


class Studies:
    """A study opened as a worker opens it, and the same study as another process sees it."""

    def __init__(self, url: str) -> None:
        self.name = unique_name("cache")
        self.worker_storage = build_storage(url, FAST)
        self.study = optuna.create_study(
            storage=worker_storage(self.worker_storage), study_name=self.name
        )
        self.outside = build_storage(url, heartbeat=None)

    def seen_from_outside(self) -> list[FrozenTrial]:
        return optuna.load_study(study_name=self.name, storage=self.outside).get_trials()

    def delete(self) -> None:
        optuna.delete_study(study_name=self.name, storage=self.outside)
        self.worker_storage.engine.dispose()
        self.outside.engine.dispose()


@pytest.fixture
def studies(url: str) -> Iterator[Studies]:
    made = Studies(url)
    yield made
    made.delete()


@pytest.mark.parametrize("url", BACKENDS, indirect=True)
def test_a_workers_writes_reach_the_database_in_batches_and_all_before_the_tell(
    studies: Studies,
) -> None:
    study = studies.study
    assert isinstance(study._storage, WorkerCache)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_int("n", 1, 5)
    store_now(trial)  # regsweep stores the parameters as soon as they are drawn
    (seen,) = studies.seen_from_outside()
    assert seen.params == trial.params and seen.state == TrialState.RUNNING

    trial.report(0.5, 1)
    trial.set_user_attr("seed", 7)
    time.sleep(WRITE_INTERVAL_S * 1.5)
    trial.report(0.4, 2)  # the trial's last write is older than the interval: all go out
    (seen,) = studies.seen_from_outside()
    assert seen.intermediate_values == {1: 0.5, 2: 0.4}
    assert seen.user_attrs == {"seed": 7}

    trial.report(0.3, 3)
    trial.set_user_attr("curve", [0.5, 0.4, 0.3])
    study.tell(trial, 0.3)
    (seen,) = studies.seen_from_outside()
    assert seen.state == TrialState.COMPLETE and seen.value == 0.3
    assert seen.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3}
    assert seen.user_attrs == {"seed": 7, "curve": [0.5, 0.4, 0.3]}
    assert seen.params == {"x": trial.params["x"], "n": trial.params["n"]}


@pytest.mark.parametrize("url", BACKENDS, indirect=True)
def test_a_trial_failed_elsewhere_raises_at_the_workers_next_write(studies: Studies) -> None:
    trial = studies.study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    store_now(trial)
    outside = studies.outside
    trial_id = outside.get_trial_id_from_study_id_trial_number(
        outside.get_study_id_from_name(studies.name), trial.number
    )
    outside.set_trial_state_values(trial_id, state=TrialState.FAIL)  # another worker's recovery
    time.sleep(WRITE_INTERVAL_S * 1.5)
    with pytest.raises(UpdateFinishedTrialError):
        trial.report(0.5, 1)
    with pytest.raises(UpdateFinishedTrialError):  # every later write, as through Optuna's
        trial.set_user_attr("seed", 1)
    assert [t.state for t in studies.study.get_trials()] == [TrialState.FAIL]
    frozen = studies.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    assert frozen.state == TrialState.FAIL


def test_a_read_of_the_study_does_not_load_the_workers_running_trial_again(
    studies: Studies,
) -> None:
    study = studies.study
    finished = study.ask()
    finished.suggest_float("x", 0.0, 1.0)
    study.tell(finished, 1.0)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    store_now(trial)
    before = study.get_trials(deepcopy=False)
    trial.report(0.5, 1)  # not stored yet: within the interval
    trial.set_user_attr("seed", 3)
    statements: list[str] = []
    engine = studies.worker_storage.engine

    def listener(_connection: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    sqlalchemy.event.listen(engine, "before_cursor_execute", listener)
    try:
        after = study.get_trials(deepcopy=False)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", listener)
    # One query of the trials' ids and states; nothing of the running trial's contents.
    assert len(statements) == 1, statements
    assert "trial_params" not in statements[0] and "trial_user_attributes" not in statements[0]
    # This process reads what it wrote, stored or not; a list read earlier stays as read.
    assert after[1].intermediate_values == {1: 0.5} and after[1].user_attrs == {"seed": 3}
    assert after[1].params == trial.params
    assert before[1].intermediate_values == {} and before[1].user_attrs == {}
    assert [t.state for t in after] == [TrialState.COMPLETE, TrialState.RUNNING]


def test_a_trial_taken_from_the_queue_is_read_whole_once_then_kept(studies: Studies) -> None:
    study = studies.study
    study.enqueue_trial({"x": 0.25}, user_attrs={"retry_of": 7})
    trial = study.ask()  # takes the queued trial: Optuna's cache had it WAITING
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25
    trial.report(0.5, 1)
    (running,) = study.get_trials(deepcopy=False)
    assert running.state == TrialState.RUNNING
    assert running.params == {"x": 0.25} and running.intermediate_values == {1: 0.5}
    assert running.user_attrs == {"retry_of": 7}
    study.tell(trial, 0.5)
    (seen,) = studies.seen_from_outside()
    assert seen.state == TrialState.COMPLETE and seen.intermediate_values == {1: 0.5}


def test_a_distribution_that_contradicts_the_study_is_refused_as_before(studies: Studies) -> None:
    study = studies.study
    first = study.ask()
    first.suggest_float("x", 0.0, 1.0)
    study.tell(first, 1.0)
    second = study.ask()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        second.suggest_int("x", 0, 3)


@pytest.mark.parametrize("pack", [1, 3])
def test_a_sweep_samples_and_prunes_as_through_optunas_own_cache(
    tiny_idx: IdxData, tmp_path: Path, pack: int
) -> None:
    """The same sweep (TPE, Hyperband) stored through the worker's cache and through Optuna's
    plain one: the same parameters, values, epochs and rungs, trial by trial, with fewer
    statements."""
    raw = idx_sweep(
        tiny_idx,
        tmp_path,
        study={
            "n_trials": 12,
            "pack": pack,
            "sampler": {"name": "tpe", "options": {"n_startup_trials": 4}},
            "pruner": {"name": "hyperband", "options": {"reduction_factor": 3}},
        },
        train={"max_epochs": 9},
        search_space={"patience": 1000},
    )
    config = resolve_config(raw, source="test", env={})
    splits = load_splits(config.data, config.study.seed, "cpu")
    runs: dict[str, list[FrozenTrial]] = {}
    statements: dict[str, int] = {}
    for cache in ("optuna", "worker"):
        storage = build_storage(f"sqlite:///{tmp_path / f'{cache}.db'}", FAST)
        count: collections.Counter[str] = collections.Counter()
        sqlalchemy.event.listen(
            storage.engine, "before_cursor_execute", lambda *_, c=count: c.update(["sql"])
        )
        if cache == "worker":
            study = open_study(config, storage)
        else:  # as before this cache: Optuna's own cache and Optuna's own Hyperband
            options: dict[str, Any] = {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}
            study = optuna.create_study(
                storage=storage,
                study_name=config.study_name,
                sampler=build_sampler(config),
                pruner=optuna.pruners.HyperbandPruner(**options),
            )
        if pack > 1:
            from regsweep.sweep.packed import run_packed

            run_packed(study, config, splits, n_trials=12, storage=storage)
        else:
            run_trials(study, Objective(config, splits), n_trials=12, storage=storage)
        runs[cache] = study.get_trials()
        statements[cache] = count["sql"]

    def story(trial: FrozenTrial) -> tuple[Any, ...]:
        rungs = {k: v for k, v in trial.system_attrs.items() if k.startswith("completed_rung")}
        return (
            trial.number,
            trial.state,
            trial.params,
            trial.value,
            trial.intermediate_values,
            rungs,
        )

    assert [story(t) for t in runs["worker"]] == [story(t) for t in runs["optuna"]]
    assert any(t.state == TrialState.PRUNED for t in runs["worker"])  # Hyperband did prune
    assert statements["worker"] < statements["optuna"] / 2, statements
    # What the worker reads of its own trials (copies it kept, not loaded again) is exactly
    # what another process loads from the database, timestamps included.
    outside = build_storage(f"sqlite:///{tmp_path / 'worker.db'}", heartbeat=None)
    stored = optuna.load_study(study_name=config.study_name, storage=outside).get_trials()
    assert runs["worker"] == stored


def test_the_worker_cache_is_only_for_regsweeps_rdb_storage() -> None:
    memory = optuna.storages.InMemoryStorage()
    assert worker_storage(memory) is memory


def test_hyperband_remembers_brackets_and_makes_bracket_studies_once(studies: Studies) -> None:
    pruner = private.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    plain = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    study = studies.study
    study.pruner = pruner
    trial = study.ask()
    trial.report(0.5, 1)
    trial.should_prune()
    trial.report(0.4, 2)
    trial.should_prune()
    plain._try_initialization(study)
    frozen = study.get_trials(deepcopy=False)[0]
    assert pruner._get_bracket_id(study, frozen) == plain._get_bracket_id(study, frozen)
    bracket = pruner._get_bracket_id(study, frozen)
    assert pruner._create_bracket_study(study, bracket) is pruner._create_bracket_study(
        study, bracket
    )
