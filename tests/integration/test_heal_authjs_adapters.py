"""The heal with no settings on databases seeded through the real Auth.js adapters (npm), verified through them.

Each adapter creates its documented schema and its rows (tests/authjs/seed.mjs); some sessions and tokens are
expired through the adapter's API, two users are deleted with raw SQL (one plainly, one bypassing foreign keys).
The heal runs with only the connection settings, then the adapter itself must resolve every live session,
token and account and none of the expired or orphaned ones. Node runs in America/Los_Angeles, the database
in Pacific/Auckland.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from authjs_scenario import create_schema, seed, verify
from bullmq_scenario import REDIS_URL
from heal_support import connect
from nextauth_schema import create_drizzle_schema, create_kysely_schema, create_pg_adapter_schema, create_prisma_schema
from parel_monitoring.bullmq import get_redis
from parel_monitoring.db import Database
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.options import HealOptions
from parel_monitoring.heal.run import HealSettings, run_all

DATABASE_TIME_ZONE = "Pacific/Auckland"
ADAPTERS = {  # adapter -> the layout the heal must detect
    "pg": "pg-adapter",
    "kysely": "prisma",
    "drizzle": "drizzle",
    "prisma": "prisma",  # tests/authjs/prisma/adapter.mjs: @auth/prisma-adapter with Prisma 7
}
HEAL_SETTINGS = (
    "SESSION_SCHEMA", "SESSION_TABLE", "SESSION_EXPIRES_COLUMN", "SESSION_BATCH_SIZE", "AUTH_TABLES_SCHEMA",
    "VERIFICATION_TOKEN_TABLE", "VERIFICATION_TOKEN_EXPIRES_COLUMN", "ORPHAN_RULES", "ORPHAN_BATCH_SIZE",
)  # fmt: skip


def heal_without_settings(monkeypatch, database_url: str, prefix: str) -> dict:
    """runAllHealingRoutines' sessions and orphans with nothing but where the services are."""
    for name in HEAL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "QUEUE_NAMES": "unused",
                        "BULLMQ_PREFIX": prefix}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    settings = HealSettings.from_env()
    database = Database(settings.database)
    try:
        options = HealOptions(routines=("sessions", "orphans"))
        return run_all(settings, database, get_redis(settings.redis), options, Budget())
    finally:
        database.close()


def expected_counts(seeded: dict) -> tuple[int, int, int]:
    """(expired sessions, expired tokens, orphans) among the rows the tables hold after seeding."""
    plan, present = seeded["plan"], seeded["present"]

    def still_there(kind: str, rows: list[dict], key: str, expect: str) -> int:
        return sum(1 for row in rows if row["expect"] == expect and row[key] in set(present.get(kind, [])))

    orphans = sum(
        still_there(kind, plan[rows], key, "orphan")
        for kind, rows, key in (
            ("session", "sessions", "sessionToken"),
            ("account", "accounts", "providerAccountId"),
            ("authenticator", "authenticators", "credentialID"),
        )
    )
    return (
        still_there("session", plan["sessions"], "sessionToken", "expired"),
        still_there("token", plan["tokens"], "token", "expired"),
        orphans,
    )


@pytest.mark.parametrize("schema", [None, "auth"], ids=["public", "auth-schema"])
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_heal_with_no_settings_leaves_exactly_what_the_adapter_still_resolves(
    database_url, monkeypatch, prefix, adapter, schema
):
    with connect(database_url) as conn:
        database = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO {}").format(database, sql.Literal(DATABASE_TIME_ZONE)))
        if schema is not None:  # the app's tables in their own schema, which the database's search path names
            conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO {}, public").format(
                database, sql.Identifier(schema)))  # fmt: skip
    seeded = seed(adapter, database_url, schema)
    expired_sessions, expired_tokens, orphans = expected_counts(seeded)
    assert expired_sessions >= 6 and expired_tokens == 2 and orphans >= 3, seeded["present"]

    result = heal_without_settings(monkeypatch, database_url, prefix)

    sessions, orphan_routine = result["routines"]["sessions"], result["routines"]["orphans"]
    assert result["status"] == "ok", result
    assert sessions["layout"] == orphan_routine["layout"] == ADAPTERS[adapter]
    assert sessions["table"].startswith(f"{schema or 'public'}.")
    assert (result["staleSessions"], sessions["verificationTokens"], result["orphanedRecords"]) == (
        expired_sessions, expired_tokens, orphans
    )  # fmt: skip
    verified = verify(adapter, database_url, seeded["plan"], schema)
    assert verified["failures"] == [] and verified["checked"] > 30, verified

    again = heal_without_settings(monkeypatch, database_url, prefix)
    assert (again["status"], again["staleSessions"], again["orphanedRecords"]) == ("ok", 0, 0)


def test_the_database_and_node_disagree_about_the_time_zone(database_url):
    """The premise of the matrix: a wrong-zone reading of any seeded expiry lands on the wrong side of now."""
    with connect(database_url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO {}").format(
            sql.Identifier(conn.info.dbname), sql.Literal(DATABASE_TIME_ZONE)))  # fmt: skip
    with psycopg.connect(database_url) as conn:
        offset = conn.execute("SELECT extract(timezone FROM now())").fetchone()[0]
    assert offset >= 12 * 3600  # Auckland: UTC+12 or +13; Node's Los Angeles: UTC-8 or -7


FIXTURES = {
    "pg": create_pg_adapter_schema,
    "kysely": create_kysely_schema,
    "drizzle": create_drizzle_schema,
    "prisma": create_prisma_schema,
}
CATALOG = """
SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind = 'r'
UNION ALL
SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid), NULL, NULL
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT tablename::text, indexname::text, indexdef, NULL, NULL FROM pg_indexes WHERE schemaname = 'public'
"""


def catalog(url: str) -> set[tuple]:
    with connect(url) as conn:
        return set(conn.execute(CATALOG).fetchall())


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_python_fixtures_are_the_adapters_documented_schemas(database_url, pg_admin_url, adapter):
    """tools/nextauth_schema.py, which the other heal tests use, creates what each adapter's tooling creates."""
    create_schema(adapter, database_url)
    name = f"{database_url.rsplit('/', 1)[1]}_fixture"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    fixture_url = database_url.rsplit("/", 1)[0] + "/" + name
    try:
        with connect(fixture_url) as conn:
            FIXTURES[adapter](conn)
        created = catalog(database_url)
        assert len(created) > 20 and catalog(fixture_url) == created
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
