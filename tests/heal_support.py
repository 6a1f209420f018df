"""Helpers shared by the heal tests (arrange and inspect NextAuth tables, steer the budget)."""

from __future__ import annotations

import itertools

import psycopg
from psycopg import sql

from parel_monitoring.db import Database, DatabaseSettings
from parel_monitoring.heal.budget import Budget


def connect(url: str) -> psycopg.Connection:
    """A test's own autocommit connection (to arrange and inspect data)."""
    return psycopg.connect(url, autocommit=True)


def rows(conn: psycopg.Connection, table: str, *columns: str) -> set:
    """The values of ``columns`` (tuples when several) in every row of ``table``."""
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table))
    return {row if len(columns) > 1 else row[0] for row in conn.execute(query)}


def database_for(url: str) -> Database:
    """The routines' :class:`Database` on ``url``, as the heal function configures it."""
    return Database(DatabaseSettings(url, 3, 5000, True, "parel-heal-test"))


def budget_for_batches(batches: int) -> Budget:
    """A budget that is exhausted after ``batches`` checks (one check precedes every batch)."""
    budget = Budget()
    budget.exhausted = itertools.chain(itertools.repeat(False, batches), itertools.repeat(True)).__next__
    return budget
