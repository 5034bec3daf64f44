"""Ctrl-C and SIGTERM as exceptions, and the critical sections they must not break.

SIGTERM is what ``docker stop`` and schedulers send; a sweep treats it like Ctrl-C. An
exception raised in the middle of a database call would leave its connection unusable
(and a trial RUNNING), so storage calls run inside :func:`signals_deferred`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(BaseException):
    """SIGTERM arrived (``docker stop``, a scheduler): stop like Ctrl-C, exit 143."""


# Signals that arrived while the sweep ran. Python drops an exception raised inside a
# __del__ or a weakref callback (SQLAlchemy runs many), so a Ctrl-C landing there would be
# lost; remembering it lets the loop raise it again at the next epoch or trial.
_pending_signals: list[int] = []
# Above zero inside signals_deferred(): the handler then only records the signal.
_defer_depth = 0


def raise_pending_interrupt() -> None:
    """Raise again a Ctrl-C or SIGTERM whose exception was swallowed where it landed.

    SIGTERM outranks Ctrl-C: a scheduler's stop that follows a swallowed Ctrl-C must end
    the process with 143, as every SIGTERM does.
    """
    if _pending_signals:
        raise Terminated() if signal.SIGTERM in _pending_signals else KeyboardInterrupt()


_REQUEUED_ATTR = "regsweep_requeued"


def note_requeued(exc: BaseException, numbers: list[int]) -> None:
    """Record on an interrupt which trials were failed and queued again because of it."""
    setattr(exc, _REQUEUED_ATTR, [*getattr(exc, _REQUEUED_ATTR, []), *numbers])


def requeued_by(exc: BaseException) -> list[int] | None:
    """The trials queued again because of interrupt ``exc``; None if no sweep loop saw it."""
    numbers = getattr(exc, _REQUEUED_ATTR, None)
    return list(numbers) if numbers is not None else None


@contextlib.contextmanager
def signals_deferred(raise_after: bool = True) -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM (under :func:`sigterm_as_exception`) for a short
    critical section, such as a storage write, then raise them at its end.

    With ``raise_after=False`` they stay pending for :func:`raise_pending_interrupt`.
    """
    global _defer_depth
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only
        return
    before = len(_pending_signals)
    _defer_depth += 1
    try:
        yield
    finally:
        _defer_depth -= 1
    if raise_after and _defer_depth == 0 and len(_pending_signals) > before:
        raise_pending_interrupt()


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """For the duration, SIGTERM raises :class:`Terminated` and Ctrl-C ``KeyboardInterrupt``
    in the main thread, and both are remembered for :func:`raise_pending_interrupt`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _pending_signals.append(signum)
        if _defer_depth == 0:
            raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()

    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        # The dropped exception is raised again by raise_pending_interrupt: no need for
        # Python's "Exception ignored in ..." traceback on the user's terminal.
        if not isinstance(info.exc_value, KeyboardInterrupt | Terminated):
            previous_hook(info)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        sys.unraisablehook = previous_hook
        _pending_signals.clear()
