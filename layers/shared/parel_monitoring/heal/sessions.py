"""healStaleSessions: expired NextAuth sessions, and expired never-used verification tokens, deleted in batches.

Tables: the Prisma adapter's ``"Session"``/``"VerificationToken"`` (``SESSION_SCHEMA=prisma``, the default)
or @auth/pg-adapter's ``sessions``/``verification_token`` (``SESSION_SCHEMA=pg-adapter``);
``SESSION_TABLE`` (``name`` or ``schema.name``, default schema ``public``) and ``SESSION_EXPIRES_COLUMN``
override the sessions table. NextAuth deletes a verification token when it is used, so an expired one still
present was never used; a missing verification table is reported (``verificationTable: None``), not an error.

Time: one cutoff, the database's ``now()`` at the start of the run. A ``timestamp with time zone`` column is
compared with it directly; a ``timestamp without time zone`` column (Prisma's ``TIMESTAMP(3)``) holds UTC, so
it is compared with the cutoff ``AT TIME ZONE 'UTC'``, whatever the session's ``TimeZone``.

Batches (``SESSION_BATCH_SIZE``, at most that many rows each): each one its own short transaction, bounded
by the statement timeout. A batch first reads where its range ends, then deletes that range through an
index, so no batch scans the whole table and every row is read once:

* ``expires-index`` (a valid btree index leads with the expires column, e.g. the optional
  migrations/001_session_expires_index.sql): the next expired rows in expires order, the range end read by
  an index-only scan; only expired rows are visited;
* ``primary-key`` (otherwise): the next ``n`` rows in primary-key order (keyset), of which the expired ones
  are deleted; every row is visited once per run.

The deletes re-check the expiry, so a row NextAuth extends meanwhile (it updates ``expires`` on use) stays.
The catalog helpers and the walks live in :mod:`parel_monitoring.heal.tables`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from parel_monitoring.db import Database
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.tables import (
    CUTOFFS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SCHEMA,
    ExpiresIndexWalk,
    KeysetWalk,
    Progress,
    Relation,
    Walk,
    expired,
    find_table,
    has_leading_index,
    run_walk,
)
from parel_monitoring.settings import ConfigurationError, env_choice, env_int, env_str

# SESSION_SCHEMA -> (sessions table, verification token table)
PRESETS = {"prisma": ("Session", "VerificationToken"), "pg-adapter": ("sessions", "verification_token")}
# --------------------------------------------------------------------------- healStaleSessions


@dataclass(frozen=True)
class SessionSettings:
    table: Relation
    expires_column: str
    verification_table: Relation
    batch_size: int

    @classmethod
    def from_env(cls) -> SessionSettings:
        sessions, verification = PRESETS[env_choice("SESSION_SCHEMA", "prisma", tuple(PRESETS))]
        table = Relation.parse(env_str("SESSION_TABLE", sessions))
        if table is None:
            raise ConfigurationError("SESSION_TABLE", "must be a table name or schema.name")
        return cls(
            table=table,
            expires_column=env_str("SESSION_EXPIRES_COLUMN", "expires"),
            verification_table=Relation(DEFAULT_SCHEMA, verification),
            batch_size=env_int("SESSION_BATCH_SIZE", DEFAULT_BATCH_SIZE, minimum=1, maximum=100_000),
        )


class _Unusable(Exception):
    """A table the routine cannot work on; ``variable`` is the setting that chose it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(problem)
        self.variable = variable


def _expiry_walk(conn: psycopg.Connection, relation: Relation, expires: str, cutoff: datetime, batch_size: int) -> Walk:
    table = find_table(conn, relation)
    if table is None:
        raise _Unusable("SESSION_TABLE", "names no table in the database")
    expires_type = table.columns.get(expires)
    if expires_type not in CUTOFFS:
        raise _Unusable("SESSION_EXPIRES_COLUMN", "must name a timestamp or timestamptz column of the table")
    if has_leading_index(conn, table, expires):
        return ExpiresIndexWalk(relation, expires, expires_type, cutoff, batch_size)
    if not table.key:
        raise _Unusable("SESSION_TABLE", "has neither an index on its expires column nor a primary key")
    return KeysetWalk(relation, table.key, expired(expires, expires_type, cutoff), batch_size)


@dataclass(frozen=True)
class _Plan:
    cutoff: datetime
    sessions: Walk
    tokens: Walk | None


def _plan(conn: psycopg.Connection, settings: SessionSettings) -> _Plan:
    cutoff = conn.execute("SELECT now()").fetchone()[0].astimezone(UTC)
    try:
        sessions = _expiry_walk(conn, settings.table, settings.expires_column, cutoff, settings.batch_size)
    except _Unusable as exc:
        raise ConfigurationError(exc.variable, str(exc)) from None
    try:
        tokens = _expiry_walk(conn, settings.verification_table, "expires", cutoff, settings.batch_size)
    except _Unusable:
        tokens = None  # a schema without verification tokens (or not NextAuth's): nothing to clean there
    return _Plan(cutoff, sessions, tokens)


def heal_stale_sessions(
    db: Database,
    settings: SessionSettings,
    budget: Budget,
    dry_run: bool = False,
    on_batch: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Delete (count, in a dry run) expired sessions, then expired verification tokens.

    ``on_batch``, if given, is called with each batch's duration in seconds (benchmarks).
    """
    plan = db.run(functools.partial(_plan, settings=settings))
    sessions = run_walk(db, plan.sessions, budget, dry_run, on_batch)
    tokens = Progress()
    if plan.tokens is not None and not sessions.partial:
        tokens = run_walk(db, plan.tokens, budget, dry_run, on_batch)
    return {
        "count": sessions.count,
        "verificationTokens": tokens.count,
        "partial": sessions.partial or tokens.partial,
        "batches": sessions.batches + tokens.batches,
        "strategy": plan.sessions.strategy,
        "table": str(settings.table),
        "verificationTable": str(settings.verification_table) if plan.tokens is not None else None,
        "cutoff": plan.cutoff.isoformat().replace("+00:00", "Z"),
    }


def explain_session_batch(db: Database, settings: SessionSettings) -> tuple[str, str]:
    """(strategy, ``EXPLAIN`` of the first session batch as it would run now), for tests and benchmarks."""

    def explain(conn: psycopg.Connection) -> tuple[str, str]:
        walk = _plan(conn, settings).sessions
        return walk.strategy, walk.explain(conn)

    return db.run(explain)
