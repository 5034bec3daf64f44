"""Output paths: checked before any work starts, written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from regsweep.errors import ConfigError


def prepare_dir(path: Path, flag: str) -> Path:
    """Create ``path`` (and parents) if needed and check that files can be written there."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Creating a real file is the only check that also holds for root and odd mounts.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def prepare_file(path: Path, flag: str) -> Path:
    """Check that ``path`` can be written (its folder is created if needed)."""
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder, expected a file name")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{flag} {path}: cannot write there ({blocking} is a file, not a folder)")
    prepare_dir(path.parent, flag)
    if path.exists() and not path.is_file():
        # A device, pipe or socket: the rename that makes writes atomic would replace it.
        raise ConfigError(f"{flag} {path}: exists and is not a regular file")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path}: the file exists and cannot be overwritten")
    return path


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, then rename: no half files.

    A symbolic link is written through (its target is replaced), not replaced itself.
    """
    if path.is_symlink():
        path = path.resolve()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
