"""Batched deletes shared by the heal routines: catalog lookups and the walks.

A walk deletes (or, in a dry run, counts) rows in batches, each its own short transaction, so no batch scans
the whole table. :func:`choose_strategy` picks it per table when the run is planned:

* ``expires-index`` (:class:`ExpiresIndexWalk`): an index leads with the expires column: only the expired
  rows are visited, in expires order;
* ``tid-range`` (:class:`TidRangeWalk`, PostgreSQL 14 and later, otherwise): the table in physical order, a
  slice of pages per batch (a Tid Range Scan), whatever the order of its keys;
* ``primary-key`` / ``unique-key`` (:class:`KeysetWalk`, older servers): the table in key order, a chunk of
  rows per batch, each range read through the key's index.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

import psycopg
from psycopg import sql

from parel_monitoring.db import Database
from parel_monitoring.heal.budget import Budget

DEFAULT_BATCH_SIZE = 5000
# Walk strategies: an index leading with the expires column, the primary key, or a NOT NULL unique key.
EXPIRES_INDEX, PRIMARY_KEY, UNIQUE_KEY = "expires-index", "primary-key", "unique-key"
# ... or the table's physical order in slices of pages (PostgreSQL 14 added the Tid Range Scan).
TID_RANGE, TID_RANGE_MIN_SERVER = "tid-range", 140000
# The expires column's type -> the cutoff expression it is compared with (given the cutoff, a timestamptz).
CUTOFFS = {
    "timestamp without time zone": sql.SQL("(CAST({} AS timestamptz) AT TIME ZONE 'UTC')"),
    "timestamp with time zone": sql.SQL("CAST({} AS timestamptz)"),
}
CASTS = {"timestamp without time zone": sql.SQL("timestamp"), "timestamp with time zone": sql.SQL("timestamptz")}


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class Relation:
    """A table name: ``schema.name``, or ``name`` alone (``schema`` None), found the way PostgreSQL resolves an
    unqualified name: in the first schema of the connection's search path (``current_schemas(false)``) that
    has it. Always used quoted."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str, default_schema: str | None = None) -> Relation | None:
        """``name`` or ``schema.name`` (``name`` alone: in ``default_schema``, else on the search path)."""
        parts = text.split(".")
        if len(parts) == 1:
            parts.insert(0, default_schema)
        if len(parts) != 2 or not parts[1] or parts[0] == "":
            return None
        return cls(*parts)

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.name) if self.schema is None else sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Table:
    relation: Relation  # schema-qualified
    oid: int
    relfilenode: int  # changes when the table is rewritten (VACUUM FULL, TRUNCATE, CLUSTER)
    pages: int  # its size in pages (blocks) when looked up
    rows_per_page: float  # its statistics' average, or the most a page can hold when it has none
    columns: Mapping[str, str]  # name -> type (regtype text, without modifiers)
    key: tuple[str, ...]  # the primary key, else the narrowest NOT NULL unique key; () without one
    key_kind: str | None  # PRIMARY_KEY or UNIQUE_KEY (None without a key)


# The first schema (in search-path order, or the one given) with a relation of that name and kind.
_TABLE = """
SELECT c.oid, n.nspname::text, pg_relation_filenode(c.oid),
       pg_relation_size(c.oid) / current_setting('block_size')::bigint,
       CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN c.reltuples / c.relpages
            ELSE (current_setting('block_size')::int - 24) / 28 END  -- MaxHeapTuplesPerPage
FROM unnest(CASE WHEN %(schema)s::text IS NULL THEN current_schemas(false) ELSE ARRAY[%(schema)s::name] END)
     WITH ORDINALITY AS s(name, position)
JOIN pg_catalog.pg_namespace n ON n.nspname = s.name
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
WHERE c.relname = %(name)s AND c.relkind = ANY(%(kinds)s)
ORDER BY s.position
LIMIT 1
"""
_COLUMNS = """
SELECT attname, atttypid::regtype::text FROM pg_catalog.pg_attribute
WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
"""
_ROW_KEY = """
SELECT array_agg(a.attname::text ORDER BY k.position), i.indisprimary
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
  AND k.position <= i.indnkeyatts
GROUP BY i.indexrelid, i.indisprimary
HAVING bool_and(a.attnotnull)
ORDER BY i.indisprimary DESC, count(*), i.indexrelid
LIMIT 1
"""
_LEADING_INDEX = """
SELECT EXISTS (
  SELECT FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_am am ON am.oid = ic.relam
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = %s AND a.attname = %s AND am.amname = 'btree' AND i.indisvalid AND i.indpred IS NULL
)
"""


def find_table(conn: psycopg.Connection, relation: Relation, kinds: str = "r") -> Table | None:
    """The table ``relation`` names (relkinds ``kinds``: ``r`` ordinary, ``p`` partitioned), or None.

    Its row key is the primary key, else the narrowest unique index whose columns are all NOT NULL (e.g.
    the Prisma adapter's ``"Session"``, which has no primary key, only a unique ``"sessionToken"``).
    """
    row = conn.execute(_TABLE, {"schema": relation.schema, "name": relation.name, "kinds": list(kinds)}).fetchone()
    if row is None:
        return None
    oid, schema, filenode, pages, density = row
    columns = dict(conn.execute(_COLUMNS, (oid,)).fetchall())
    key = conn.execute(_ROW_KEY, (oid,)).fetchone()
    found = functools.partial(
        Table, Relation(schema, relation.name), oid, filenode or 0, int(pages or 0), float(density), columns
    )
    if key is None:
        return found((), None)
    return found(tuple(key[0]), PRIMARY_KEY if key[1] else UNIQUE_KEY)


def choose_strategy(server_version: int, expires_indexed: bool, key_kind: str | None) -> str | None:
    """The walk for a table: ``expires-index`` when an index leads with its expires column (``expires_indexed``;
    always False for orphan rules), else ``tid-range`` on PostgreSQL 14 and later (``server_version`` as
    ``server_version_num``), else its key's walk (``key_kind``); None when an older server has no key to walk."""
    if expires_indexed:
        return EXPIRES_INDEX
    if server_version >= TID_RANGE_MIN_SERVER:
        return TID_RANGE
    return key_kind


def has_leading_index(conn: psycopg.Connection, table: Table, column: str) -> bool:
    """Whether a valid, non-partial btree index on ``table`` has ``column`` as its first key."""
    return bool(conn.execute(_LEADING_INDEX, (table.oid, column)).fetchone()[0])


# --------------------------------------------------------------------------- batched deletes
# Statements carry their values as sql.Literal and run without client-side parameters, so a "%" in a table or
# column name is never taken for a placeholder. Rows are aliased "source" in bound queries, "target" in deletes.

Predicate = Callable[[sql.Identifier], sql.Composable]  # the rows to delete, given the alias of a row
SOURCE, TARGET = sql.Identifier("source"), sql.Identifier("target")


def expired(column: str, column_type: str, cutoff: datetime) -> Predicate:
    """Rows whose ``column`` (of ``column_type``, a key of ``CUTOFFS``) is before ``cutoff``."""
    before = CUTOFFS[column_type].format(sql.Literal(cutoff))
    return lambda row: sql.SQL("{}.{} < {}").format(row, sql.Identifier(column), before)


def _action(table: Relation, where: sql.Composable, dry_run: bool) -> sql.Composed:
    verb = sql.SQL("SELECT count(*) FROM" if dry_run else "DELETE FROM")
    return sql.SQL("{} {} AS target WHERE {}").format(verb, table.identifier, where)


def _act(conn: psycopg.Connection, table: Relation, where: sql.Composable, dry_run: bool) -> int:
    """Delete the rows of ``table`` that ``where`` selects; in a dry run, count them."""
    cursor = conn.execute(_action(table, where, dry_run))
    return cursor.fetchone()[0] if dry_run else cursor.rowcount


def _explain(conn: psycopg.Connection, statement: sql.Composed) -> str:
    return "\n".join(line for (line,) in conn.execute(sql.SQL("EXPLAIN ") + statement))


@dataclass(frozen=True)
class Step:
    hits: int  # rows deleted (or, in a dry run, that would be)
    position: Any  # where the next batch starts
    done: bool


class Walk(Protocol):
    table: Relation
    strategy: str
    key: tuple[str, ...]  # the columns the walk moves along

    def step(self, conn: psycopg.Connection, position: Any, dry_run: bool) -> Step: ...

    def explain(self, conn: psycopg.Connection) -> str: ...


class _RangeWalk:
    """A walk whose batch reads where its range ends (``_upper_query``: one row, or none for the last batch),
    then acts on the range from the position to there (``_where``); that end is the next position."""

    table: Relation

    def _upper_query(self, position: Any) -> sql.Composed: ...

    def _upper(self, conn: psycopg.Connection, position: Any) -> Any:
        row = conn.execute(self._upper_query(position)).fetchone()
        return row[0] if row else None

    def _where(self, position: Any, upper: Any) -> sql.Composable: ...

    def step(self, conn: psycopg.Connection, position: Any, dry_run: bool) -> Step:
        upper = self._upper(conn, position)
        hits = _act(conn, self.table, self._where(position, upper), dry_run)
        return Step(hits, upper, done=upper is None)

    def explain(self, conn: psycopg.Connection) -> str:
        """``EXPLAIN`` of the first batch's two statements."""
        delete = _action(self.table, self._where(None, self._upper(conn, None)), dry_run=False)
        return _explain(conn, self._upper_query(None)) + "\n\n" + _explain(conn, delete)


@dataclass(frozen=True)
class KeysetWalk(_RangeWalk):
    """``table`` in chunks of ``batch_size`` rows in ``key`` order, deleting the rows of each chunk that
    ``doomed`` selects.

    A batch reads the chunk's last key, the ``batch_size``-th after the position (through the key's index),
    then deletes by key range ``position < key <= last`` (an index range scan), so every row is read once
    and no batch scans the table; without a last key it is the final chunk.
    """

    table: Relation
    key: tuple[str, ...]
    doomed: Predicate
    batch_size: int
    strategy: str = PRIMARY_KEY  # or UNIQUE_KEY: which kind of key ``key`` is

    def _key(self, row: sql.Identifier) -> sql.Composed:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(row, sql.Identifier(column)) for column in self.key)

    def _beyond(self, row: sql.Identifier, operator: str, key: tuple | None) -> list[sql.Composed]:
        """``(row's key) operator (key)``, or nothing when ``key`` is None."""
        if key is None:
            return []
        return [
            sql.SQL("({}) {} ({})").format(self._key(row), sql.SQL(operator), sql.SQL(", ").join(map(sql.Literal, key)))
        ]

    def _upper_query(self, after: tuple | None) -> sql.Composed:
        return sql.SQL("SELECT {key} FROM {table} AS source WHERE {where} ORDER BY {key} OFFSET {skip} LIMIT 1").format(
            key=self._key(SOURCE),
            table=self.table.identifier,
            where=sql.SQL(" AND ").join([*self._beyond(SOURCE, ">", after), sql.SQL("true")]),
            skip=sql.Literal(self.batch_size - 1),
        )

    def _upper(self, conn: psycopg.Connection, after: tuple | None) -> tuple | None:
        return conn.execute(self._upper_query(after)).fetchone()

    def _where(self, after: tuple | None, last: tuple | None) -> sql.Composable:
        bounds = [*self._beyond(TARGET, ">", after), *self._beyond(TARGET, "<=", last), self.doomed(TARGET)]
        return sql.SQL(" AND ").join(bounds)


@dataclass(frozen=True)
class ExpiresIndexWalk(_RangeWalk):
    """The expired rows of ``table`` in ``expires`` order, through an index leading with it.

    A batch reads the expiry ``batch_size`` rows on from the position (an index-only range scan), then
    deletes the rows from the position's expiry up to, excluding, that one (an index range scan): fewer than
    ``batch_size``. The position (an expiry, as text so that ±infinity round-trips) moves to that expiry.
    When ``batch_size`` rows or more share the position's expiry, ``batch_size`` of them are deleted by
    ctid (a Tid Scan) instead, until the position moves on.
    """

    table: Relation
    expires: str
    expires_type: str
    cutoff: datetime
    batch_size: int
    strategy: ClassVar[str] = EXPIRES_INDEX

    @property
    def key(self) -> tuple[str, ...]:
        return (self.expires,)

    def doomed(self, row: sql.Identifier) -> sql.Composable:
        return expired(self.expires, self.expires_type, self.cutoff)(row)

    def _compare(self, row: sql.Identifier, operator: str, value: sql.Composable) -> sql.Composed:
        return sql.SQL("{}.{} {} {}").format(row, sql.Identifier(self.expires), sql.SQL(operator), value)

    def _expiry(self, text: str) -> sql.Composed:
        return sql.SQL("CAST({} AS {})").format(sql.Literal(text), CASTS[self.expires_type])

    def _range(self, row: sql.Identifier, floor: str | None, upper: str | None) -> sql.Composed:
        """Expired, and ``floor <= expires < upper`` (either side open when None)."""
        bounds = [self.doomed(row)]
        if floor is not None:
            bounds.append(self._compare(row, ">=", self._expiry(floor)))
        if upper is not None:
            bounds.append(self._compare(row, "<", self._expiry(upper)))
        return sql.SQL(" AND ").join(bounds)

    def _upper_query(self, floor: str | None) -> sql.Composed:
        expires = sql.Identifier(self.expires)
        return sql.SQL("SELECT source.{}::text FROM {} AS source WHERE {} ORDER BY source.{} OFFSET {} LIMIT 1").format(
            expires, self.table.identifier, self._range(SOURCE, floor, None), expires, sql.Literal(self.batch_size - 1)
        )

    def _where(self, floor: str | None, upper: str | None) -> sql.Composable:
        if upper is None or upper != floor:
            return self._range(TARGET, floor, upper)
        tied = sql.SQL("SELECT source.ctid FROM {} AS source WHERE {} LIMIT {}").format(
            self.table.identifier, self._compare(SOURCE, "=", self._expiry(floor)), sql.Literal(self.batch_size)
        )
        return sql.SQL("target.ctid = ANY(ARRAY({})) AND {}").format(
            tied, self._compare(TARGET, "=", self._expiry(floor))
        )

    def step(self, conn: psycopg.Connection, position: str | None, dry_run: bool) -> Step:
        if dry_run:  # one index range count: nothing to page through
            return Step(_act(conn, self.table, self.doomed(TARGET), dry_run=True), None, done=True)
        return super().step(conn, position, dry_run)


# TidRangeWalk's slices: the time a slice aims at (well under the 100 ms a batch may take), and how much larger
# than the last one the next slice may be.
TARGET_BATCH_S, MAX_GROWTH = 0.03, 2.0


def first_span(table: Table, batch_rows: int) -> int:
    """The first slice's pages: as many as hold ``batch_rows`` rows at the table's average density."""
    return max(1, math.floor(batch_rows / max(table.rows_per_page, 1.0)))


def next_span(span: int, scanned: int, hits: int, seconds: float, batch_rows: int) -> int:
    """The next slice's pages after one of ``span`` pages (``scanned`` of them read: the last slice before the
    end is shorter) took ``seconds`` and held ``hits`` doomed rows: as many pages as that speed fits in
    ``TARGET_BATCH_S`` and that density of doomed rows fits in ``batch_rows``, at most ``MAX_GROWTH`` times
    ``span``, at least one."""
    limits = [span * MAX_GROWTH]
    if seconds > 0:
        limits.append(scanned * TARGET_BATCH_S / seconds)
    if hits:
        limits.append(scanned * batch_rows / hits)
    return max(1, math.floor(min(limits)))


@dataclass(frozen=True)
class TidCursor:
    """Where a :class:`TidRangeWalk`'s next batch starts (``block``), its size in pages (``span``), and whether
    the walk has wrapped around to page 0."""

    block: int
    span: int
    wrapped: bool = False


def _tid(block: int) -> sql.Composed:
    return sql.SQL("CAST({} AS tid)").format(sql.Literal(f"({block},0)"))


@dataclass(frozen=True)
class TidRangeWalk:
    """``table`` in physical order, a slice of pages per batch: ``ctid >= '(first,0)' AND ctid < '(end,0)'``
    and ``doomed`` (a Tid Range Scan, PostgreSQL 14 and later), so the cost of a batch depends neither on the
    order of the table's keys nor on the size of the table.

    The walk covers the ``pages`` the table had when the run was planned (``pg_relation_size`` / block
    size): rows added later beyond them are new. It starts at page ``start`` (0, or where a partial run
    stopped) and, from a later page, wraps around to page 0 and ends there, so a walk that finishes has
    visited every page. The first slice holds about ``batch_rows`` rows at the table's average density
    (:func:`first_span`); each next one is sized from the last (:func:`next_span`): about ``TARGET_BATCH_S``
    long and about ``batch_rows`` doomed rows at the last slice's density (at most ``MAX_GROWTH`` times its
    pages, so a slice after a sparse stretch can hold more, and the next one shrinks again). The delete
    re-checks ``doomed`` on the row version it locks, so a row updated meanwhile (it gets a new ctid,
    possibly behind the walk) is only deleted if it is still doomed.
    """

    table: Relation
    doomed: Predicate
    pages: int
    batch_rows: int
    span: int = 1  # the first slice's pages (first_span)
    start: int = 0
    oid: int = 0
    filenode: int = 0
    strategy: ClassVar[str] = TID_RANGE
    key: ClassVar[tuple[str, ...]] = ("ctid",)

    def _where(self, first: int, end: int) -> sql.Composed:
        return sql.SQL("target.ctid >= {} AND target.ctid < {} AND {}").format(
            _tid(first), _tid(end), self.doomed(TARGET)
        )

    def step(self, conn: psycopg.Connection, position: TidCursor | None, dry_run: bool) -> Step:
        cursor = position or TidCursor(self.start, self.span)
        limit = self.start if cursor.wrapped else self.pages
        if cursor.block >= limit:  # an empty table
            return Step(0, None, done=True)
        end = min(cursor.block + cursor.span, limit)
        started = time.perf_counter()
        hits = _act(conn, self.table, self._where(cursor.block, end), dry_run)
        span = next_span(cursor.span, end - cursor.block, hits, time.perf_counter() - started, self.batch_rows)
        if end < limit:
            return Step(hits, TidCursor(end, span, cursor.wrapped), done=False)
        if cursor.wrapped or self.start == 0:
            return Step(hits, None, done=True)
        return Step(hits, TidCursor(0, span, wrapped=True), done=False)

    def stopped_at(self, position: TidCursor | None) -> int:
        """The page where a walk stopped at ``position`` (a partial run's) would resume."""
        return position.block if position is not None else self.start

    def explain(self, conn: psycopg.Connection) -> str:
        """``EXPLAIN`` of the first batch's delete."""
        end = max(min(self.start + self.span, self.pages), self.start + 1)
        return _explain(conn, _action(self.table, self._where(self.start, end), dry_run=False))


@dataclass
class Progress:
    count: int = 0
    batches: int = 0
    partial: bool = False
    position: Any = None  # a partial walk's: where its next batch would have started


def _step(conn: psycopg.Connection, walk: Walk, position: Any, dry_run: bool) -> Step:
    """One batch. Its commit does not wait for the WAL flush (``synchronous_commit`` off for this transaction):
    after a server crash the last deletes may be undone, and those rows, still expired, go in the next run;
    the heal needs no durability, and a flush per batch would cost more than the batch on a busy disk."""
    if not dry_run:
        conn.execute("SELECT set_config('synchronous_commit', 'off', true)")
    return walk.step(conn, position, dry_run)


def run_walk(
    db: Database,
    walk: Walk,
    budget: Budget,
    dry_run: bool,
    on_batch: Callable[[float], None] | None = None,
) -> Progress:
    """Batches of ``walk`` until it is done or ``budget`` runs out (``partial``), each in its own transaction;
    ``on_batch`` gets each batch's duration in seconds."""
    progress = Progress()
    position = None
    while True:
        if budget.exhausted():
            progress.partial, progress.position = True, position
            return progress
        started = time.perf_counter()
        step = db.run(functools.partial(_step, walk=walk, position=position, dry_run=dry_run))
        if on_batch is not None:
            on_batch(time.perf_counter() - started)
        progress.count += step.hits
        progress.batches += 1
        if step.done:
            return progress
        position = step.position
