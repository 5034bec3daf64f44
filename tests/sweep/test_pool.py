"""``regsweep launch --workers N``: local worker processes, one display, clean Ctrl-C."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from regsweep.config.loading import resolve_config
from regsweep.sweep.pool import available_cpus, threads_per_worker, worker_args
from tests.conftest import IdxData, idx_sweep
from tests.processes import StudyWatch, reaped, regsweep, start, wait_until


def sweep_at(data: IdxData, folder: Path, *, n_trials: int, epochs: int) -> Path:
    raw = idx_sweep(
        data,
        folder,
        study={"n_trials": n_trials, "pruner": "none"},
        train={"max_epochs": epochs},
        search_space={"patience": 1000},
    )
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_launch_with_three_workers_runs_the_budget_with_one_display(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    sweep = sweep_at(tiny_idx, tmp_path, n_trials=6, epochs=2)
    with reaped([start(regsweep("launch", sweep, "--workers", "3"), tmp_path / "out.log")]) as (
        proc,
    ):
        assert proc.wait() == 0, proc.output()
    out = proc.output()
    assert "0 of 6 trials done · 3 workers x 1 thread(s)" in out
    # Not a terminal: the parent prints one line per finished trial, whoever ran it.
    assert sum(line.startswith("trial ") for line in out.splitlines()) == 6
    assert "6 trials (budget of 6 trials reached)" in out
    assert "database is locked" not in out and "Traceback" not in out

    trials = StudyWatch(f"sqlite:///{tmp_path / 'study.db'}", "tiny").trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert 1 <= len(workers) <= 3
    assert str(os.getpid()) not in {w.split(":")[1] for w in workers}  # run by child processes


@pytest.mark.parametrize(
    ("sig", "code", "reason"),
    [
        (signal.SIGINT, 130, "interrupted"),
        (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    ],
)
def test_ctrl_c_or_sigterm_stops_every_worker_and_leaves_no_running_trial(
    tiny_idx: IdxData, tmp_path: Path, sig: signal.Signals, code: int, reason: str
) -> None:
    sweep = sweep_at(tiny_idx, tmp_path, n_trials=4, epochs=100_000)
    watch = StudyWatch(f"sqlite:///{tmp_path / 'study.db'}", "tiny")
    with reaped([start(regsweep("launch", sweep, "--workers", "2"), tmp_path / "out.log")]) as (
        proc,
    ):
        running = wait_until(
            lambda: (
                len(
                    [
                        t
                        for t in watch.trials()
                        if t.state == TrialState.RUNNING and t.intermediate_values
                    ]
                )
                == 2
            ),
            "both workers inside a trial",
            procs=[proc],
        )
        assert running
        pids = [int(t.user_attrs["worker"].split(":")[1]) for t in watch.trials()]
        proc.popen.send_signal(sig)
        assert proc.wait() == code, proc.output()
    out = proc.output()
    assert reason.split()[0] in out and "Traceback" not in out, out
    states = sorted(t.state.name for t in watch.trials())
    assert states == ["FAIL", "FAIL", "WAITING", "WAITING"]
    for trial in watch.trials():
        if trial.state == TrialState.FAIL:
            assert trial.user_attrs["fail_reason"] == reason
    failed = sorted(t.number for t in watch.trials() if t.state == TrialState.FAIL)
    assert f"trials {failed[0]}, {failed[1]} marked failed and queued again" in out, out
    for pid in pids:  # every worker has exited, none left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_threads_are_shared_out_unless_the_sweep_sets_them(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    raw = idx_sweep(tiny_idx, tmp_path)
    raw["train"].pop("threads")
    config = resolve_config(raw, source="test", env={})
    assert threads_per_worker(config, 1) == available_cpus()
    assert threads_per_worker(config, available_cpus() * 2) == 1
    raw["train"]["threads"] = 3
    assert threads_per_worker(resolve_config(raw, source="test", env={}), 4) == 3


def test_worker_arguments_reproduce_the_config_but_never_the_password(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    raw = idx_sweep(tiny_idx, tmp_path, study={"timeout": 60})
    raw["study"]["storage"] = "postgresql+psycopg://u:hunter2@db:5432/x"
    config = resolve_config(raw, source="test", env={})
    args = worker_args(config, ["train.max_epochs=3"], threads=2, debug=True)
    assert "hunter2" not in " ".join(args)
    assert args == [
        "--study",
        "tiny",
        "--n-trials",
        "4",
        "--timeout",
        "60.0",
        "--set",
        "train.max_epochs=3",
        "--set",
        "train.threads=2",
        "--debug",
    ]
    raw["study"]["pack"] = 4
    packed = worker_args(resolve_config(raw, source="test", env={}), [], threads=1, debug=False)
    assert packed[packed.index("--pack") + 1] == "4"
    # A --set of the storage stays with the parent, which hands workers its resolved URL.
    moved = worker_args(config, ["study.storage=sqlite:///other.db"], threads=1, debug=False)
    assert "other.db" not in " ".join(moved)
