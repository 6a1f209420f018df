"""heal_stale_sessions against real PostgreSQL with the NextAuth schemas (tests/integration/nextauth_schema.py)."""

import dataclasses
import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from heal_support import budget_for_batches, connect, database_for, rows
from nextauth_schema import create_pg_adapter_schema, create_prisma_schema
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.sessions import (
    SessionSettings,
    explain_session_batch,
    heal_stale_sessions,
)
from parel_monitoring.heal.tables import EXPIRES_INDEX, PRIMARY_KEY, Relation
from parel_monitoring.settings import ConfigurationError

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "001_session_expires_index.sql"
PRISMA = SessionSettings(Relation("public", "Session"), "expires", Relation("public", "VerificationToken"), 5000)
PG_ADAPTER = SessionSettings(Relation("public", "sessions"), "expires", Relation("public", "verification_token"), 5000)
BATCHES_OF_100 = dataclasses.replace(PRISMA, batch_size=100)
STRATEGIES = [PRIMARY_KEY, EXPIRES_INDEX]


@pytest.fixture(autouse=True)
def no_session_settings(monkeypatch):
    for variable in ("SESSION_SCHEMA", "SESSION_TABLE", "SESSION_EXPIRES_COLUMN", "SESSION_BATCH_SIZE"):
        monkeypatch.delenv(variable, raising=False)


def utc_now() -> datetime:
    """Now as Prisma writes a DateTime into TIMESTAMP(3): the UTC wall clock, without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def add_sessions(conn: psycopg.Connection, expiries: dict[str, datetime], user: str = "user-1") -> None:
    conn.cursor().executemany(
        'INSERT INTO "Session" (id, "sessionToken", "userId", expires) VALUES (%s, %s, %s, %s)',
        [(sid, f"token-{sid}", user, expires) for sid, expires in expiries.items()],
    )


def add_generated_sessions(conn: psycopg.Connection, expired: int, live: int) -> None:
    """``expired + live`` sessions, interleaved in id order and on disk: ids ``…-expired`` and ``…-live``."""
    conn.execute(
        """
        INSERT INTO "Session" (id, "sessionToken", "userId", expires)
        SELECT md5(i::text) || CASE WHEN i <= %(expired)s THEN '-expired' ELSE '-live' END, md5('token' || i), 'user-1',
               (now() AT TIME ZONE 'UTC')
               + CASE WHEN i <= %(expired)s THEN -interval '1 hour' ELSE interval '1 hour' END
               + (i %% 1000) * interval '1 second'
        FROM generate_series(1, %(total)s) AS i ORDER BY md5(i::text)
        """,
        {"expired": expired, "total": expired + live},
    )


def ids(conn: psycopg.Connection, table: str = "Session", column: str = "id") -> set:
    return rows(conn, table, column)


def use_strategy(url: str, strategy: str, schema: str = "prisma") -> None:
    if strategy == EXPIRES_INDEX:
        add_expires_index(url, schema)


def add_expires_index(url: str, schema: str = "prisma") -> None:
    """Migration 001 as shipped, or with its @auth/pg-adapter statement uncommented instead."""
    text = MIGRATION.read_text()
    if schema == "pg-adapter":
        text = next(line.removeprefix("-- ") for line in text.splitlines() if line.startswith("-- CREATE INDEX"))
    with connect(url) as conn:
        conn.execute(text)


@pytest.fixture
def prisma_url(database_url):
    """The Prisma adapter's schema as `prisma migrate` creates it, with one user."""
    with connect(database_url) as conn:
        create_prisma_schema(conn)
        conn.execute("""INSERT INTO "User" (id, email) VALUES ('user-1', 'ada@example.com')""")
    return database_url


def test_exactly_the_expired_sessions_and_tokens_go(prisma_url):
    now = utc_now()
    expiries = {
        "expired-month": now - timedelta(days=30),
        "expired-hour": now - timedelta(hours=1),
        "expired-second": now - timedelta(seconds=1),
        "live-next-second": now + timedelta(seconds=1),
        "live-hour": now + timedelta(hours=1),
        "live-month": now + timedelta(days=30),
    }
    tokens = {"used-never": now - timedelta(minutes=5), "fresh": now + timedelta(hours=24)}
    with connect(prisma_url) as conn:
        add_sessions(conn, expiries)
        conn.cursor().executemany(
            'INSERT INTO "VerificationToken" (identifier, token, expires) VALUES (%s, %s, %s)',
            [("ada@example.com", token, expires) for token, expires in tokens.items()],
        )
    result = heal_stale_sessions(database_for(prisma_url), PRISMA, Budget())
    assert result["count"] == 3 and result["verificationTokens"] == 1 and result["partial"] is False
    assert result["strategy"] == PRIMARY_KEY and result["table"] == "public.Session"
    assert result["verificationTable"] == "public.VerificationToken"
    with connect(prisma_url) as conn:
        assert ids(conn) == {"live-next-second", "live-hour", "live-month"}
        assert ids(conn, "VerificationToken", "token") == {"fresh"}
        assert ids(conn, "User") == {"user-1"}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
@pytest.mark.parametrize("schema", ["prisma", "pg-adapter"])
def test_the_cutoff_is_utc_whatever_the_session_time_zone(database_url, zone, schema, strategy):
    """TIMESTAMP(3) holds UTC: read as local time in New York it would keep expired sessions, in Tokyo it
    would delete live ones. Offsets inside the zone's distance from UTC tell the two apart. Batches of 2
    carry the walk's position from one batch to the next in the zone."""
    offsets = {"expired-2min": -120, "expired-3h": -3 * 3600, "live-2min": 120, "live-3h": 3 * 3600}
    with connect(database_url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO {}").format(
            sql.Identifier(conn.info.dbname), sql.Literal(zone)))  # fmt: skip
    with connect(database_url) as conn:
        if schema == "prisma":
            create_prisma_schema(conn, foreign_keys=False)
            add_sessions(conn, {sid: utc_now() + timedelta(seconds=offset) for sid, offset in offsets.items()})
        else:
            create_pg_adapter_schema(conn)
            conn.cursor().executemany(
                """INSERT INTO sessions ("userId", expires, "sessionToken") VALUES (1, %s, %s)""",
                [(datetime.now(UTC) + timedelta(seconds=offset), sid) for sid, offset in offsets.items()],
            )
    use_strategy(database_url, strategy, schema)
    database = database_for(database_url)
    assert database.run(lambda conn: conn.execute("SHOW TimeZone").fetchone()[0]) == zone
    settings = dataclasses.replace(PRISMA if schema == "prisma" else PG_ADAPTER, batch_size=2)
    result = heal_stale_sessions(database, settings, Budget())
    assert result["count"] == 2 and result["strategy"] == strategy
    with connect(database_url) as conn:
        table, column = ("Session", "id") if schema == "prisma" else ("sessions", "sessionToken")
        assert ids(conn, table, column) == {"live-2min", "live-3h"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batches_of_100_delete_1000_expired_sessions(prisma_url, strategy):
    with connect(prisma_url) as conn:
        add_generated_sessions(conn, expired=1000, live=500)
        live = {sid for sid in ids(conn) if sid.endswith("-live")}
    use_strategy(prisma_url, strategy)
    durations: list[float] = []
    result = heal_stale_sessions(database_for(prisma_url), BATCHES_OF_100, Budget(), on_batch=durations.append)
    assert result["strategy"] == strategy and result["count"] == 1000 and result["partial"] is False
    # expires-index: 10 batches of 99 (up to the 100th expiry), then the last 10; primary-key: 15 chunks of 100
    # rows, then an empty one
    session_batches = 11 if strategy == EXPIRES_INDEX else 16
    assert result["batches"] == session_batches + 1  # + the (empty) verification tokens
    assert len(durations) == result["batches"] and all(0 < seconds < 5 for seconds in durations)
    with connect(prisma_url) as conn:
        assert ids(conn) == live


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_tiny_budget_is_partial_and_a_later_run_finishes(prisma_url, strategy):
    with connect(prisma_url) as conn:
        add_generated_sessions(conn, expired=1000, live=500)
        live = {sid for sid in ids(conn) if sid.endswith("-live")}
    use_strategy(prisma_url, strategy)
    database = database_for(prisma_url)
    first = heal_stale_sessions(database, BATCHES_OF_100, budget_for_batches(3))
    assert first["partial"] is True and first["batches"] == 3
    assert 0 < first["count"] < 300
    second = heal_stale_sessions(database, BATCHES_OF_100, Budget())
    assert second["partial"] is False and first["count"] + second["count"] == 1000
    with connect(prisma_url) as conn:
        assert ids(conn) == live


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_dry_run_counts_and_changes_nothing(prisma_url, strategy):
    with connect(prisma_url) as conn:
        add_generated_sessions(conn, expired=700, live=300)
        conn.execute("""INSERT INTO "VerificationToken" VALUES ('a@example.com', 't', now() - interval '1 day')""")
        before = ids(conn)
    use_strategy(prisma_url, strategy)
    result = heal_stale_sessions(database_for(prisma_url), BATCHES_OF_100, Budget(), dry_run=True)
    assert result["count"] == 700 and result["verificationTokens"] == 1 and result["strategy"] == strategy
    with connect(prisma_url) as conn:
        assert ids(conn) == before and ids(conn, "VerificationToken", "token") == {"t"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_batch_never_seq_scans_a_big_table(prisma_url, strategy):
    with connect(prisma_url) as conn:
        add_generated_sessions(conn, expired=25_000, live=25_000)
        conn.execute('ANALYZE "Session"')
    use_strategy(prisma_url, strategy)
    reported, plan = explain_session_batch(database_for(prisma_url), PRISMA)
    assert reported == strategy
    assert "Seq Scan" not in plan, plan
    index = "Session_expires_idx" if strategy == EXPIRES_INDEX else "Session_pkey"
    # the delete itself: an index range scan, or a bitmap scan of the same range
    assert f'Index Scan using "{index}" on "Session" target' in plan or f'Bitmap Index Scan on "{index}"' in plan, plan


def test_more_sessions_sharing_one_expiry_than_a_batch(prisma_url):
    """The expires-index walk deletes a run of equal expiries larger than a batch a batch at a time."""
    tied = utc_now() - timedelta(hours=1)
    expiries = {f"tied-{n}": tied for n in range(250)}
    expiries |= {f"before-{n}": tied - timedelta(minutes=n + 1) for n in range(30)}
    expiries |= {f"after-{n}": tied + timedelta(seconds=n + 1) for n in range(30)}
    with connect(prisma_url) as conn:
        add_sessions(conn, expiries | {"live": utc_now() + timedelta(hours=1)})
    add_expires_index(prisma_url)
    result = heal_stale_sessions(database_for(prisma_url), BATCHES_OF_100, Budget())
    # the 30 before; 100 tied; 100 tied; the last 50 tied and the 30 after; then the verification tokens
    assert (result["strategy"], result["count"], result["batches"]) == (EXPIRES_INDEX, 310, 5)
    with connect(prisma_url) as conn:
        assert ids(conn) == {"live"}


def test_the_migration_is_idempotent_and_an_invalid_index_is_ignored(prisma_url):
    add_expires_index(prisma_url)
    add_expires_index(prisma_url)  # IF NOT EXISTS
    database = database_for(prisma_url)
    assert explain_session_batch(database, PRISMA)[0] == EXPIRES_INDEX
    with connect(prisma_url) as conn:  # what a failed CREATE INDEX CONCURRENTLY leaves behind
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = '\"Session_expires_idx\"'::regclass")
    assert explain_session_batch(database, PRISMA)[0] == PRIMARY_KEY


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_session_extended_while_the_batch_waits_for_its_row_lock_stays(prisma_url, strategy):
    """NextAuth extends ``expires`` on use: the delete re-checks the expiry of a row updated meanwhile."""
    with connect(prisma_url) as conn:
        add_sessions(conn, {"busy": utc_now() - timedelta(minutes=1), "idle": utc_now() - timedelta(minutes=1)})
    use_strategy(prisma_url, strategy)
    results: list[dict] = []
    with psycopg.connect(prisma_url) as app:  # an app transaction holding the row lock
        app.execute("""UPDATE "Session" SET expires = expires + interval '1 minute' WHERE id = 'busy'""")
        heal = threading.Thread(target=lambda: results.append(
            heal_stale_sessions(database_for(prisma_url), PRISMA, Budget())))  # fmt: skip
        heal.start()
        with connect(prisma_url) as observer:
            deadline = time.monotonic() + 4
            while not observer.execute(
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'parel-heal-test'"
                " AND wait_event_type = 'Lock')"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "the heal batch never waited for the row lock"
                time.sleep(0.02)
        app.execute(
            """UPDATE "Session" SET expires = now() AT TIME ZONE 'UTC' + interval '30 days' WHERE id = 'busy'"""
        )
        app.commit()
        heal.join(10)
    assert results and results[0]["count"] == 1
    with connect(prisma_url) as conn:
        assert ids(conn) == {"busy"}


def test_pg_adapter_preset_from_the_environment(database_url, monkeypatch):
    monkeypatch.setenv("SESSION_SCHEMA", "pg-adapter")
    assert SessionSettings.from_env() == PG_ADAPTER
    monkeypatch.setenv("SESSION_BATCH_SIZE", "2")  # walks verification_token's (identifier, token) key in chunks
    settings = SessionSettings.from_env()
    now = datetime.now(UTC)
    with connect(database_url) as conn:
        create_pg_adapter_schema(conn)
        conn.cursor().executemany(
            """INSERT INTO sessions ("userId", expires, "sessionToken") VALUES (1, %s, %s)""",
            [(now + timedelta(minutes=minutes), f"token-{minutes}") for minutes in (-90, -1, 1, 90)],
        )
        conn.cursor().executemany(
            "INSERT INTO verification_token (identifier, expires, token) VALUES (%s, %s, %s)",
            [
                (f"{who}@example.com", now + timedelta(hours=hours), f"{who}-{'valid' if hours > 0 else 'stale'}-{n}")
                for n, (who, hours) in enumerate(itertools.product("abc", (-1, 1, -24)))
            ],
        )
        kept = {
            sid
            for sid, token in conn.execute('SELECT id, "sessionToken" FROM sessions')
            if token in {"token-1", "token-90"}
        }
    result = heal_stale_sessions(database_for(database_url), settings, Budget())
    assert (result["count"], result["verificationTokens"], result["table"]) == (2, 6, "public.sessions")
    with connect(database_url) as conn:
        assert ids(conn, "sessions") == kept
        assert ids(conn, "verification_token", "token") == {"a-valid-1", "b-valid-4", "c-valid-7"}


def test_custom_table_and_column_from_the_environment(database_url, monkeypatch):
    monkeypatch.setenv("SESSION_TABLE", "auth.LoginSession")
    monkeypatch.setenv("SESSION_EXPIRES_COLUMN", "validUntil")
    monkeypatch.setenv("SESSION_BATCH_SIZE", "2")
    settings = SessionSettings.from_env()
    with connect(database_url) as conn:
        conn.execute(
            """CREATE SCHEMA auth;
            CREATE TABLE auth."LoginSession" (sid bigint PRIMARY KEY, "validUntil" timestamptz NOT NULL, expires int);
            INSERT INTO auth."LoginSession" SELECT i, now() + (i - 5) * interval '1 hour' + interval '30 minutes', -1
            FROM generate_series(1, 9) AS i"""
        )
    result = heal_stale_sessions(database_for(database_url), settings, Budget())
    assert result["count"] == 4 and result["table"] == "auth.LoginSession"
    assert result["verificationTable"] is None and result["verificationTokens"] == 0  # no such table here
    with connect(database_url) as conn:
        assert {sid for (sid,) in conn.execute('SELECT sid FROM auth."LoginSession"')} == {5, 6, 7, 8, 9}


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (dataclasses.replace(PRISMA, table=Relation("public", "Sessions")), "SESSION_TABLE"),
        (dataclasses.replace(PRISMA, expires_column="expiresAt"), "SESSION_EXPIRES_COLUMN"),
        (dataclasses.replace(PRISMA, expires_column="userId"), "SESSION_EXPIRES_COLUMN"),
    ],
)
def test_a_table_or_column_the_database_lacks_is_a_configuration_error(prisma_url, settings, variable):
    with connect(prisma_url) as conn:
        add_sessions(conn, {"expired": utc_now() - timedelta(days=1)})
    with pytest.raises(ConfigurationError) as info:
        heal_stale_sessions(database_for(prisma_url), settings, Budget())
    assert info.value.variable == variable
    with connect(prisma_url) as conn:
        assert ids(conn) == {"expired"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_SCHEMA", "drizzle"),
        ("SESSION_TABLE", "a.b.c"),
        ("SESSION_TABLE", "auth."),
        ("SESSION_BATCH_SIZE", "-5"),
    ],
)
def test_malformed_settings_name_their_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        SessionSettings.from_env()
    assert info.value.variable == variable and value not in str(info.value)
