"""Find an existing study from a sweep file and/or flags, for the commands that read one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import optuna

from regsweep.config import DEFAULT_STORAGE
from regsweep.errors import StorageError
from regsweep.storage import build_storage, parse_url, redact
from regsweep.study import find_study
from regsweep.sweepfile import STORAGE_ENV, load_sweep


@dataclass(frozen=True)
class StudyRef:
    url: str
    name: str | None  # None: the storage's only study


def locate(sweep: Path | None, storage: str | None, study: str | None) -> StudyRef:
    """Storage precedence: --storage > REGSWEEP_STORAGE > the sweep file > the default."""
    if sweep is not None:
        config = load_sweep(sweep, flags={"study.storage": storage, "study.name": study})
        return StudyRef(config.study.storage, config.study_name)
    if storage:
        url, origin = storage, "--storage"
    elif os.environ.get(STORAGE_ENV):
        url, origin = os.environ[STORAGE_ENV], STORAGE_ENV
    else:
        url, origin = DEFAULT_STORAGE, "default storage"
    try:
        parse_url(url)
    except StorageError as exc:
        raise StorageError(f"{origin}: {exc}") from None
    return StudyRef(url, study)


def open_existing(ref: StudyRef) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Load a study that must already exist; never creates a database or a study."""
    parsed = parse_url(ref.url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").expanduser()
        if not path.is_file():
            raise StorageError(
                f"--storage: no database at {path} ({redact(ref.url)}); "
                "run `regsweep launch` first or pass --storage"
            )
    storage = build_storage(ref.url, heartbeat=None)
    return find_study(storage, ref.name, ref.url), storage
