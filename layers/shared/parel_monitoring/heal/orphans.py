"""cleanOrphanedRecords: child rows whose non-null parent key matches no parent row, deleted in batches.

Orphans arise where the database does not enforce the relation (the pg-adapter's documented schema has no
foreign keys; Prisma's ``relationMode = "prisma"``; a restore or replica load with triggers disabled) and rows
are deleted outside the app. Rules come from ``ORPHAN_RULES``, a JSON list of
``{"table", "column", "parentTable", "parentColumn"}`` (tables as ``name`` or ``schema.name``; ``name`` alone
is looked up on the search path); without it, the Auth.js layout's (:mod:`.authjs`, detected or
``SESSION_SCHEMA``): its session, account and authenticator tables' ``"userId"`` -> its user table's ``id``.
A default rule whose table the database lacks, or whose child or user table lacks the columns every adapter
gives it (an app's own ``accounts`` is not Auth.js's), is reported as skipped; for a table Auth.js requires
(not the optional WebAuthn authenticator table) that also lists it in the routine's ``skipped`` (the run is
then ``incomplete``).

Every rule is checked against the catalog, and its delete planned, before anything is deleted: a configured
rule naming an unknown table or column, or comparing types that cannot be compared, raises
:class:`ConfigurationError` naming ``ORPHAN_RULES`` (never echoing its values). Names are only ever used
quoted (``psycopg.sql.Identifier``). Each child table is walked (``strategy`` and ``key`` of each rule), a
batch per transaction, so no batch scans the whole table (see :mod:`.tables`): on PostgreSQL 14 and later in
physical order (``tid-range``: slices of pages sized to about 30 ms and ``ORPHAN_BATCH_SIZE`` orphans, resumed
by the next run after a partial one, ``position`` of the rule); on older servers in the order of its primary
key, or of a NOT NULL unique key, ``ORPHAN_BATCH_SIZE`` rows per batch. Every child row is checked against its
parent through the parent's key index either way, so only the order of the child's reads differs: with a
random key (the Prisma ``"Session"``'s token, ``"Account"``'s provider ids) the key walk reads the child's
pages in random order, the tid-range walk once each in order, and it needs no key.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from parel_monitoring.db import Database
from parel_monitoring.heal.authjs import USER_COLUMNS, AuthTablesSettings, Layout, detect_layout
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.positions import PositionStore, run_resumable
from parel_monitoring.heal.tables import (
    DEFAULT_BATCH_SIZE,
    TID_RANGE,
    KeysetWalk,
    Relation,
    TidRangeWalk,
    Walk,
    choose_strategy,
    find_table,
    first_span,
)
from parel_monitoring.settings import ConfigurationError, env_int, env_str

VARIABLE = "ORPHAN_RULES"
FIELDS = ("table", "column", "parentTable", "parentColumn")
BUDGET_EXHAUSTED = "budget exhausted"


@dataclass(frozen=True)
class OrphanRule:
    table: Relation
    column: str
    parent_table: Relation
    parent_column: str
    required: bool = True  # a default rule for a table Auth.js needs: missing, the run is incomplete
    # A default rule's: the columns without which the child or parent table is not taken for Auth.js's
    child_columns: tuple[str, ...] = ()
    parent_columns: tuple[str, ...] = ()

    def describe(self) -> dict[str, str]:
        return {
            "table": str(self.table),
            "column": self.column,
            "parentTable": str(self.parent_table),
            "parentColumn": self.parent_column,
        }

    def orphaned(self, row: sql.Identifier) -> sql.Composed:
        """``row`` has a parent key and no parent row has it."""
        return sql.SQL(
            "{row}.{column} IS NOT NULL AND NOT EXISTS "
            "(SELECT FROM {parent} AS parent_row WHERE parent_row.{parent_column} = {row}.{column})"
        ).format(
            row=row,
            column=sql.Identifier(self.column),
            parent=self.parent_table.identifier,
            parent_column=sql.Identifier(self.parent_column),
        )


def default_rules(layout: Layout, tables: AuthTablesSettings) -> tuple[OrphanRule, ...]:
    """``layout``'s children's ``"userId"`` -> its user table's ``id``."""
    user = tables.named(layout.user)
    return tuple(
        OrphanRule(tables.named(child), "userId", user, "id", required, columns, USER_COLUMNS)
        for child, required, columns in layout.children()
    )


def parse_rules(text: str) -> tuple[OrphanRule, ...]:
    """``ORPHAN_RULES``'s rules, shape-checked; errors name the variable and the rule's position only."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigurationError(VARIABLE, "is not valid JSON") from None
    if not isinstance(data, list):
        raise ConfigurationError(VARIABLE, f"must be a JSON list of {{{', '.join(FIELDS)}}} objects")
    rules = []
    for number, item in enumerate(data, 1):
        if not (isinstance(item, dict) and set(item) == set(FIELDS)):
            raise ConfigurationError(VARIABLE, f"rule {number} must have exactly the fields {', '.join(FIELDS)}")
        if not all(isinstance(value, str) and value for value in item.values()):
            raise ConfigurationError(VARIABLE, f"rule {number}: every field must be a non-empty string")
        table, parent = Relation.parse(item["table"]), Relation.parse(item["parentTable"])  # search path
        if table is None or parent is None:
            raise ConfigurationError(VARIABLE, f"rule {number}: tables are named name or schema.name")
        rules.append(OrphanRule(table, item["column"], parent, item["parentColumn"]))
    return tuple(rules)


@dataclass(frozen=True)
class OrphanSettings:
    rules: tuple[OrphanRule, ...] | None  # ORPHAN_RULES; None: the Auth.js layout's
    tables: AuthTablesSettings
    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    def configured(self) -> bool:
        """The rules come from ORPHAN_RULES: one the database cannot satisfy is an error, not a skip."""
        return self.rules is not None

    @classmethod
    def from_env(cls) -> OrphanSettings:
        text = env_str(VARIABLE)
        return cls(
            rules=None if text is None else parse_rules(text),
            tables=AuthTablesSettings.from_env(),
            batch_size=env_int("ORPHAN_BATCH_SIZE", DEFAULT_BATCH_SIZE, minimum=1, maximum=100_000),
        )


def _walk(
    conn: psycopg.Connection, rule: OrphanRule, batch_size: int, server_version: int
) -> tuple[OrphanRule, Walk | str]:
    """``rule`` with its tables' schemas resolved, and the walk that deletes its orphans or why this database
    cannot run it."""
    child = find_table(conn, rule.table)
    if child is None:
        return rule, "table names no table in the database"
    if rule.column not in child.columns:
        return rule, "column names no column of the table"
    if lacking := [column for column in rule.child_columns if column not in child.columns]:
        return rule, f"table lacks {', '.join(lacking)}: not an Auth.js table"
    strategy = choose_strategy(server_version, False, child.key_kind)
    if strategy is None:
        return rule, "table has neither a primary key nor a NOT NULL unique key (PostgreSQL before 14)"
    parent = find_table(conn, rule.parent_table, kinds="rp")
    if parent is None:
        return rule, "parentTable names no table in the database"
    if rule.parent_column not in parent.columns:
        return rule, "parentColumn names no column of the parent table"
    if lacking := [column for column in rule.parent_columns if column not in parent.columns]:
        return rule, f"parentTable lacks {', '.join(lacking)}: not an Auth.js user table"
    rule = dataclasses.replace(rule, table=child.relation, parent_table=parent.relation)
    walk: Walk
    if strategy == TID_RANGE:
        walk = TidRangeWalk(
            rule.table,
            rule.orphaned,
            child.pages,
            batch_size,
            first_span(child, batch_size),
            oid=child.oid,
            filenode=child.relfilenode,
        )
    else:
        walk = KeysetWalk(rule.table, child.key, rule.orphaned, batch_size, strategy)
    try:
        with conn.transaction():  # a savepoint: planning the delete checks that the types can be compared
            walk.explain(conn)
    except (psycopg.errors.UndefinedFunction, psycopg.errors.DatatypeMismatch):
        return rule, "column and parentColumn have types that cannot be compared"
    return rule, walk


@dataclass(frozen=True)
class _Plan:
    layout: str | None
    walks: list[tuple[OrphanRule, Walk | str]]
    database: str = ""  # the database's name (it keys the walks' positions)


def _plan(conn: psycopg.Connection, settings: OrphanSettings, server_version: int | None = None) -> _Plan:
    """Every rule's walk or, for a default rule this database lacks, why it is skipped (configured: raises)."""
    database = conn.execute("SELECT current_database()").fetchone()[0]
    version = server_version or conn.info.server_version
    if settings.rules is not None:
        walks = [_walk(conn, rule, settings.batch_size, version) for rule in settings.rules]
        for number, (_, walk) in enumerate(walks, 1):
            if isinstance(walk, str):
                raise ConfigurationError(VARIABLE, f"rule {number}: {walk}")
        return _Plan(None, walks, database)
    layout = detect_layout(conn, settings.tables)
    if layout is None:
        return _Plan(None, [], database)
    rules = default_rules(layout, settings.tables)
    return _Plan(layout.name, [_walk(conn, rule, settings.batch_size, version) for rule in rules], database)


NO_LAYOUT = "no Auth.js layout detected and ORPHAN_RULES unset: no rules to run"


def clean_orphaned_records(
    db: Database,
    settings: OrphanSettings,
    budget: Budget,
    dry_run: bool = False,
    positions: PositionStore | None = None,
    server_version: int | None = None,
) -> dict[str, Any]:
    """Delete (count, in a dry run) the orphans of every rule, in order, within ``budget``; ``positions``:
    where ``tid-range`` walks resume and record where they stopped (None: from page 0); ``server_version``:
    plan the walks as for that ``server_version_num`` (tests: older servers' walks)."""
    plan = db.run(functools.partial(_plan, settings=settings, server_version=server_version))
    total, partial, rules = 0, False, []
    skipped = [] if plan.walks or settings.configured else [NO_LAYOUT]
    for rule, walk in plan.walks:
        deleted, skip, strategy, key, position = 0, None, None, None, None
        if isinstance(walk, str):
            skip = walk
            if rule.required:
                skipped.append(f"{rule.table}.{rule.column} -> {rule.parent_table}.{rule.parent_column}: {walk}")
        else:
            strategy, key = walk.strategy, list(walk.key)
            if partial:
                skip = BUDGET_EXHAUSTED
            else:
                progress, position = run_resumable(db, walk, budget, dry_run, positions, plan.database)
                deleted, partial = progress.count, progress.partial
        total += deleted
        rules.append(
            {
                **rule.describe(),
                "deleted": deleted,
                "skipped": skip,
                "strategy": strategy,
                "key": key,
                "position": position,
            }
        )
    return {"count": total, "partial": partial, "layout": plan.layout, "rules": rules, "skipped": skipped}
