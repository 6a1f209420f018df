"""healStaleSessions: expired Auth.js (NextAuth) sessions, and expired never-used verification tokens, deleted in
batches.

Tables: the layout's (:mod:`.authjs`: ``SESSION_SCHEMA=auto`` detects the Prisma/Kysely, pg-adapter or Drizzle
default; or a preset), each overridable: ``SESSION_TABLE`` / ``SESSION_EXPIRES_COLUMN`` and
``VERIFICATION_TOKEN_TABLE`` / ``VERIFICATION_TOKEN_EXPIRES_COLUMN`` (tables as ``name`` or ``schema.name``).
Auth.js deletes a verification token when it is used, so an expired one still present was never used. A
verification token table that cannot be found is reported in ``skipped`` (the run is then ``incomplete``),
not an error; a session table that cannot be found is an error.

Time: one cutoff, the database's ``now()`` at the start of the run. A ``timestamp with time zone`` column is
compared with it directly; a ``timestamp without time zone`` column (Prisma's ``TIMESTAMP(3)``) holds UTC, so
it is compared with the cutoff ``AT TIME ZONE 'UTC'``, whatever the session's ``TimeZone``.

Batches (``SESSION_BATCH_SIZE``: at most about that many rows each): each one its own short transaction,
bounded by the statement timeout, so no batch scans the whole table. The walk is chosen per table when the
run is planned (:func:`~parel_monitoring.heal.tables.choose_strategy`):

* ``expires-index`` (a valid btree index leads with the expires column, e.g. the optional
  migrations/001_session_expires_index.sql): the next expired rows in expires order, the range end read by
  an index-only scan; only expired rows are visited;
* ``tid-range`` (otherwise, PostgreSQL 14 and later): the table in physical order, a slice of pages per
  batch (a Tid Range Scan), sized to about 30 ms and ``SESSION_BATCH_SIZE`` expired rows; every page is
  read once per run, whatever the order of the keys (Auth.js's session tokens are random). A partial run's
  position is kept (:mod:`.positions`) and the next run resumes there;
* ``primary-key`` / ``unique-key`` (otherwise, PostgreSQL 13 and older): the next ``n`` rows in the order
  of the primary key, or of a unique index whose columns are all NOT NULL (the Prisma adapter's
  ``"Session"``: its unique ``"sessionToken"``), of which the expired ones are deleted.

The result names the walk's ``strategy`` and ``key`` (its columns; ``ctid`` for ``tid-range``) for both
tables, and a ``tid-range`` walk's ``position`` (``verificationPosition``).

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
from parel_monitoring.heal.authjs import (
    SESSION_COLUMNS,
    VERIFICATION_TOKEN_COLUMNS,
    AuthTablesSettings,
    detect_layout,
)
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.positions import PositionStore, run_resumable
from parel_monitoring.heal.tables import (
    CUTOFFS,
    DEFAULT_BATCH_SIZE,
    EXPIRES_INDEX,
    TID_RANGE,
    ExpiresIndexWalk,
    KeysetWalk,
    Progress,
    Relation,
    TidRangeWalk,
    Walk,
    choose_strategy,
    expired,
    find_table,
    first_span,
    has_leading_index,
)
from parel_monitoring.settings import ConfigurationError, env_int, env_str

# --------------------------------------------------------------------------- healStaleSessions


@dataclass(frozen=True)
class SessionSettings:
    tables: AuthTablesSettings
    expires_column: str = "expires"
    verification_expires_column: str = "expires"
    batch_size: int = DEFAULT_BATCH_SIZE

    @classmethod
    def from_env(cls) -> SessionSettings:
        return cls(
            tables=AuthTablesSettings.from_env(),
            expires_column=env_str("SESSION_EXPIRES_COLUMN", "expires"),
            verification_expires_column=env_str("VERIFICATION_TOKEN_EXPIRES_COLUMN", "expires"),
            batch_size=env_int("SESSION_BATCH_SIZE", DEFAULT_BATCH_SIZE, minimum=1, maximum=100_000),
        )


class _Unusable(Exception):
    """A table the routine cannot work on; ``variable`` is the setting that chose it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(problem)
        self.variable = variable


@dataclass(frozen=True)
class _Target:
    relation: Relation
    table_variable: str
    expires_column: str
    expires_variable: str
    columns: tuple[str, ...] = ()  # a layout's table: the columns without which it is not Auth.js's


def _expiry_walk(
    conn: psycopg.Connection, target: _Target, cutoff: datetime, batch_size: int, server_version: int
) -> Walk:
    table = find_table(conn, target.relation)
    if table is None:
        raise _Unusable(target.table_variable, "names no table in the database")
    if lacking := [column for column in target.columns if column not in table.columns]:
        raise _Unusable(target.table_variable, f"names a table that lacks {', '.join(lacking)}: not an Auth.js table")
    expires, expires_type = target.expires_column, table.columns.get(target.expires_column)
    if expires_type not in CUTOFFS:
        raise _Unusable(target.expires_variable, "must name a timestamp or timestamptz column of the table")
    strategy = choose_strategy(server_version, has_leading_index(conn, table, expires), table.key_kind)
    doomed = expired(expires, expires_type, cutoff)
    if strategy == EXPIRES_INDEX:
        return ExpiresIndexWalk(table.relation, expires, expires_type, cutoff, batch_size)
    if strategy == TID_RANGE:
        span = first_span(table, batch_size)
        return TidRangeWalk(
            table.relation, doomed, table.pages, batch_size, span, oid=table.oid, filenode=table.relfilenode
        )
    if strategy is None:
        raise _Unusable(
            target.table_variable,
            "has neither an index on its expires column nor a NOT NULL unique key (PostgreSQL before 14)",
        )
    return KeysetWalk(table.relation, table.key, doomed, batch_size, strategy)


@dataclass(frozen=True)
class _Plan:
    cutoff: datetime
    layout: str | None
    sessions: Walk
    tokens: Walk | str  # or why the verification tokens are skipped
    database: str  # the database's name (it keys the walks' positions)


def _plan(conn: psycopg.Connection, settings: SessionSettings, server_version: int | None = None) -> _Plan:
    """The walks, each table's chosen now (the cutoff and a tid-range walk's end in pages: in the same
    transaction), for the server's version or ``server_version`` (``server_version_num``)."""
    cutoff, database = conn.execute("SELECT now(), current_database()").fetchone()
    cutoff = cutoff.astimezone(UTC)
    version = server_version or conn.info.server_version
    tables = settings.tables
    layout = detect_layout(conn, tables)
    session_table = tables.session_table or tables.named(layout.session)
    session_columns = () if tables.session_table else SESSION_COLUMNS
    sessions = _Target(
        session_table, "SESSION_TABLE", settings.expires_column, "SESSION_EXPIRES_COLUMN", session_columns
    )
    try:
        session_walk = _expiry_walk(conn, sessions, cutoff, settings.batch_size, version)
    except _Unusable as exc:
        raise ConfigurationError(exc.variable, str(exc)) from None
    token_table = tables.verification_table or (tables.named(layout.verification_token) if layout else None)
    if token_table is None:
        return _Plan(cutoff, None, session_walk, "no Auth.js layout detected: set VERIFICATION_TOKEN_TABLE", database)
    token_expires = settings.verification_expires_column
    token_columns = () if tables.verification_table else VERIFICATION_TOKEN_COLUMNS
    tokens = _Target(
        token_table, "VERIFICATION_TOKEN_TABLE", token_expires, "VERIFICATION_TOKEN_EXPIRES_COLUMN", token_columns
    )
    try:
        token_walk: Walk | str = _expiry_walk(conn, tokens, cutoff, settings.batch_size, version)
    except _Unusable as exc:
        token_walk = f"verification token table {token_table}: {exc} (see {exc.variable})"
    return _Plan(cutoff, layout.name if layout else None, session_walk, token_walk, database)


def heal_stale_sessions(
    db: Database,
    settings: SessionSettings,
    budget: Budget,
    dry_run: bool = False,
    on_batch: Callable[[float], None] | None = None,
    positions: PositionStore | None = None,
    server_version: int | None = None,
) -> dict[str, Any]:
    """Delete (count, in a dry run) expired sessions, then expired verification tokens.

    ``on_batch``, if given, is called with each batch's duration in seconds (benchmarks, tests).
    ``positions``: where ``tid-range`` walks resume and record where they stopped (None: from page 0).
    ``server_version``: plan the walks as for that ``server_version_num`` (tests: older servers' walks).
    """
    plan = db.run(functools.partial(_plan, settings=settings, server_version=server_version))
    sessions, position = run_resumable(db, plan.sessions, budget, dry_run, positions, plan.database, on_batch)
    tokens, token_position = Progress(), None
    if not isinstance(plan.tokens, str) and not sessions.partial:
        tokens, token_position = run_resumable(db, plan.tokens, budget, dry_run, positions, plan.database, on_batch)
    token_walk = None if isinstance(plan.tokens, str) else plan.tokens
    return {
        "count": sessions.count,
        "verificationTokens": tokens.count,
        "partial": sessions.partial or tokens.partial,
        "batches": sessions.batches + tokens.batches,
        "layout": plan.layout,
        "table": str(plan.sessions.table),
        "strategy": plan.sessions.strategy,
        "key": list(plan.sessions.key),
        "position": position,
        "verificationTable": str(token_walk.table) if token_walk else None,
        "verificationStrategy": token_walk.strategy if token_walk else None,
        "verificationKey": list(token_walk.key) if token_walk else None,
        "verificationPosition": token_position,
        "skipped": [plan.tokens] if isinstance(plan.tokens, str) else [],
        "cutoff": plan.cutoff.isoformat().replace("+00:00", "Z"),
    }


def explain_session_batch(
    db: Database, settings: SessionSettings, server_version: int | None = None
) -> tuple[str, str]:
    """(strategy, ``EXPLAIN`` of the first session batch as it would run now), for tests and benchmarks."""

    def explain(conn: psycopg.Connection) -> tuple[str, str]:
        walk = _plan(conn, settings, server_version).sessions
        return walk.strategy, walk.explain(conn)

    return db.run(explain)
