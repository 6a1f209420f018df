"""migrations/002_monitoring_role.sql for tests: run through psql (as an operator does) and dropped afterwards."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

import services

MIGRATION = Path(__file__).resolve().parent.parent / "migrations" / "002_monitoring_role.sql"


def run_migration(url: str, role: str, connection_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """The migration for ``role`` on the database of ``url`` (psql, ON_ERROR_STOP); the finished process."""
    psql = services._find_binary("psql")
    assert psql, "psql not found (install the PostgreSQL client)"
    variables = ["-v", f"monitor_role={role}"]
    if connection_limit is not None:
        variables += ["-v", f"connection_limit={connection_limit}"]
    command = [psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", *variables, "-f", str(MIGRATION)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def drop_role(url: str, role: str) -> None:
    """Its sessions ended, its grants in the database of ``url`` (and on the database itself) revoked, then gone."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
