"""Bounded downloads: torchvision fetches data sets over urllib, which waits forever by default."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

# A download that sends nothing for this long has failed (no network, a silent firewall);
# without it urllib would wait forever for every mirror in turn.
DOWNLOAD_TIMEOUT_S = 15.0


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation inside the block."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def short_reason(exc: BaseException) -> str:
    """The part of a failed download's error a user can act on."""
    # torchvision's message is "Error downloading X:\nTried MIRROR, got:\nREASON" per mirror;
    # the last reason (e.g. "Name or service not known") is what a user can act on.
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__
