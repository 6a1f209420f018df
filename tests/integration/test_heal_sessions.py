"""heal_stale_sessions against real PostgreSQL with the Auth.js adapters' schemas (tools/nextauth_schema.py)."""

import dataclasses
import itertools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from heal_support import budget_for_batches, connect, database_for, rows
from nextauth_schema import (
    create_drizzle_schema,
    create_kysely_schema,
    create_pg_adapter_schema,
    create_prisma_schema,
)
from parel_monitoring.heal.authjs import AuthTablesSettings
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.sessions import (
    SessionSettings,
    explain_session_batch,
    heal_stale_sessions,
)
from parel_monitoring.heal.tables import EXPIRES_INDEX, PRIMARY_KEY, TID_RANGE, UNIQUE_KEY, Relation
from parel_monitoring.settings import ConfigurationError
from polling import wait_until

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "001_session_expires_index.sql"
PRISMA = SessionSettings(AuthTablesSettings("prisma"))
PG_ADAPTER = SessionSettings(AuthTablesSettings("pg-adapter"))
AUTO = SessionSettings(AuthTablesSettings("auto"))
BATCHES_OF_100 = dataclasses.replace(PRISMA, batch_size=100)
# Without the expires index, PostgreSQL 14+ walks the table in physical order (the tests' server is 15); planned
# as for PostgreSQL 13 (server_version), the Prisma adapter's "Session" is walked along its unique "sessionToken"
PG13 = 130000
STRATEGIES = [TID_RANGE, EXPIRES_INDEX, UNIQUE_KEY]
SERVER = {UNIQUE_KEY: PG13}  # strategy -> the server_version_num to plan for (None: the server's)
SESSION_VARIABLES = (
    "SESSION_SCHEMA", "SESSION_TABLE", "SESSION_EXPIRES_COLUMN", "SESSION_BATCH_SIZE", "AUTH_TABLES_SCHEMA",
    "VERIFICATION_TOKEN_TABLE", "VERIFICATION_TOKEN_EXPIRES_COLUMN",
)  # fmt: skip


@pytest.fixture(autouse=True)
def no_session_settings(monkeypatch):
    for variable in SESSION_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def utc_now() -> datetime:
    """Now as Prisma writes a DateTime into TIMESTAMP(3): the UTC wall clock, without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def add_sessions(conn: psycopg.Connection, expiries: dict[str, datetime], user: str = "user-1") -> None:
    conn.cursor().executemany(
        'INSERT INTO "Session" ("sessionToken", "userId", expires, "updatedAt") VALUES (%s, %s, %s, now())',
        [(token, user, expires) for token, expires in expiries.items()],
    )


def add_generated_sessions(conn: psycopg.Connection, expired: int, live: int) -> None:
    """``expired + live`` sessions, interleaved in token order and on disk: tokens ``…-expired`` and ``…-live``."""
    conn.execute(
        """
        INSERT INTO "Session" ("sessionToken", "userId", expires, "updatedAt")
        SELECT md5(i::text) || CASE WHEN i <= %(expired)s THEN '-expired' ELSE '-live' END, 'user-1',
               (now() AT TIME ZONE 'UTC')
               + CASE WHEN i <= %(expired)s THEN -interval '1 hour' ELSE interval '1 hour' END
               + (i %% 1000) * interval '1 second', now()
        FROM generate_series(1, %(total)s) AS i ORDER BY md5(i::text)
        """,
        {"expired": expired, "total": expired + live},
    )


def ids(conn: psycopg.Connection, table: str = "Session", column: str = "sessionToken") -> set:
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
        conn.execute("""INSERT INTO "User" (id, email, "updatedAt") VALUES ('user-1', 'ada@example.com', now())""")
    return database_url


def test_exactly_the_expired_sessions_and_tokens_go(prisma_url):
    """The cutoff is the database's now() at the start of the run: a session expired a second before the test
    began goes, one that expires a minute after it stays (a loaded machine takes seconds, not a minute, to get
    to the run), and the reported cutoff lies between the test's start and the run's end."""
    now = utc_now()
    expiries = {
        "expired-month": now - timedelta(days=30),
        "expired-hour": now - timedelta(hours=1),
        "expired-second": now - timedelta(seconds=1),
        "live-next-minute": now + timedelta(minutes=1),
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
    finished = utc_now()
    cutoff = datetime.fromisoformat(result["cutoff"]).astimezone(UTC).replace(tzinfo=None)
    assert now <= cutoff <= finished < now + timedelta(minutes=1), (now, result["cutoff"], finished)
    assert result["count"] == 3 and result["verificationTokens"] == 1 and result["partial"] is False
    assert (result["layout"], result["table"], result["strategy"], result["key"]) == (
        "prisma", "public.Session", TID_RANGE, ["ctid"]
    )  # fmt: skip
    assert result["verificationTable"] == "public.VerificationToken" and result["skipped"] == []
    assert (result["verificationStrategy"], result["verificationKey"]) == (TID_RANGE, ["ctid"])
    assert result["position"] == {"pages": 1, "startedAt": 0, "stoppedAt": None, "note": None, "kept": None}
    with connect(prisma_url) as conn:
        assert ids(conn) == {"live-next-minute", "live-hour", "live-month"}
        assert ids(conn, "VerificationToken", "token") == {"fresh"}
        assert ids(conn, "User", "id") == {"user-1"}


@pytest.mark.parametrize("indexed", [False, True], ids=["tid-range", "expires-index"])
@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
@pytest.mark.parametrize("schema", ["prisma", "pg-adapter"])
def test_the_cutoff_is_utc_whatever_the_session_time_zone(database_url, zone, schema, indexed):
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
    if indexed:
        add_expires_index(database_url, schema)
    strategy = EXPIRES_INDEX if indexed else TID_RANGE
    database = database_for(database_url)
    assert database.run(lambda conn: conn.execute("SHOW TimeZone").fetchone()[0]) == zone
    settings = dataclasses.replace(AUTO, batch_size=2)
    result = heal_stale_sessions(database, settings, Budget())
    assert result["count"] == 2 and result["strategy"] == strategy
    with connect(database_url) as conn:
        assert ids(conn, "Session" if schema == "prisma" else "sessions") == {"live-2min", "live-3h"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_batches_of_100_delete_1000_expired_sessions(prisma_url, strategy):
    with connect(prisma_url) as conn:
        add_generated_sessions(conn, expired=1000, live=500)
        live = {sid for sid in ids(conn) if sid.endswith("-live")}
    use_strategy(prisma_url, strategy)
    durations: list[float] = []
    result = heal_stale_sessions(
        database_for(prisma_url),
        BATCHES_OF_100,
        Budget(),
        on_batch=durations.append,
        server_version=SERVER.get(strategy),
    )
    assert result["strategy"] == strategy and result["count"] == 1000 and result["partial"] is False
    if strategy == EXPIRES_INDEX:  # 10 batches of 99 (up to the 100th expiry), then the last 10
        assert result["batches"] == 11 + 1  # + the (empty) verification tokens
    elif strategy == UNIQUE_KEY:  # 15 chunks of 100 rows, then an empty one; the tokens' primary key
        assert result["batches"] == 16 + 1
    else:  # slices of pages sized to about 100 expired rows each (at most twice the last slice's pages)
        assert result["batches"] >= 1000 // 200 + 1
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
    version = SERVER.get(strategy)
    first = heal_stale_sessions(database, BATCHES_OF_100, budget_for_batches(3), server_version=version)
    assert first["partial"] is True and first["batches"] == 3
    assert 0 < first["count"] < (1000 if strategy == TID_RANGE else 300)
    second = heal_stale_sessions(database, BATCHES_OF_100, Budget(), server_version=version)
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
    result = heal_stale_sessions(
        database_for(prisma_url), BATCHES_OF_100, Budget(), dry_run=True, server_version=SERVER.get(strategy)
    )
    assert result["count"] == 700 and result["verificationTokens"] == 1 and result["strategy"] == strategy
    with connect(prisma_url) as conn:
        assert ids(conn) == before and ids(conn, "VerificationToken", "token") == {"t"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_batch_never_seq_scans_a_big_table(prisma_url, strategy):
    with connect(prisma_url) as conn:
        add_generated_sessions(conn, expired=25_000, live=25_000)
        conn.execute('ANALYZE "Session"')
    use_strategy(prisma_url, strategy)
    reported, plan = explain_session_batch(database_for(prisma_url), PRISMA, SERVER.get(strategy))
    assert reported == strategy
    assert "Seq Scan" not in plan, plan
    if strategy == TID_RANGE:  # a slice of pages, no index
        assert 'Tid Range Scan on "Session" target' in plan and "TID Cond: ((ctid >= '(0,0)'::tid)" in plan, plan
        return
    index = "Session_expires_idx" if strategy == EXPIRES_INDEX else "Session_sessionToken_key"
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
    assert explain_session_batch(database, PRISMA)[0] == TID_RANGE


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_session_extended_while_the_batch_waits_for_its_row_lock_stays(prisma_url, strategy):
    """NextAuth extends ``expires`` on use: the delete re-checks the expiry of a row updated meanwhile."""
    with connect(prisma_url) as conn:
        add_sessions(conn, {"busy": utc_now() - timedelta(minutes=1), "idle": utc_now() - timedelta(minutes=1)})
    use_strategy(prisma_url, strategy)
    results: list[dict] = []
    with psycopg.connect(prisma_url) as app:  # an app transaction holding the row lock
        app.execute("""UPDATE "Session" SET expires = expires + interval '1 minute' WHERE "sessionToken" = 'busy'""")
        heal = threading.Thread(target=lambda: results.append(heal_stale_sessions(
            database_for(prisma_url), PRISMA, Budget(), server_version=SERVER.get(strategy))))  # fmt: skip
        heal.start()
        with connect(prisma_url) as observer:
            waiting = (
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'parel-heal-test'"
                " AND wait_event_type = 'Lock')"
            )
            wait_until(lambda: observer.execute(waiting).fetchone()[0], "the heal batch to wait for the row lock")
        app.execute(
            """UPDATE "Session" SET expires = now() AT TIME ZONE 'UTC' + interval '30 days'
               WHERE "sessionToken" = 'busy'"""
        )
        app.commit()
        heal.join(60)
    assert not heal.is_alive() and results and results[0]["count"] == 1
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
        assert ids(conn, "sessions", "id") == kept
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
    assert result["layout"] is None and result["skipped"] == [
        "no Auth.js layout detected: set VERIFICATION_TOKEN_TABLE"
    ]  # fmt: skip
    with connect(database_url) as conn:
        assert {sid for (sid,) in conn.execute('SELECT sid FROM auth."LoginSession"')} == {5, 6, 7, 8, 9}


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (SessionSettings(AuthTablesSettings("prisma", session_table=Relation(None, "Sessions"))), "SESSION_TABLE"),
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
        ("SESSION_SCHEMA", "typeorm"),
        ("SESSION_TABLE", "a.b.c"),
        ("SESSION_TABLE", "auth."),
        ("VERIFICATION_TOKEN_TABLE", ".tokens"),
        ("AUTH_TABLES_SCHEMA", "auth.public"),
        ("SESSION_BATCH_SIZE", "-5"),
    ],
)
def test_malformed_settings_name_their_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        SessionSettings.from_env()
    assert info.value.variable == variable and value not in str(info.value)


# --------------------------------------------------------------------------- SESSION_SCHEMA=auto

LAYOUTS = {
    # fixture -> (layout, session table, its walk and key, verification table, its walk and key), the key
    # walks (PostgreSQL before 14); from 14 on both tables are walked by tid-range
    "prisma": ("prisma", "Session", UNIQUE_KEY, ["sessionToken"], "VerificationToken", PRIMARY_KEY,
               ["identifier", "token"]),
    "kysely": ("prisma", "Session", PRIMARY_KEY, ["id"], "VerificationToken", UNIQUE_KEY, ["token"]),
    "pg-adapter": ("pg-adapter", "sessions", PRIMARY_KEY, ["id"], "verification_token", PRIMARY_KEY,
                   ["identifier", "token"]),
    "drizzle": ("drizzle", "session", PRIMARY_KEY, ["sessionToken"], "verificationToken", PRIMARY_KEY,
                ["identifier", "token"]),
}  # fmt: skip
CREATE = {
    "prisma": create_prisma_schema,
    "kysely": create_kysely_schema,
    "pg-adapter": create_pg_adapter_schema,
    "drizzle": create_drizzle_schema,
}
USERS = {  # a user row of each fixture, and its id
    "prisma": ("""INSERT INTO "User" (id, email, "updatedAt") VALUES ('u1', 'a@example.com', now())""", "u1"),
    "kysely": ("""INSERT INTO "User" (id, email) VALUES ('6d1f8e52-0000-4000-8000-000000000001', 'a@example.com')""",
               "6d1f8e52-0000-4000-8000-000000000001"),
    "pg-adapter": ("INSERT INTO users (id, email) VALUES (1, 'a@example.com')", 1),
    "drizzle": ("""INSERT INTO "user" (id, email) VALUES ('u1', 'a@example.com')""", "u1"),
}  # fmt: skip


def seed_expiring(conn: psycopg.Connection, fixture: str, schema: str = "public") -> None:
    """Two expired and one live session and verification token, written in UTC (what every adapter does)."""
    _, session, _, _, tokens, _, _ = LAYOUTS[fixture]
    insert_user, user = USERS[fixture]
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    conn.execute(insert_user)
    now = utc_now() if fixture in {"prisma", "drizzle"} else datetime.now(UTC)
    extra = ', "updatedAt"' if fixture == "prisma" else ""
    for name, offset in (("expired-day", -86400), ("expired-minute", -60), ("live", 3600)):
        conn.execute(
            sql.SQL('INSERT INTO {} ("sessionToken", "userId", expires{}) VALUES (%s, %s, %s{})').format(
                sql.Identifier(session), sql.SQL(extra), sql.SQL(", now()" if extra else "")
            ),
            (name, user, now + timedelta(seconds=offset)),
        )
        conn.execute(
            sql.SQL("INSERT INTO {} (identifier, token, expires) VALUES ('a@example.com', %s, %s)").format(
                sql.Identifier(tokens)
            ),
            (name, now + timedelta(seconds=offset)),
        )
    conn.execute("RESET search_path")


@pytest.mark.parametrize("server", [None, PG13], ids=["this-server", "before-14"])
@pytest.mark.parametrize("fixture", LAYOUTS)
def test_auto_finds_each_adapters_default_layout(database_url, fixture, server):
    layout, session, strategy, key, tokens, token_strategy, token_key = LAYOUTS[fixture]
    if server is None:
        strategy, key, token_strategy, token_key = TID_RANGE, ["ctid"], TID_RANGE, ["ctid"]
    with connect(database_url) as conn:
        CREATE[fixture](conn)
        seed_expiring(conn, fixture)
    result = heal_stale_sessions(database_for(database_url), AUTO, Budget(), server_version=server)
    assert (result["count"], result["verificationTokens"], result["skipped"]) == (2, 2, [])
    assert (result["layout"], result["table"], result["strategy"], result["key"]) == (
        layout, f"public.{session}", strategy, key
    )  # fmt: skip
    assert (result["verificationTable"], result["verificationStrategy"], result["verificationKey"]) == (
        f"public.{tokens}", token_strategy, token_key
    )  # fmt: skip
    with connect(database_url) as conn:
        assert ids(conn, session) == {"live"} and ids(conn, tokens, "token") == {"live"}


def test_auto_looks_along_the_search_path(database_url):
    """Tables in a schema the database's search_path names (Prisma's ?schema=auth migrates them there)."""
    with connect(database_url) as conn:
        create_drizzle_schema(conn, schema="auth")
        seed_expiring(conn, "drizzle", schema="auth")
        conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO auth, public").format(
            sql.Identifier(conn.info.dbname)))  # fmt: skip
    result = heal_stale_sessions(database_for(database_url), AUTO, Budget())
    assert (result["layout"], result["table"], result["verificationTable"]) == (
        "drizzle", "auth.session", "auth.verificationToken"
    )  # fmt: skip
    assert (result["count"], result["verificationTokens"]) == (2, 2)


def test_auth_tables_schema_names_a_schema_off_the_search_path(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_prisma_schema(conn, schema="identity")
        seed_expiring(conn, "prisma", schema="identity")
        create_pg_adapter_schema(conn)  # another app's tables in public: not looked at
    monkeypatch.setenv("AUTH_TABLES_SCHEMA", "identity")
    result = heal_stale_sessions(database_for(database_url), SessionSettings.from_env(), Budget())
    assert (result["layout"], result["table"], result["verificationTable"]) == (
        "prisma", "identity.Session", "identity.VerificationToken"
    )  # fmt: skip
    assert (result["count"], result["verificationTokens"]) == (2, 2)


def test_a_verification_token_table_can_be_overridden(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_pg_adapter_schema(conn)
        conn.execute(
            """CREATE SCHEMA mail;
            CREATE TABLE mail.magic_links (identifier text, token text PRIMARY KEY, "validUntil" timestamptz);
            INSERT INTO mail.magic_links VALUES ('a', 'old', now() - interval '1 hour'),
                                                ('b', 'new', now() + interval '1 hour')"""
        )
    monkeypatch.setenv("VERIFICATION_TOKEN_TABLE", "mail.magic_links")
    monkeypatch.setenv("VERIFICATION_TOKEN_EXPIRES_COLUMN", "validUntil")
    result = heal_stale_sessions(database_for(database_url), SessionSettings.from_env(), Budget())
    assert (result["layout"], result["verificationTable"], result["verificationTokens"]) == (
        "pg-adapter", "mail.magic_links", 1
    )  # fmt: skip
    with connect(database_url) as conn:
        assert {token for (token,) in conn.execute("SELECT token FROM mail.magic_links")} == {"new"}


def test_a_missing_verification_token_table_is_skipped_with_the_reason(database_url):
    with connect(database_url) as conn:
        create_drizzle_schema(conn)
        seed_expiring(conn, "drizzle")
        conn.execute('DROP TABLE "verificationToken"')
    result = heal_stale_sessions(database_for(database_url), AUTO, Budget())
    assert result["count"] == 2 and result["verificationTable"] is None
    assert result["skipped"] == [
        "verification token table verificationToken: names no table in the database (see VERIFICATION_TOKEN_TABLE)"
    ]


def test_auto_without_an_auth_js_session_table_lists_what_it_found(database_url):
    with connect(database_url) as conn:  # connect-pg-simple's express sessions: a "session" of another kind
        conn.execute("CREATE TABLE session (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6))")
    with pytest.raises(ConfigurationError) as info:
        heal_stale_sessions(database_for(database_url), AUTO, Budget())
    assert info.value.variable == "SESSION_SCHEMA"
    assert "no Auth.js session table was found on the search path" in str(info.value)
    assert "public.session (lacks sessionToken, userId, expires)" in str(info.value)


def test_auto_with_two_layouts_asks_for_a_preset(database_url):
    with connect(database_url) as conn:
        create_prisma_schema(conn)
        create_drizzle_schema(conn, schema="legacy")
        conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO public, legacy").format(
            sql.Identifier(conn.info.dbname)))  # fmt: skip
    with pytest.raises(ConfigurationError) as info:
        heal_stale_sessions(database_for(database_url), AUTO, Budget())
    assert info.value.variable == "SESSION_SCHEMA"
    assert "public.Session (prisma); legacy.session (drizzle)" in str(info.value)
    assert heal_stale_sessions(database_for(database_url), PRISMA, Budget())["table"] == "public.Session"


def test_a_preset_whose_token_table_is_not_auth_js_skips_it(database_url):
    with connect(database_url) as conn:
        create_pg_adapter_schema(conn)
        conn.execute(
            """DROP TABLE verification_token;
            CREATE TABLE verification_token (id serial PRIMARY KEY, expires timestamptz);
            INSERT INTO verification_token (expires) VALUES (now() - interval '1 day')"""
        )
    result = heal_stale_sessions(database_for(database_url), PG_ADAPTER, Budget())
    assert result["skipped"] == [
        "verification token table verification_token: names a table that lacks identifier, token: not an Auth.js "
        "table (see VERIFICATION_TOKEN_TABLE)"
    ]
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM verification_token").fetchone() == (1,)
