"""Find an existing study from a sweep file and/or flags, for the commands that read one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from regsweep.config.loading import load_sweep, resolve_config
from regsweep.config.schema import SweepConfig
from regsweep.errors import StorageError
from regsweep.storage.rdb import build_storage
from regsweep.storage.urls import parse_url, redact
from regsweep.sweep.study import find_study


@dataclass(frozen=True)
class StudyRef:
    url: str
    name: str | None  # None: the storage's only study
    config: SweepConfig | None = None  # the sweep file as given now, if one was


def locate(sweep: Path | None, storage: str | None, study: str | None) -> StudyRef:
    """Storage precedence: --storage > REGSWEEP_STORAGE > the sweep file > the default."""
    if sweep is not None:
        config = load_sweep(sweep, flags={"study.storage": storage, "study.name": study})
        return StudyRef(config.study.storage, config.study_name, config)
    # No sweep file: the same precedence and URL check, over an empty one.
    config = resolve_config({}, source="default storage", flags={"study.storage": storage})
    return StudyRef(config.study.storage, study)


def open_existing_storage(url: str, first: str) -> optuna.storages.RDBStorage:
    """Open a storage that must already exist: a missing SQLite file is refused, not
    created. ``first`` names the command that would create it."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").expanduser()
        if not path.is_file():
            raise StorageError(
                f"--storage: no database at {path} ({redact(url)}); "
                f"run {first} first or pass --storage"
            )
    return build_storage(url, heartbeat=None)


def open_existing(ref: StudyRef) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Load a study that must already exist; never creates a database or a study."""
    storage = open_existing_storage(ref.url, "`regsweep launch`")
    return find_study(storage, ref.name, ref.url), storage
