"""Storage URLs: which ones regsweep supports, normalized, and shown without passwords."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from regsweep.errors import StorageError

ALLOWED = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``, safe for messages, logs and attrs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        pass
    # Not a URL SQLAlchemy understands (a slash missing, a typo in the scheme): still
    # never echo anything that looks like a secret, i.e. what lies between a user
    # name's colon and the last @.
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    match = _USERINFO.match(head)
    return f"{match[1] or ''}{match[2]}:***@{tail}" if match else url


# [scheme:/ or scheme://]user:password, the scheme optional.
_USERINFO = re.compile(r"^([^:]*:/*)?([^:@/]*):(.*)$", re.S)


def parse_url(url: str) -> URL:
    """Check that ``url`` is a storage regsweep supports, and normalize its driver.

    A bare ``postgresql://`` URL would pick psycopg2, which is not installed: it is
    rewritten to psycopg 3.
    """
    if "://" not in url:
        hint = f"; did you mean 'sqlite:///{url}'?" if url.endswith((".db", ".sqlite")) else ""
        raise StorageError(
            f"study.storage: {redact(url)!r} is not a database URL (allowed: {ALLOWED}){hint}"
        )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(
            f"study.storage: cannot parse {redact(url)!r} ({exc}); allowed: {ALLOWED}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise StorageError(
                f"study.storage: driver {driver!r} is not installed; use postgresql+psycopg://"
            )
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StorageError(
                "study.storage: an in-memory SQLite database vanishes with the process; "
                "give a file, e.g. sqlite:///regsweep.db"
            )
        return parsed
    raise StorageError(f"study.storage: backend {backend!r} is not supported (allowed: {ALLOWED})")
