"""cleanOrphanedRecords: child rows whose non-null parent key matches no parent row, deleted in batches.

Orphans arise where the database does not enforce the relation, e.g. Prisma's ``relationMode = "prisma"``
with rows deleted outside Prisma. Rules come from ``ORPHAN_RULES``, a JSON list of
``{"table", "column", "parentTable", "parentColumn"}`` (tables as ``name`` or ``schema.name``, default schema
``public``); without it, the NextAuth Prisma schema's ``"Session"``, ``"Account"`` and ``"Authenticator"``
``"userId"`` -> ``"User"."id"``, where a default rule the database does not have (e.g. no ``Authenticator``
table) is reported as skipped.

Every rule is checked against the catalog, and its delete planned, before anything is deleted: a configured
rule naming an unknown table or column, or comparing types that cannot be compared, raises
:class:`ConfigurationError` naming ``ORPHAN_RULES`` (never echoing its values). Names are only ever used
quoted (``psycopg.sql.Identifier``). Each child table is walked in primary-key order, ``ORPHAN_BATCH_SIZE``
rows per batch and transaction, so no batch scans the whole table (see :mod:`.sessions`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from parel_monitoring.db import Database
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.tables import DEFAULT_BATCH_SIZE, KeysetWalk, Relation, find_table, run_walk
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


DEFAULT_RULES = tuple(
    OrphanRule(Relation("public", table), "userId", Relation("public", "User"), "id")
    for table in ("Session", "Account", "Authenticator")
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
        table, parent = Relation.parse(item["table"]), Relation.parse(item["parentTable"])
        if table is None or parent is None:
            raise ConfigurationError(VARIABLE, f"rule {number}: tables are named name or schema.name")
        rules.append(OrphanRule(table, item["column"], parent, item["parentColumn"]))
    return tuple(rules)


@dataclass(frozen=True)
class OrphanSettings:
    rules: tuple[OrphanRule, ...]
    configured: bool  # the rules come from ORPHAN_RULES: one the database cannot satisfy is an error, not a skip
    batch_size: int

    @classmethod
    def from_env(cls) -> OrphanSettings:
        text = env_str(VARIABLE)
        return cls(
            rules=DEFAULT_RULES if text is None else parse_rules(text),
            configured=text is not None,
            batch_size=env_int("ORPHAN_BATCH_SIZE", DEFAULT_BATCH_SIZE, minimum=1, maximum=100_000),
        )


def _walk(conn: psycopg.Connection, rule: OrphanRule, batch_size: int) -> KeysetWalk | str:
    """The walk that deletes ``rule``'s orphans, or why this database cannot run it."""
    child = find_table(conn, rule.table)
    if child is None:
        return "table names no table in the database"
    if rule.column not in child.columns:
        return "column names no column of the table"
    if not child.key:
        return "table has neither a primary key nor a NOT NULL unique key"
    parent = find_table(conn, rule.parent_table, kinds="rp")
    if parent is None:
        return "parentTable names no table in the database"
    if rule.parent_column not in parent.columns:
        return "parentColumn names no column of the parent table"
    walk = KeysetWalk(rule.table, child.key, rule.orphaned, batch_size)
    try:
        with conn.transaction():  # a savepoint: planning the delete checks that the types can be compared
            walk.explain(conn)
    except (psycopg.errors.UndefinedFunction, psycopg.errors.DatatypeMismatch):
        return "column and parentColumn have types that cannot be compared"
    return walk


def _walks(conn: psycopg.Connection, settings: OrphanSettings) -> list[KeysetWalk | str]:
    """Every rule's walk or, for a default rule this database lacks, why it is skipped (configured: raises)."""
    walks = [_walk(conn, rule, settings.batch_size) for rule in settings.rules]
    for number, walk in enumerate(walks, 1):
        if isinstance(walk, str) and settings.configured:
            raise ConfigurationError(VARIABLE, f"rule {number}: {walk}")
    return walks


def clean_orphaned_records(
    db: Database, settings: OrphanSettings, budget: Budget, dry_run: bool = False
) -> dict[str, Any]:
    """Delete (count, in a dry run) the orphans of every rule, in order, within ``budget``."""
    walks = db.run(functools.partial(_walks, settings=settings))
    total, partial, rules = 0, False, []
    for rule, walk in zip(settings.rules, walks, strict=True):
        deleted, skipped = 0, None
        if isinstance(walk, str):
            skipped = walk
        elif partial:
            skipped = BUDGET_EXHAUSTED
        else:
            progress = run_walk(db, walk, budget, dry_run)
            deleted, partial = progress.count, progress.partial
        total += deleted
        rules.append({**rule.describe(), "deleted": deleted, "skipped": skipped})
    return {"count": total, "partial": partial, "rules": rules}
