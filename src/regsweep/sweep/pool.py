"""``regsweep launch --workers N``: N local ``regsweep worker`` processes on one storage.

The workers share nothing but the database, exactly as workers on other machines do;
this process only starts them, shows one progress display read from the storage, and
stops them all on Ctrl-C or SIGTERM.

regsweep launch sweeps/digits.yaml --workers 4
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console

from regsweep.config.loading import STORAGE_ENV
from regsweep.config.schema import SweepConfig
from regsweep.errors import WorkerFailed
from regsweep.signals import Terminated, note_requeued, sigterm_as_exception
from regsweep.storage.locks import study_lock
from regsweep.storage.rdb import build_storage
from regsweep.storage.urls import parse_url, redact
from regsweep.sweep.budget import INTERRUPTED_ATTR, retried_numbers, usage
from regsweep.sweep.lifecycle import RunOutcome
from regsweep.sweep.progress import SweepProgress
from regsweep.sweep.study import build_pruner, build_sampler, open_study

# How often the combined display reads the study's trials.
POLL_S = 1.0
# How long stopped workers get to fail and re-queue their trials before they are killed.
STOP_GRACE_S = 120.0


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes]
    log: Path


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_worker(config: SweepConfig, workers: int) -> int:
    """``train.threads`` when set; otherwise the cores shared out, at least one each."""
    if config.train.threads is not None:
        return config.train.threads
    return max(1, available_cpus() // workers)


def worker_args(config: SweepConfig, sets: Sequence[str], threads: int, debug: bool) -> list[str]:
    """The ``regsweep worker`` options that make a worker resolve ``config`` exactly.

    The storage travels in the environment, not the command line, where ``ps`` would
    show its password to every user of the machine.
    """
    args = ["--study", config.study_name, "--n-trials", str(config.study.n_trials)]
    if config.study.timeout is not None:
        args += ["--timeout", str(config.study.timeout)]
    if config.study.pack > 1:
        args += ["--pack", str(config.study.pack)]
    for assignment in sets:
        # The parent's resolved storage reaches workers as REGSWEEP_STORAGE; a forwarded
        # --set study.storage would outrank it and send them to another database.
        if assignment.partition("=")[0].strip() != "study.storage":
            args += ["--set", assignment]
    args += ["--set", f"train.threads={threads}"]
    return [*args, "--debug"] if debug else args


def run_pool(
    config: SweepConfig,
    sweep: Path,
    *,
    workers: int,
    sets: Sequence[str] = (),
    debug: bool = False,
    console: Console | None = None,
) -> tuple[optuna.Study, RunOutcome]:
    """Run the sweep with ``workers`` local processes; returns when they have all stopped.

    Raises:
        WorkerFailed: a worker exited with an error (its last line and log are named).
    """
    console = console or Console(stderr=True)
    # Bad input and missing data are reported once, here, rather than by every worker.
    parse_url(config.study.storage)
    build_sampler(config)
    build_pruner(config)
    from regsweep.data.splits import load_splits, resolve_device

    # Checked here, trained on in the workers: the data stays on the CPU, so this process
    # holds no CUDA context (memory on the device) for the whole sweep.
    resolve_device(config.train.device)
    load_splits(config.data, config.study.seed, "cpu")
    storage = build_storage(config.study.storage, heartbeat=None)
    with study_lock(storage, config.study_name):
        study = open_study(config, storage)

    threads = threads_per_worker(config, workers)
    done_before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    console.print(
        f"[bold]regsweep[/] study [cyan]{config.study_name}[/] on "
        f"{redact(config.study.storage)}: {usage(study).finished} of {config.study.n_trials} "
        f"trials done · {workers} workers x {threads} thread(s)",
        highlight=False,
        soft_wrap=True,
    )
    progress = SweepProgress(
        console,
        study_name=config.study_name,
        n_trials=config.study.n_trials,
        done=usage(study).finished,
        max_epochs=config.train.max_epochs,
    )
    logs = Path(tempfile.mkdtemp(prefix="regsweep-workers-"))
    pool: list[Worker] = []
    seen = set(done_before)
    with progress, sigterm_as_exception():
        try:
            args = worker_args(config, sets, threads, debug)
            pool = [_start(i, sweep, args, config.study.storage, logs) for i in range(workers)]
            while any(w.process.poll() is None for w in pool):
                _show(study, progress, seen, config.study.n_trials)
                time.sleep(POLL_S)
        except (KeyboardInterrupt, Terminated) as exc:
            _stop(pool, signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM)
            shutil.rmtree(logs, ignore_errors=True)
            _show(study, progress, seen, config.study.n_trials)
            note_requeued(exc, _interrupted_since(study, done_before))
            raise
        except BaseException:
            # The workers run in sessions of their own: nothing else would stop them.
            _stop(pool, signal.SIGTERM)
            raise
        _show(study, progress, seen, config.study.n_trials)

    _raise_if_failed(pool)
    shutil.rmtree(logs, ignore_errors=True)
    trials = study.get_trials(deepcopy=False)
    used = usage(study)
    outcome = RunOutcome(
        finished=[t for t in trials if t.state.is_finished() and t.number not in done_before],
        budget_reached=used.finished >= config.study.n_trials,
    )
    if outcome.budget_reached:
        outcome.reason = f"budget of {config.study.n_trials} trials reached"
    elif config.study.timeout is not None:
        outcome.reason = f"timeout of {config.study.timeout:g} s reached"
    else:
        outcome.reason = "the workers stopped"
    return study, outcome


def _start(index: int, sweep: Path, args: list[str], url: str, logs: Path) -> Worker:
    log = logs / f"worker-{index}.log"
    env = {**os.environ, STORAGE_ENV: url}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "regsweep", "worker", str(sweep), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own session: a Ctrl-C on the terminal reaches this process only, which
            # then stops each worker exactly once (a second signal could land in the
            # middle of a worker's clean-up).
            start_new_session=True,
        )
    return Worker(index, process, log)


def _show(study: optuna.Study, progress: SweepProgress, seen: set[int], n_trials: int) -> None:
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state.is_finished() and trial.number not in seen:
            seen.add(trial.number)
            progress.trial_finished(trial)
    progress.set_completed(min(usage(study).finished, n_trials))
    progress.show_running([t for t in trials if t.state == TrialState.RUNNING])


def _stop(pool: list[Worker], sig: signal.Signals) -> None:
    """Send ``sig`` once to every worker, wait for them to re-queue their trials and exit."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in pool:
            if worker.process.poll() is None:
                worker.process.send_signal(sig)
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in pool:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # Its trial stays RUNNING until heartbeats declare it stale and retry it.
                worker.process.kill()
                worker.process.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _interrupted_since(study: optuna.Study, done_before: set[int]) -> list[int]:
    """The trials the stopped workers failed and queued again.

    Interrupted and retried: a trial given back (taken beyond the budget while its
    worker's lock was lost) is interrupted too, but nothing retries it.
    """
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    return [
        t.number
        for t in trials
        if t.state == TrialState.FAIL
        and t.number not in done_before
        and t.user_attrs.get(INTERRUPTED_ATTR)
        and t.number in retried
    ]


def _raise_if_failed(pool: list[Worker]) -> None:
    failed = [w for w in pool if w.process.returncode != 0]
    if not failed:
        return
    lines = []
    for worker in failed:
        text = worker.log.read_text(errors="replace").strip().splitlines()
        errors = [line for line in text if line.startswith("error:")]
        last = (errors or text or ["(no output)"])[-1].removeprefix("error: ")
        lines.append(
            f"worker {worker.index} exited with status {worker.process.returncode}: {last} "
            f"(log: {worker.log})"
        )
    raise WorkerFailed("\n".join(lines))
