"""Real ``regsweep`` processes for the multi-worker tests: start, watch, signal, clean up.

Every wait polls a condition with a generous deadline; nothing asserts on a sleep, so a
loaded machine makes the tests slower, not flaky.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from regsweep.storage.rdb import build_storage

# Long enough for 8 processes importing PyTorch at once on two busy cores.
DEADLINE_S = 300.0


def unique_name(prefix: str) -> str:
    """A study name no other test (or engineer) sharing the database will use."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REGSWEEP_STORAGE"}
    env.update({"COLUMNS": "200", **extra})
    return env


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = DEADLINE_S) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process {self.pid} still running after {timeout:g} s:\n{self.output()}"
            ) from None


def start(
    args: Sequence[str | Path],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    new_session: bool = False,
) -> Proc:
    """Start a command with stdout and stderr in ``log`` (a pipe nobody reads would block)."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [str(a) for a in args],
            cwd=cwd,
            env=env if env is not None else cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    return Proc(popen, log)


def regsweep(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "regsweep", *map(str, args)]


@contextmanager
def reaped(procs: list[Proc]) -> Iterator[list[Proc]]:
    """Kill whatever the test left running, even when it failed."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()


def wait_until(
    condition: Callable[[], Any],
    what: str,
    *,
    procs: Sequence[Proc] = (),
    timeout: float = DEADLINE_S,
) -> Any:
    """Poll ``condition`` until it returns something truthy, which is returned.

    Fails early, with their output, if one of ``procs`` exits meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        for proc in procs:
            if proc.popen.poll() is not None:
                raise AssertionError(
                    f"waiting for {what}: process {proc.pid} exited with "
                    f"{proc.popen.returncode}:\n{proc.output()}"
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class StudyWatch:
    """Reads a study's trials from outside the workers, as a user's dashboard would."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.storage = build_storage(url, heartbeat=None)

    def trials(self) -> list[FrozenTrial]:
        try:
            study = optuna.load_study(study_name=self.name, storage=self.storage)
        except KeyError:  # not created yet
            return []
        return study.get_trials(deepcopy=False)

    def running_in(self, proc: Proc, min_epochs: int = 1) -> FrozenTrial | None:
        """The trial ``proc`` is running, once it has reported ``min_epochs`` epochs."""
        for trial in self.trials():
            if (
                trial.state == TrialState.RUNNING
                and trial.user_attrs.get("worker") == f"{socket.gethostname()}:{proc.pid}"
                and len(trial.intermediate_values) >= min_epochs
            ):
                return trial
        return None

    def delete(self) -> None:
        with suppress(KeyError):
            optuna.delete_study(study_name=self.name, storage=self.storage)
        self.storage.engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bytes(response.read())
    except OSError:
        return None
