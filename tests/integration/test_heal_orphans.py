"""clean_orphaned_records against real PostgreSQL with the Auth.js adapters' schemas (tools/nextauth_schema.py)."""

import json

import psycopg
import pytest

from heal_support import budget_for_batches, connect, database_for, rows
from nextauth_schema import create_drizzle_schema, create_pg_adapter_schema, create_prisma_schema
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.orphans import OrphanSettings, clean_orphaned_records
from parel_monitoring.heal.tables import PRIMARY_KEY, TID_RANGE, UNIQUE_KEY
from parel_monitoring.settings import ConfigurationError

USERS = [f"user-{number}" for number in range(1, 7)]
DELETED_USERS = {"user-2", "user-5"}  # deleted with plain SQL: under relationMode = "prisma" nothing cascades
PG13 = 130000  # server_version_num of a server without Tid Range Scans: the key walks
SESSION_RULE = {"table": "Session", "column": "userId", "parentTable": "User", "parentColumn": "id"}


def populate_prisma(conn: psycopg.Connection, sessions_per_user: int = 3) -> None:
    """Every user with sessions, an account and a passkey (Authenticator)."""
    cursor = conn.cursor()
    cursor.executemany(
        'INSERT INTO "User" (id, email, "updatedAt") VALUES (%s, %s, now())', [(u, f"{u}@example.com") for u in USERS]
    )
    cursor.executemany(
        """INSERT INTO "Session" ("sessionToken", "userId", expires, "updatedAt")
        VALUES (%s, %s, now() AT TIME ZONE 'UTC' + interval '30 days', now())""",
        [(f"s-{u}-{n}", u) for u in USERS for n in range(sessions_per_user)],
    )
    cursor.executemany(
        """INSERT INTO "Account" ("userId", type, provider, "providerAccountId", "updatedAt")
        VALUES (%s, 'oauth', 'github', %s, now())""",
        [(u, f"gh-{u}") for u in USERS],
    )
    if conn.execute("""SELECT to_regclass('"Authenticator"')""").fetchone()[0]:
        cursor.executemany(
            """INSERT INTO "Authenticator" ("credentialID", "userId", "providerAccountId", "credentialPublicKey",
            counter, "credentialDeviceType", "credentialBackedUp")
            VALUES (%s, %s, %s, 'key', 0, 'singleDevice', false)""",
            [(f"cred-{u}", u, f"gh-{u}") for u in USERS],
        )


def delete_users(conn: psycopg.Connection, users: set[str]) -> None:
    conn.execute('DELETE FROM "User" WHERE id = ANY(%s)', (list(users),))


def snapshot(conn: psycopg.Connection) -> dict[str, set]:
    return {
        "User": rows(conn, "User", "id"),
        "Session": rows(conn, "Session", "sessionToken"),
        "Account": rows(conn, "Account", "providerAccountId"),
        "Authenticator": rows(conn, "Authenticator", "userId", "credentialID"),
    }


@pytest.fixture(autouse=True)
def no_orphan_settings(monkeypatch):
    for variable in ("ORPHAN_RULES", "ORPHAN_BATCH_SIZE", "SESSION_SCHEMA", "SESSION_TABLE", "AUTH_TABLES_SCHEMA"):
        monkeypatch.delenv(variable, raising=False)


def settings_from(monkeypatch, rules: object = None, batch_size: int | None = None) -> OrphanSettings:
    if rules is not None:
        monkeypatch.setenv("ORPHAN_RULES", rules if isinstance(rules, str) else json.dumps(rules))
    if batch_size is not None:
        monkeypatch.setenv("ORPHAN_BATCH_SIZE", str(batch_size))
    return OrphanSettings.from_env()


@pytest.fixture
def relation_mode_url(database_url):
    """The Prisma schema with relationMode = "prisma" (no foreign keys), two users deleted outside Prisma."""
    with connect(database_url) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        populate_prisma(conn)
        delete_users(conn, DELETED_USERS)
    return database_url


@pytest.mark.parametrize("server", [None, PG13], ids=["this-server", "before-14"])
def test_default_rules_delete_exactly_the_orphans(relation_mode_url, monkeypatch, server):
    """PostgreSQL 14+ (the tests' server is 15) walks each child table in physical order; planned as for 13,
    along the child's primary key or NOT NULL unique key."""
    with connect(relation_mode_url) as conn:
        before = snapshot(conn)
    settings = settings_from(monkeypatch)
    result = clean_orphaned_records(database_for(relation_mode_url), settings, Budget(), server_version=server)
    assert result["count"] == 2 * 3 + 2 + 2 and result["partial"] is False
    assert [(rule["table"], rule["deleted"], rule["skipped"]) for rule in result["rules"]] == [
        ("public.Session", 6, None),
        ("public.Account", 2, None),
        ("public.Authenticator", 2, None),
    ]
    assert result["layout"] == "prisma" and result["skipped"] == []
    walks = [(UNIQUE_KEY, ["sessionToken"]), (PRIMARY_KEY, ["provider", "providerAccountId"])]
    if server is None:
        walks = [(TID_RANGE, ["ctid"])] * 2
    position = None if server else {"pages": 1, "startedAt": 0, "stoppedAt": None, "note": None, "kept": None}
    assert result["rules"][0] | {"deleted": 0} == {
        "table": "public.Session", "column": "userId", "parentTable": "public.User", "parentColumn": "id",
        "deleted": 0, "skipped": None, "strategy": walks[0][0], "key": walks[0][1], "position": position,
    }  # fmt: skip
    assert (result["rules"][1]["strategy"], result["rules"][1]["key"]) == walks[1]
    with connect(relation_mode_url) as conn:
        after = snapshot(conn)
    assert after == {
        "User": before["User"],
        "Session": {f"s-{u}-{n}" for u in USERS if u not in DELETED_USERS for n in range(3)},
        "Account": {f"gh-{u}" for u in USERS if u not in DELETED_USERS},
        "Authenticator": {(u, f"cred-{u}") for u in USERS if u not in DELETED_USERS},
    }


def test_with_foreign_keys_deleting_users_cascades_and_nothing_is_orphaned(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_prisma_schema(conn, foreign_keys=True)
        populate_prisma(conn)
        delete_users(conn, DELETED_USERS)
        before = snapshot(conn)
    assert len(before["Session"]) == 3 * (len(USERS) - len(DELETED_USERS))  # the cascade removed theirs
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert result["count"] == 0 and [rule["deleted"] for rule in result["rules"]] == [0, 0, 0]
    with connect(database_url) as conn:
        assert snapshot(conn) == before


def test_a_default_rule_whose_table_is_missing_is_skipped(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_prisma_schema(conn, foreign_keys=False, authenticator=False)  # before WebAuthn support
        populate_prisma(conn)
        delete_users(conn, {"user-1"})
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert [(rule["deleted"], rule["skipped"]) for rule in result["rules"]] == [
        (3, None),
        (1, None),
        (0, "table names no table in the database"),
    ]
    assert result["skipped"] == []  # Authenticator is optional (WebAuthn): the run is still ok


def test_dry_run_counts_and_deletes_nothing(relation_mode_url, monkeypatch):
    with connect(relation_mode_url) as conn:
        before = snapshot(conn)
    result = clean_orphaned_records(database_for(relation_mode_url), settings_from(monkeypatch), Budget(), True)
    assert result["count"] == 10 and [rule["deleted"] for rule in result["rules"]] == [6, 2, 2]
    with connect(relation_mode_url) as conn:
        assert snapshot(conn) == before


def test_small_batches_a_tiny_budget_and_a_later_run(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        populate_prisma(conn, sessions_per_user=200)
        delete_users(conn, DELETED_USERS)
        live_sessions = {
            sid
            for (sid,) in conn.execute('SELECT s."sessionToken" FROM "Session" s JOIN "User" u ON u.id = s."userId"')
        }
    settings = settings_from(monkeypatch, batch_size=100)
    database = database_for(database_url)
    first = clean_orphaned_records(database, settings, budget_for_batches(4))
    assert first["partial"] is True and 0 < first["count"] < 400
    assert [rule["skipped"] for rule in first["rules"]] == [None, "budget exhausted", "budget exhausted"]
    second = clean_orphaned_records(database, settings, Budget())
    assert second["partial"] is False and first["count"] + second["count"] == 400 + 2 + 2
    with connect(database_url) as conn:
        assert rows(conn, "Session", "sessionToken") == live_sessions


def test_configured_rules_for_the_pg_adapter_schema(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_pg_adapter_schema(conn)
        conn.execute(
            """INSERT INTO users (name) SELECT 'user ' || i FROM generate_series(1, 4) AS i;
            INSERT INTO sessions ("userId", expires, "sessionToken")
              SELECT i % 5, now() + interval '1 day', 'token-' || i FROM generate_series(1, 20) AS i;
            INSERT INTO accounts ("userId", type, provider, "providerAccountId")
              SELECT i, 'oauth', 'github', 'gh-' || i FROM generate_series(1, 6) AS i;
            DELETE FROM users WHERE id = 2"""
        )
        kept_sessions = {sid for (sid, user) in conn.execute('SELECT id, "userId" FROM sessions') if user in {1, 3, 4}}
    rules = [
        {"table": "sessions", "column": "userId", "parentTable": "public.users", "parentColumn": "id"},
        {"table": "public.accounts", "column": "userId", "parentTable": "users", "parentColumn": "id"},
    ]
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch, rules), Budget())
    # sessions of users 0 and 2 (4 each); accounts of users 2, 5 and 6
    assert [rule["deleted"] for rule in result["rules"]] == [8, 3] and result["count"] == 11
    with connect(database_url) as conn:
        assert rows(conn, "sessions", "id") == kept_sessions
        assert rows(conn, "accounts", "userId") == {1, 3, 4}


def test_schema_qualified_rule_keeps_rows_without_a_parent_key(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        conn.execute(
            """CREATE SCHEMA blog;
            CREATE TABLE blog.posts (id serial PRIMARY KEY, "authorId" text);
            INSERT INTO "User" (id, email, "updatedAt") VALUES ('ada', 'a@example.com', now()),
                                                               ('grace', 'g@example.com', now());
            INSERT INTO blog.posts ("authorId") VALUES ('ada'), (NULL), ('gone'), ('grace'), (NULL), ('gone')"""
        )
    rules = [{"table": "blog.posts", "column": "authorId", "parentTable": "User", "parentColumn": "id"}]
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch, rules), Budget())
    assert result["count"] == 2 and result["rules"][0]["table"] == "blog.posts"
    with connect(database_url) as conn:
        assert conn.execute('SELECT "authorId" FROM blog.posts ORDER BY id').fetchall() == [
            ("ada",), (None,), ("grace",), (None,)
        ]  # fmt: skip


def test_names_with_quotes_and_percent_signs_are_quoted_not_interpreted(database_url, monkeypatch):
    with connect(database_url) as conn:
        conn.execute(
            """CREATE TABLE "odd""parent%s" ("key%(x)s" int PRIMARY KEY);
            CREATE TABLE "odd""child; --" (id int PRIMARY KEY, "parent"" key" int);
            INSERT INTO "odd""parent%s" VALUES (1), (2);
            INSERT INTO "odd""child; --" VALUES (10, 1), (11, 3), (12, 2), (13, 4)"""
        )
    rules = [
        {"table": 'odd"child; --', "column": 'parent" key', "parentTable": 'odd"parent%s', "parentColumn": "key%(x)s"}
    ]
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch, rules), Budget())
    assert result["count"] == 2
    with connect(database_url) as conn:
        assert rows(conn, 'odd"child; --', "id") == {10, 12}


INVALID_RULES = {
    "unknown table": [SESSION_RULE, SESSION_RULE | {"table": "Sessions"}],
    "unknown column": [SESSION_RULE, SESSION_RULE | {"column": "ownerId"}],
    "unknown parent table": [SESSION_RULE, SESSION_RULE | {"parentTable": "auth.User"}],
    "unknown parent column": [SESSION_RULE, SESSION_RULE | {"parentColumn": "uuid"}],
    "types cannot be compared": [SESSION_RULE, SESSION_RULE | {"table": "Account", "column": "expires_at"}],
    "injection in a table name": [SESSION_RULE, SESSION_RULE | {"table": 'Session"; DROP TABLE "User"; --'}],
    "injection in a column name": [SESSION_RULE, SESSION_RULE | {"column": 'userId" IS NULL OR true; --'}],
}


@pytest.mark.parametrize("rules", INVALID_RULES.values(), ids=INVALID_RULES.keys())
def test_a_configured_rule_the_database_lacks_is_an_error_before_any_delete(relation_mode_url, monkeypatch, rules):
    with connect(relation_mode_url) as conn:
        before = snapshot(conn)
    with pytest.raises(ConfigurationError) as info:
        clean_orphaned_records(database_for(relation_mode_url), settings_from(monkeypatch, rules), Budget())
    assert info.value.variable == "ORPHAN_RULES" and str(info.value).startswith("ORPHAN_RULES rule 2:")
    changed = [value for key, value in rules[1].items() if value != SESSION_RULE[key]]
    assert changed and all(value not in str(info.value) for value in changed)
    with connect(relation_mode_url) as conn:
        assert snapshot(conn) == before  # the valid first rule's orphans are still there, and so is "User"


MALFORMED_RULES = {
    "not JSON": '[{"table": "Session",',
    "not a list": json.dumps(SESSION_RULE),
    "not an object": json.dumps(["Session.userId"]),
    "missing field": json.dumps([{key: value for key, value in SESSION_RULE.items() if key != "parentColumn"}]),
    "extra field": json.dumps([SESSION_RULE | {"onDelete": "cascade"}]),
    "not a string": json.dumps([SESSION_RULE | {"column": 7}]),
    "empty name": json.dumps([SESSION_RULE | {"column": ""}]),
    "too many dots": json.dumps([SESSION_RULE | {"table": "db.public.Session"}]),
}


@pytest.mark.parametrize("text", MALFORMED_RULES.values(), ids=MALFORMED_RULES.keys())
def test_malformed_orphan_rules_are_an_error_naming_the_variable(monkeypatch, text):
    with pytest.raises(ConfigurationError) as info:
        settings_from(monkeypatch, text)
    assert info.value.variable == "ORPHAN_RULES"
    assert "Session" not in str(info.value) and "cascade" not in str(info.value)


# --------------------------------------------------------------------------- rules that follow the layout


def test_the_pg_adapter_layout_needs_no_rules(database_url, monkeypatch):
    """Its documented schema has no foreign keys: deleting a user with SQL leaves its sessions and accounts."""
    with connect(database_url) as conn:
        create_pg_adapter_schema(conn)
        conn.execute(
            """INSERT INTO users (name) SELECT 'user ' || i FROM generate_series(1, 3) AS i;
            INSERT INTO sessions ("userId", expires, "sessionToken")
              SELECT 1 + i % 3, now() + interval '1 day', 'token-' || i FROM generate_series(1, 9) AS i;
            INSERT INTO accounts ("userId", type, provider, "providerAccountId")
              SELECT i, 'oauth', 'github', 'gh-' || i FROM generate_series(1, 3) AS i;
            DELETE FROM users WHERE id = 2"""
        )
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert (result["layout"], result["count"], result["skipped"]) == ("pg-adapter", 4, [])
    assert [(rule["table"], rule["parentTable"], rule["deleted"]) for rule in result["rules"]] == [
        ("public.sessions", "public.users", 3),
        ("public.accounts", "public.users", 1),
    ]
    with connect(database_url) as conn:
        assert rows(conn, "sessions", "userId") == {1, 3} and rows(conn, "accounts", "userId") == {1, 3}


def test_the_drizzle_layout_follows_its_tables(database_url, monkeypatch):
    """Drizzle's default tables cascade; orphans come from deletes that bypass the foreign keys (a restore or
    replica load with triggers disabled does the same)."""
    with connect(database_url) as conn:
        create_drizzle_schema(conn)
        conn.execute(
            """INSERT INTO "user" (id, email) SELECT 'u' || i, i || '@example.com' FROM generate_series(1, 3) AS i;
            INSERT INTO session ("sessionToken", "userId", expires)
              SELECT 'token-' || i, 'u' || (1 + i % 3), now() + interval '1 day' FROM generate_series(1, 9) AS i;
            INSERT INTO account ("userId", type, provider, "providerAccountId")
              SELECT 'u' || i, 'oauth', 'github', 'gh-' || i FROM generate_series(1, 3) AS i;
            INSERT INTO authenticator ("credentialID", "userId", "providerAccountId", "credentialPublicKey", counter,
                                       "credentialDeviceType", "credentialBackedUp")
              SELECT 'cred-' || i, 'u' || i, 'gh-' || i, 'key', 0, 'singleDevice', false FROM generate_series(1, 3) i;
            DELETE FROM "user" WHERE id = 'u1';  -- cascades
            SET session_replication_role = replica;
            DELETE FROM "user" WHERE id = 'u2';  -- leaves orphans
            RESET session_replication_role"""
        )
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert (result["layout"], result["skipped"]) == ("drizzle", [])
    assert [(rule["table"], rule["deleted"], rule["strategy"], rule["key"]) for rule in result["rules"]] == [
        ("public.session", 3, TID_RANGE, ["ctid"]),
        ("public.account", 1, TID_RANGE, ["ctid"]),
        ("public.authenticator", 1, TID_RANGE, ["ctid"]),
    ]
    with connect(database_url) as conn:
        assert rows(conn, "session", "userId") == rows(conn, "account", "userId") == {"u3"}


def test_a_required_table_the_layout_lacks_is_skipped_and_reported(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_pg_adapter_schema(conn)
        conn.execute("DROP TABLE accounts")
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert [rule["skipped"] for rule in result["rules"]] == [None, "table names no table in the database"]
    assert result["skipped"] == ["accounts.userId -> users.id: table names no table in the database"]


def test_without_a_detected_layout_there_is_nothing_to_run(database_url, monkeypatch):
    """SESSION_TABLE names a table of no Auth.js layout: without ORPHAN_RULES there are no rules."""
    with connect(database_url) as conn:
        conn.execute('CREATE TABLE "LoginSession" (sid bigint PRIMARY KEY, "validUntil" timestamptz)')
    monkeypatch.setenv("SESSION_TABLE", "LoginSession")
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert (result["layout"], result["rules"], result["count"]) == (None, [], 0)
    assert result["skipped"] == ["no Auth.js layout detected and ORPHAN_RULES unset: no rules to run"]


def test_auto_without_any_layout_names_session_schema(database_url, monkeypatch):
    with pytest.raises(ConfigurationError) as info:
        clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert info.value.variable == "SESSION_SCHEMA" and "found: no session table" in str(info.value)


def test_a_same_named_table_that_is_not_auth_js_is_never_touched(database_url, monkeypatch):
    """The pg-adapter layout's sessions and users, next to a billing "accounts" table of the app's own: that
    table keeps its rows, however few of their userIds are in users."""
    with connect(database_url) as conn:
        create_pg_adapter_schema(conn)
        conn.execute(
            """DROP TABLE accounts;
            CREATE TABLE accounts (id serial PRIMARY KEY, "userId" int, balance numeric);
            INSERT INTO users (name) VALUES ('ada');
            INSERT INTO accounts ("userId", balance) VALUES (1, 10), (2, 20), (3, 30);
            INSERT INTO sessions ("userId", expires, "sessionToken") VALUES (1, now() + interval '1 day', 'a'),
                                                                         (9, now() + interval '1 day', 'b')"""
        )
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert [(rule["table"], rule["deleted"], rule["skipped"]) for rule in result["rules"]] == [
        ("public.sessions", 1, None),
        ("accounts", 0, "table lacks provider, providerAccountId: not an Auth.js table"),
    ]
    assert result["skipped"] == [
        "accounts.userId -> users.id: table lacks provider, providerAccountId: not an Auth.js table"
    ]
    with connect(database_url) as conn:
        assert rows(conn, "accounts", "userId") == {1, 2, 3}


def test_a_user_table_that_is_not_auth_js_orphans_nothing(database_url, monkeypatch):
    with connect(database_url) as conn:
        create_pg_adapter_schema(conn)
        conn.execute(
            """DROP TABLE users;
            CREATE TABLE users (id serial PRIMARY KEY, login text);  -- the app's, not Auth.js's
            INSERT INTO sessions ("userId", expires, "sessionToken") VALUES (1, now() + interval '1 day', 'a')"""
        )
    result = clean_orphaned_records(database_for(database_url), settings_from(monkeypatch), Budget())
    assert result["count"] == 0
    assert {rule["skipped"] for rule in result["rules"]} == {
        "parentTable lacks email, emailVerified: not an Auth.js user table"
    }
    with connect(database_url) as conn:
        assert rows(conn, "sessions", "sessionToken") == {"a"}
