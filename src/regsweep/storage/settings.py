"""Storage settings as plain values: what the sweep file's defaults and the storage share.

No imports beyond the standard library, so the sweep file's schema can use them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_STORAGE = "sqlite:///regsweep.db"
DEFAULT_HEARTBEAT_INTERVAL_S = 20
DEFAULT_GRACE_PERIOD_S = 120
DEFAULT_MAX_RETRY = 3


@dataclass(frozen=True)
class HeartbeatSettings:
    """A trial whose worker sent no heartbeat for ``grace_period`` s is failed and retried."""

    interval: int = DEFAULT_HEARTBEAT_INTERVAL_S
    grace_period: int = DEFAULT_GRACE_PERIOD_S
    max_retry: int = DEFAULT_MAX_RETRY


DEFAULT_HEARTBEAT = HeartbeatSettings()
