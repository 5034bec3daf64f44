"""A committed state change whose reply is lost: ``ask`` and ``tell`` must not be redone blind.

A real TCP proxy in front of the real PostgreSQL server forwards a ``COMMIT`` and then
cuts the connection before the server's answer comes back: the change is committed,
the client sees a dropped connection, exactly as after a network blip or a proxy timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from regsweep.storage.rdb import build_storage
from tests.processes import unique_name

pytestmark = pytest.mark.postgres


class ReplyCutter:
    """127.0.0.1:port → the PostgreSQL server; when armed, the reply to the next COMMIT of
    a trial's state change is lost (reads commit too, and are safe to redo)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            mute = threading.Event()  # set: the server's replies on this connection are lost
            for args in ((client, server, mute, True), (server, client, mute, False)):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, mute: threading.Event, upstream: bool
    ) -> None:
        changed = False  # this connection has sent a trial state change not yet committed
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not upstream:
                    if not mute.is_set():
                        dst.sendall(data)
                    continue
                changed = changed or b"UPDATE trials SET state" in data
                if changed and b"COMMIT" in data and self.armed.is_set():
                    self.armed.clear()
                    mute.set()
                    dst.sendall(data)
                    time.sleep(0.3)  # the server commits; its reply is never relayed
                    self.cuts += 1
                    for sock in (src, dst):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                dst.sendall(data)

    def close(self) -> None:
        self._closing = True
        self.listener.close()


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
