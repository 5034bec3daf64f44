"""``regsweep watch``: the live display of ``launch``, for workers that run elsewhere.

regsweep watch sweeps/mnist.yaml

Everything comes from the study in its storage, as workers under compose, Slurm,
Kubernetes or on other machines write it: trials complete, pruned and failed against the
budget, the best trial, and each running trial with its worker, epoch, validation loss
and heartbeat. It only reads; stopping it (Ctrl-C) changes nothing in the study.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console

from regsweep.storage import private
from regsweep.storage.urls import parse_url, redact
from regsweep.sweep.budget import Usage, usage_of
from regsweep.sweep.progress import SweepProgress

# How often the study is read.
DEFAULT_INTERVAL_S = 2.0


@dataclass(frozen=True)
class Budget:
    """What the display measures the study against (the sweep file's, or the stored one)."""

    n_trials: int
    max_epochs: int
    grace_period_s: float


def wait_for_database(url: str, console: Console, interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """Wait until a SQLite database exists: its first worker creates it (a server
    database exists already). Watching never creates one."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    path = Path(parsed.database or "").expanduser()
    if not path.is_file():
        console.print(
            f"no database at {path} yet; waiting for a worker to create it (Ctrl-C stops watching)",
            highlight=False,
            soft_wrap=True,
        )
    while not path.is_file():
        time.sleep(interval_s)


def wait_for_study(
    storage: optuna.storages.RDBStorage,
    url: str,
    name: str,
    console: Console,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> optuna.Study:
    """Load study ``name``, waiting for a worker to create it: workers still queued on a
    cluster have not made it yet when their user starts watching."""
    said = False
    while True:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if name in names:
            return optuna.load_study(study_name=name, storage=storage)
        if not said:
            console.print(
                f"study {name!r} is not in {redact(url)} yet (studies there: "
                f"{', '.join(names) or 'none'}); waiting for a worker to create it "
                "(Ctrl-C stops watching)",
                highlight=False,
                soft_wrap=True,
            )
            said = True
        time.sleep(interval_s)


def watch(
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    budget: Budget,
    *,
    console: Console,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> Usage:
    """Show the study until its budget is met (nothing left running or queued).

    Returns the study's usage at the end. Ctrl-C raises KeyboardInterrupt and nothing is
    written: the study and its workers go on.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    trials = study.get_trials(deepcopy=False)
    seen = {t.number for t in trials if t.state.is_finished()}
    used = usage_of(trials)
    progress = SweepProgress(
        console,
        study_name=study.study_name,
        n_trials=budget.n_trials,
        done=min(used.finished, budget.n_trials),
        max_epochs=budget.max_epochs,
    )
    progress.log_running = True
    progress.preload([t for t in trials if t.number in seen])
    with progress:
        while True:
            running = [t for t in trials if t.state == TrialState.RUNNING]
            ages = private.heartbeat_ages(storage, study_id) if running else {}
            for trial in trials:
                if trial.state.is_finished() and trial.number not in seen:
                    seen.add(trial.number)
                    progress.trial_finished(trial)
            progress.set_completed(min(used.finished, budget.n_trials))
            progress.show_running(running, ages, budget.grace_period_s)
            if used.finished >= budget.n_trials and not used.running and not used.waiting:
                return used
            time.sleep(interval_s)
            trials = study.get_trials(deepcopy=False)
            used = usage_of(trials)
