"""A PostgreSQL server that takes no more connections: one line naming the cause and the fix.

The real refusal comes from the real server: a role whose CONNECTION LIMIT is used up
gets the same FATAL at connect as a server at max_connections (which the shared test
server cannot be driven to without refusing everyone else's tests).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy
import yaml
from sqlalchemy.engine import make_url

from regsweep.storage.rdb import MAX_CONNECTIONS_PER_WORKER, full_server_hint
from tests.conftest import IdxData, idx_sweep, run_cli

# PostgreSQL's own wordings (15 and 16) for each kind of full.
REFUSALS = (
    "connection failed: FATAL:  sorry, too many clients already",
    "FATAL:  remaining connection slots are reserved for non-replication superuser connections",
    "FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute",
    'FATAL:  too many connections for role "sweeper"',
    'FATAL:  too many connections for database "regsweep"',
)


@pytest.mark.parametrize("line", REFUSALS)
def test_every_kind_of_full_server_gets_the_hint(line: str) -> None:
    hint = full_server_hint(line)
    assert hint is not None and "max_connections" in hint
    assert f"at most {MAX_CONNECTIONS_PER_WORKER}" in hint


def test_other_errors_get_no_hint() -> None:
    assert full_server_hint('FATAL:  password authentication failed for user "x"') is None
    assert full_server_hint("connection refused") is None


@pytest.mark.postgres
def test_a_worker_refused_by_a_full_server_says_why_in_one_line(
    postgres_url: str, tiny_idx: IdxData, tmp_path: Path
) -> None:
    role = f"regsweep_full_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1'))
    url = make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    holder = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    try:
        with holder.connect():  # the role's one connection, taken
            raw = idx_sweep(tiny_idx, tmp_path, study={"name": "full", "storage": url})
            sweep = tmp_path / "sweep.yaml"
            sweep.write_text(yaml.safe_dump(raw, sort_keys=False))
            result = run_cli("worker", sweep, cwd=tmp_path, timeout=300)
    finally:
        holder.dispose()
        with admin.connect() as connection:
            connection.execute(
                sqlalchemy.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"
                ),
                {"r": role},
            )
            connection.execute(sqlalchemy.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
    lines = result.stderr.strip().splitlines()
    assert result.code == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: study.storage: cannot open"), lines
    assert f'too many connections for role "{role}"' in lines[0]
    assert "raise the server's max_connections" in lines[0] and "session mode" in lines[0]
    assert "Traceback" not in result.stderr
