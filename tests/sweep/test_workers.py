"""Many ``regsweep worker`` processes on one study: budget, crash recovery, signals.

Every scenario runs real worker processes, on the real PostgreSQL server and, where it
makes sense, on one SQLite file shared by local workers. Trials run on tiny generated
IDX data; trials that must be interrupted are made long with many epochs.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from regsweep.config.schema import REGULARIZERS, DataConfig
from regsweep.data.vision import read_mnist
from regsweep.signals import sigterm_as_exception
from regsweep.sweep.budget import retried_number, usage
from tests.conftest import IdxData, idx_sweep, make_idx_dataset
from tests.processes import (
    Proc,
    StudyWatch,
    cli_env,
    reaped,
    regsweep,
    start,
    unique_name,
    wait_until,
)

SECRET = "s3cret-Pa55"


def with_secret(url: str) -> str:
    """``url`` with a password, when the server accepts one (trust auth ignores it).

    Lets every test check that the password never shows in output or in the study.
    """
    parsed = make_url(url)
    if parsed.password is not None:
        return url
    candidate = parsed.set(password=SECRET).render_as_string(hide_password=False)
    engine = sqlalchemy.create_engine(candidate, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            return candidate
    except sqlalchemy.exc.OperationalError:
        return url
    finally:
        engine.dispose()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StudyWatch]:
    """A storage URL and a fresh study name on it; the study is deleted afterwards."""
    if request.param == "postgres":
        url = with_secret(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    watch = StudyWatch(url, unique_name("workers"))
    yield watch
    watch.delete()


def write_sweep(
    data: IdxData,
    folder: Path,
    watch: StudyWatch,
    *,
    n_trials: int,
    epochs: int,
    **study: Any,
) -> Path:
    """A sweep whose trials run exactly ``epochs`` epochs (no pruning, no early stopping)."""
    raw = idx_sweep(
        data,
        folder,
        study={
            "name": watch.name,
            "storage": watch.url,
            "n_trials": n_trials,
            "pruner": "none",
            # Fast crash detection for tests; the defaults (20 s, 120 s) are for real use.
            "heartbeat_interval": 1,
            "grace_period": 4,
            **study,
        },
        train={"max_epochs": epochs},
        search_space={"patience": 1000},
    )
    path = folder / f"{watch.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def start_workers(sweep: Path, folder: Path, count: int, first: int = 0) -> list[Proc]:
    return [
        start(regsweep("worker", sweep), folder / f"worker-{i}.log", cwd=folder)
        for i in range(first, first + count)
    ]


def assert_clean_output(proc: Proc, url: str) -> None:
    text = proc.output()
    assert "database is locked" not in text, text
    assert "Traceback" not in text, text
    password = make_url(url).password
    if password:
        assert password not in text, text


def assert_budget_met(watch: StudyWatch, n_trials: int) -> None:
    trials = watch.trials()
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    study = optuna.load_study(study_name=watch.name, storage=watch.storage)
    assert usage(study).finished == n_trials


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_four_workers_share_one_budget(
    backend: StudyWatch, tiny_idx: IdxData, tmp_path: Path
) -> None:
    n_trials = 8
    sweep = write_sweep(tiny_idx, tmp_path, backend, n_trials=n_trials, epochs=2)
    with reaped(start_workers(sweep, tmp_path, 4)) as workers:
        codes = [w.wait() for w in workers]
    assert codes == [0, 0, 0, 0], [w.output() for w in workers]

    trials = backend.trials()
    assert len(trials) == n_trials
    assert sorted(t.number for t in trials) == list(range(n_trials))
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        assert set(trial.params) == set(REGULARIZERS)
    for worker in workers:
        assert_clean_output(worker, backend.url)
        assert f"budget of {n_trials} trials reached" in worker.output()
    # Each worker seeds its sampler differently, so they do not propose the same trials.
    seeds = [re.search(r"sampler seed (\d+)", w.output()) for w in workers]
    assert all(seeds) and len({m.group(1) for m in seeds if m}) == 4
    assert len({tuple(sorted(t.params.items())) for t in trials}) == n_trials
    # The password is redacted in the config stored with the study.
    stored = optuna.load_study(study_name=backend.name, storage=backend.storage).user_attrs
    assert SECRET not in str(stored)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_packed_workers_share_one_budget(
    backend: StudyWatch, tiny_idx: IdxData, tmp_path: Path
) -> None:
    n_trials = 7  # not a multiple of the pack: the last packs run part-full
    sweep = write_sweep(tiny_idx, tmp_path, backend, n_trials=n_trials, epochs=2, pack=3)
    with reaped(start_workers(sweep, tmp_path, 2)) as workers:
        codes = [w.wait() for w in workers]
    assert codes == [0, 0], [w.output() for w in workers]
    for worker in workers:
        assert_clean_output(worker, backend.url)
    assert_budget_met(backend, n_trials)
    trials = backend.trials()
    assert len(trials) == n_trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(set(t.params) == set(REGULARIZERS) for t in trials)
    assert all(t.user_attrs["worker"] for t in trials)


@pytest.mark.postgres
def test_eight_workers_starting_together_make_one_study(
    postgres_url: str, tiny_idx: IdxData, tmp_path: Path
) -> None:
    # A database of its own where the server allows it, so that the workers also race
    # to create Optuna's tables, as on the first `docker compose up`.
    with fresh_database(postgres_url) as url:
        watch = StudyWatch(url, unique_name("eight"))
        try:
            sweep = write_sweep(tiny_idx, tmp_path, watch, n_trials=8, epochs=1)
            with reaped(start_workers(sweep, tmp_path, 8)) as workers:
                codes = [w.wait() for w in workers]
            assert codes == [0] * 8, [w.output() for w in workers]
            for worker in workers:
                assert_clean_output(worker, url)
            names = [s.study_name for s in watch.storage.get_all_studies()]
            assert names.count(watch.name) == 1
            assert_budget_met(watch, 8)
            assert len(watch.trials()) == 8
        finally:
            watch.delete()


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new, empty database on the server of ``url`` (dropped afterwards), or ``url``
    itself where the user may not create databases."""
    name = f"regsweep_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.ProgrammingError:
        admin.dispose()
        yield url
        return
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_killed_workers_trial_fails_and_is_retried_by_a_survivor(
    backend: StudyWatch, tiny_idx: IdxData, tmp_path: Path
) -> None:
    n_trials = 3
    # Trials of 300 epochs: the victim is killed after its first epoch, surely inside the
    # trial (a worker with other settings than the study's would be refused); the survivor
    # runs its own trials meanwhile, then waits for the victim's trial.
    sweep = write_sweep(tiny_idx, tmp_path, backend, n_trials=n_trials, epochs=300)
    victim = start(regsweep("worker", sweep), tmp_path / "victim.log", cwd=tmp_path)
    survivor = start(regsweep("worker", sweep), tmp_path / "survivor.log", cwd=tmp_path)
    with reaped([victim, survivor]):
        doomed = wait_until(
            lambda: backend.running_in(victim),
            "the victim to be inside a trial",
            procs=[victim, survivor],
        )
        victim.popen.send_signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
        assert survivor.wait() == 0, survivor.output()
    assert_clean_output(survivor, backend.url)

    trials = {t.number: t for t in backend.trials()}
    assert trials[doomed.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if retried_number(t) == doomed.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == doomed.params
    assert retry.user_attrs["worker"] == f"{socket.gethostname()}:{survivor.pid}"
    assert len(retry.intermediate_values) == 300  # run in full by the survivor
    # The retry completed: it carries none of the dead run's attributes (optuna-dashboard
    # shows them all, so a fail_reason there would read as a failure).
    assert "fail_reason" not in retry.user_attrs, retry.user_attrs
    assert "heartbeat" in trials[doomed.number].user_attrs["fail_reason"]
    assert_budget_met(backend, n_trials)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_sigterm_fails_and_requeues_the_running_trial(
    backend: StudyWatch, tiny_idx: IdxData, tmp_path: Path
) -> None:
    sweep = write_sweep(tiny_idx, tmp_path, backend, n_trials=2, epochs=100_000)
    with reaped(start_workers(sweep, tmp_path, 1)) as (worker,):
        running = wait_until(lambda: backend.running_in(worker), "a running trial", procs=[worker])
        worker.popen.send_signal(signal.SIGTERM)
        assert worker.wait() == 143, worker.output()
    assert "terminated (SIGTERM)" in worker.output()
    assert_clean_output(worker, backend.url)
    trials = backend.trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].number == running.number
    assert trials[0].user_attrs["fail_reason"] == "terminated (SIGTERM)"
    assert trials[1].system_attrs["fixed_params"] == trials[0].params


@pytest.mark.postgres
def test_a_connection_killed_by_the_server_mid_epoch_is_replaced(
    postgres_url: str, tiny_idx: IdxData, tmp_path: Path
) -> None:
    watch = StudyWatch(postgres_url, unique_name("terminate"))
    try:
        sweep = write_sweep(tiny_idx, tmp_path, watch, n_trials=2, epochs=60)
        with reaped(start_workers(sweep, tmp_path, 1)) as (worker,):
            wait_until(lambda: watch.running_in(worker, 2), "an epoch", procs=[worker])
            app = f"regsweep {socket.gethostname()}:{worker.pid}"[:63]
            engine = sqlalchemy.create_engine(postgres_url)
            with engine.connect() as connection:
                killed = connection.execute(
                    sqlalchemy.text(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                        "FROM pg_stat_activity WHERE application_name = :app"
                    ),
                    {"app": app},
                ).scalar_one()
            engine.dispose()
            assert killed >= 1  # the worker's pooled connections were there to kill
            assert worker.wait() == 0, worker.output()
        assert_clean_output(worker, postgres_url)
        states = [t.state for t in watch.trials()]
        assert states == [TrialState.COMPLETE, TrialState.COMPLETE]
    finally:
        watch.delete()


def test_worker_seeds_differ_by_host_and_pid() -> None:
    from regsweep.sweep.study import worker_seed

    assert worker_seed(0, "a", 1) == worker_seed(0, "a", 1)
    seeds = {worker_seed(0, host, pid) for host in ("a", "b") for pid in (1, 2, 3)}
    assert len(seeds) == 6
    assert worker_seed(0, "a", 1) != worker_seed(1, "a", 1)


def test_unreachable_database_is_one_line_with_the_password_hidden(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    watch_url = f"postgresql+psycopg://someone:{SECRET}@127.0.0.1:9/nowhere"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(idx_sweep(tiny_idx, tmp_path), sort_keys=False))
    proc = start(
        regsweep("worker", sweep),
        tmp_path / "out.log",
        env=cli_env(REGSWEEP_STORAGE=watch_url),
    )
    assert proc.wait() == 2
    lines = proc.output().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: study.storage: cannot open ")
    assert "someone:***@127.0.0.1:9/nowhere" in lines[0]
    assert "check that the database server is running" in lines[0]
    assert SECRET not in lines[0]


def test_a_study_from_an_older_optuna_schema_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    versions = storage._version_manager.get_all_versions()
    storage._version_manager._set_alembic_revision(versions[1])  # as left by an old Optuna
    storage.engine.dispose()
    proc = start(regsweep("trials", "--storage", f"sqlite:///{db}"), tmp_path / "out.log")
    assert proc.wait() == 2
    lines = proc.output().strip().splitlines()
    assert len(lines) == 1, lines
    assert "was written by another Optuna version" in lines[0]
    assert f"optuna storage upgrade --storage sqlite:///{db}" in lines[0]


@pytest.mark.postgres
def test_a_database_that_goes_away_stops_the_worker_with_one_line(
    postgres_url: str, tiny_idx: IdxData, tmp_path: Path
) -> None:
    with fresh_database(postgres_url) as url:
        if url == postgres_url:
            pytest.skip("the test server does not let this user create a database to drop")
        watch = StudyWatch(url, unique_name("gone"))
        sweep = write_sweep(tiny_idx, tmp_path, watch, n_trials=2, epochs=100_000)
        with reaped(start_workers(sweep, tmp_path, 1)) as (worker,):
            wait_until(lambda: watch.running_in(worker, 2), "an epoch", procs=[worker])
            watch.storage.engine.dispose()
            admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                database = make_url(url).database
                connection.execute(sqlalchemy.text(f'DROP DATABASE "{database}" WITH (FORCE)'))
            admin.dispose()
            assert worker.wait() == 1, worker.output()
    lines = worker.output().strip().splitlines()
    assert "Traceback" not in worker.output()
    assert lines[-1].startswith(
        f"error: study.storage: lost the database {make_url(url).render_as_string()} ("
    )
    assert lines[-1].endswith("run the command again once it is reachable")
    assert_clean_output(worker, url)


def test_workers_sharing_a_data_folder_download_mnist_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    downloads: list[int] = []

    class FakeMNIST:
        """Stands in for torchvision's download (no network in tests): writes the files."""

        def __init__(self, root: str, train: bool, download: bool) -> None:
            downloads.append(threading.get_ident())
            raw = Path(root) / "MNIST" / "raw"
            data = make_idx_dataset(raw, n_train=50, n_test=20, side=28)
            data.test_images.rename(raw / "t10k-images-idx3-ubyte.gz")
            data.test_labels.rename(raw / "t10k-labels-idx1-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    config = DataConfig(dataset="mnist", root=str(tmp_path / "data"), download=True)
    start_together = threading.Barrier(4)
    shapes: list[tuple[int, ...]] = []

    def worker() -> None:
        start_together.wait()
        shapes.append(read_mnist(config)[0].shape)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(downloads) == 1
    assert shapes == [(50, 28, 28)] * 4


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_signal_during_a_storage_call_is_raised_once_the_call_is_done(
    backend: StudyWatch,
) -> None:
    study = optuna.create_study(study_name=backend.name, storage=backend.storage)
    trial = study.ask()
    armed = [True]

    def interrupt(*args: Any) -> None:
        if armed[0]:  # Ctrl-C lands while the database executes the first statement
            armed[0] = False
            os.kill(os.getpid(), signal.SIGINT)

    sqlalchemy.event.listen(backend.storage.engine, "before_cursor_execute", interrupt)
    try:
        with sigterm_as_exception(), pytest.raises(KeyboardInterrupt):
            trial.report(0.5, 1)
    finally:
        sqlalchemy.event.remove(backend.storage.engine, "before_cursor_execute", interrupt)
    assert not armed[0]
    # The write went through whole, and the connection it used is still good.
    study.tell(trial, 0.25)
    (told,) = backend.trials()
    assert told.intermediate_values == {1: 0.5}
    assert told.state == TrialState.COMPLETE and told.value == 0.25
