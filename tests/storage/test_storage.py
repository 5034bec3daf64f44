"""The storage factory's engine settings, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from regsweep.storage.rdb import build_storage


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_sqlite_runs_in_wal_mode_with_normal_sync_on_every_connection(tmp_path: Path) -> None:
    storage = build_storage(f"sqlite:///{tmp_path / 'study.db'}")
    # Two connections at once: the pragma must hold for each one the pool opens.
    with storage.engine.connect() as first, storage.engine.connect() as second:
        for connection in (first, second):
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
