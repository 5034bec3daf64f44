"""``regsweep watch`` follows a study that workers in other processes fill.

Real processes on one SQLite file: two watchers in a log and one on a terminal (a pty)
start before the study exists; a worker is stopped (SIGSTOP) mid-trial so that its
heartbeat goes stale, then continued; one watcher is stopped with Ctrl-C; a second worker
joins. The watchers end by themselves when the budget is met, and the study shows that
none of them wrote anything.
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import IdxData, idx_sweep, run_cli_here
from tests.processes import Proc, StudyWatch, cli_env, reaped, regsweep, start, wait_until

EPOCHS = 200


class TerminalProc:
    """A process whose stdout and stderr are a pseudo-terminal, as a user's shell gives."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=cli_env(TERM="xterm", COLUMNS="160", LINES="40"),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            self._chunks.append(data)

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout=timeout)
        self._reader.join(10)
        os.close(self._master)
        return code

    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")


def test_watch_follows_workers_in_other_processes_until_the_budget(
    tiny_idx: IdxData, tmp_path: Path
) -> None:
    n_trials = 3
    raw = idx_sweep(
        tiny_idx,
        tmp_path,
        study={
            "name": "watched",
            "n_trials": n_trials,
            "pruner": "none",
            "heartbeat_interval": 1,
            "grace_period": 3,
        },
        train={"max_epochs": EPOCHS},
        search_space={"patience": 1000},
    )
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(raw, sort_keys=False))
    study = StudyWatch(f"sqlite:///{tmp_path / 'study.db'}", "watched")
    watch_args = regsweep("watch", sweep, "--interval", "0.3")

    watcher = start(watch_args, tmp_path / "watch.log", cwd=tmp_path)
    stopped = start(watch_args, tmp_path / "watch-stopped.log", cwd=tmp_path)
    terminal = TerminalProc(watch_args, tmp_path)
    worker = start(regsweep("worker", sweep), tmp_path / "worker-1.log", cwd=tmp_path)
    procs: list[Proc] = [watcher, stopped, worker]
    try:
        with reaped(procs):
            wait_until(
                lambda: "waiting for a worker to create it" in watcher.output(),
                "the watcher to wait for the database",
                procs=[watcher],
            )
            trial = wait_until(
                lambda: (
                    t
                    if (t := study.running_in(worker)) and len(t.intermediate_values) < EPOCHS // 2
                    else None
                ),
                "the worker to be inside a trial",
                procs=[worker, watcher],
            )
            # A worker that stops answering (SIGSTOP: no heartbeat) is flagged, and once it
            # goes on, so is its heartbeat.
            worker.popen.send_signal(signal.SIGSTOP)
            try:
                wait_until(
                    lambda: f"trial {trial.number:>4} no heartbeat for" in watcher.output(),
                    "the watcher to flag the stale heartbeat",
                    procs=[watcher],
                    timeout=120,
                )
            finally:
                worker.popen.send_signal(signal.SIGCONT)
            wait_until(
                lambda: f"trial {trial.number:>4} heartbeat again" in watcher.output(),
                "the watcher to see the heartbeat again",
                procs=[watcher],
                timeout=120,
            )
            # Ctrl-C stops the watching only.
            stopped.popen.send_signal(signal.SIGINT)
            assert stopped.wait(60) == 130, stopped.output()

            helper = start(regsweep("worker", sweep), tmp_path / "worker-2.log", cwd=tmp_path)
            procs.append(helper)
            assert worker.wait() == 0, worker.output()
            assert helper.wait() == 0, helper.output()
            assert watcher.wait(120) == 0, watcher.output()
            assert terminal.wait(120) == 0, terminal.output()
    finally:
        if terminal.popen.poll() is None:
            terminal.popen.kill()
            terminal.wait(30)

    # Nothing a watcher did reached the study: every trial ran to its end, none failed.
    trials = study.trials()
    assert len(trials) == n_trials, trials
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert "stopped watching" in stopped.output()

    out = watcher.output()
    host = socket.gethostname()
    assert f"trial {trial.number:>4} running  on {host}:{worker.pid}" in out, out
    finished = [ln for ln in out.splitlines() if ln.startswith("trial ") and " complete " in ln]
    assert len(finished) == n_trials, out  # one line per finished trial
    assert f"study watched: budget of {n_trials} trials met ({n_trials} complete)" in out, out
    assert "Traceback" not in out

    # On a terminal: the live display, each running trial with its epoch, loss and worker.
    screen = terminal.output()
    assert "running:" in screen and "epoch " in screen and "val_loss" in screen, screen
    assert f"on {host}:" in screen, screen
    assert f"budget of {n_trials} trials met" in screen, screen


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_a_budget_below_one_is_one_line_and_exit_2(tmp_path: Path, budget: str) -> None:
    # Without a sweep file the budget is not checked by the sweep file's schema.
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = run_cli_here("watch", "--storage", url, f"--n-trials={budget}")
    assert result.code == 2
    assert (
        result.stderr.strip() == f"error: --n-trials: {budget} is not allowed (allowed: 1 or more)"
    )
    assert not (tmp_path / "none.db").exists()  # nothing created
