"""migrations/002_monitoring_role.sql on real PostgreSQL: the db health check works with exactly its rights.

Each test runs the migration through psql (as an operator would) for a role of its own on a database of its
own, connects as that role (the shared server trusts 127.0.0.1) and drops the role afterwards.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from monitoring_role import drop_role, run_migration
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from nextauth_schema import create_prisma_schema
from parel_monitoring.db import Database, DatabaseSettings
from parel_monitoring.health.db import DbHealthSettings, check_db_health


def health_settings(url: str, application_name: str = "parel-monitor-role-test") -> DbHealthSettings:
    database = DatabaseSettings(url, 3, 5000, True, application_name)
    return DbHealthSettings(database, query_threshold_ms=1000, pool_threshold_pct=90)


@pytest.fixture
def monitor(database_url):
    """``(role, url)``: the migration run for a role of this test's own (limit 3); dropped afterwards."""
    role = f"parel_mon_{uuid.uuid4().hex[:10]}"
    result = run_migration(database_url, role, connection_limit=3)
    assert result.returncode == 0, result.stderr
    yield role, make_conninfo(database_url, user=role)
    drop_role(database_url, role)


@pytest.fixture
def authjs_tables(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_prisma_schema(conn)
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'a@example.com', now())""")
        conn.execute("""INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt")
                        VALUES ('token-1', 'u1', now() - interval '1 day', now())""")
    return database_url


def test_the_role_logs_in_with_pg_monitor_connect_a_limit_and_nothing_more(database_url, monitor):
    role, _ = monitor
    with psycopg.connect(database_url, autocommit=True) as admin:
        attributes = admin.execute(
            """SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit,
                      rolconfig
               FROM pg_roles WHERE rolname = %s""",
            (role,),
        ).fetchone()
        member_of = admin.execute(
            "SELECT array_agg(roleid::regrole::text) FROM pg_auth_members WHERE member = %s::regrole", (role,)
        ).fetchone()[0]
        can_connect = admin.execute("SELECT has_database_privilege(%s, current_database(), 'CONNECT')", (role,))
        assert can_connect.fetchone() == (True,)
    assert attributes[:7] == (True, False, False, False, False, False, 3)
    assert {"default_transaction_read_only=on", "idle_session_timeout=10min"} <= set(attributes[7])
    assert member_of == ["pg_monitor"]
    again = run_migration(database_url, role, connection_limit=3)  # rerunning is safe
    assert again.returncode == 0, again.stderr
    assert "ready: LOGIN, CONNECTION LIMIT 3" in again.stdout


def test_db_health_sees_every_backend_state_with_exactly_those_rights(database_url, monitor):
    role, url = monitor
    idle = psycopg.connect(database_url, autocommit=True, application_name="parel-other-idle")
    stuck = psycopg.connect(database_url, application_name="parel-other-stuck")
    stuck.execute("SELECT 1")  # another role's session, idle in transaction
    try:
        settings = health_settings(url)
        database = Database(settings.database)
        result = check_db_health(settings, database)
        states = dict(
            database.run(
                lambda conn: conn.execute(
                    "SELECT application_name, state FROM pg_stat_activity WHERE application_name LIKE 'parel-other-%'"
                ).fetchall()
            )
        )
        with psycopg.connect(database_url) as admin:
            max_connections = int(admin.execute("SHOW max_connections").fetchone()[0])
        database.close()

        # Without pg_monitor (the same role, that one grant revoked) other roles' sessions are hidden: their
        # backend_type and state read NULL, so the pool query does not even count them.
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("REVOKE pg_monitor FROM {}").format(sql.Identifier(role)))
        blind = Database(settings.database)
        blind_result = check_db_health(settings, blind)
        blind.close()
    finally:
        idle.close()
        stuck.close()

    assert result["status"] == "healthy", result
    assert states == {"parel-other-idle": "idle", "parel-other-stuck": "idle in transaction"}
    pool = result["pool"]
    assert pool["max"] == max_connections
    assert pool["idle"] >= 1 and pool["idleInTransaction"] >= 1 and pool["active"] >= 1
    assert pool["total"] >= 3 and pool["active"] + pool["idle"] + pool["idleInTransaction"] >= 3  # all seen
    assert float(pool["usagePercent"]) == pytest.approx(pool["total"] / max_connections * 100, abs=0.01)

    assert blind_result["status"] == "healthy", blind_result
    seen = blind_result["pool"]
    assert (seen["total"], seen["active"], seen["idle"], seen["idleInTransaction"]) == (1, 1, 0, 0)  # itself only


def test_the_role_cannot_read_or_write_the_authjs_tables(authjs_tables, monitor):
    _, url = monitor
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(errors.ReadOnlySqlTransaction):  # its sessions start read-only
            conn.execute("""DELETE FROM "Session" """)
        conn.execute("SET default_transaction_read_only = off")  # which it may change: the grants still refuse
        for statement in (
            """INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt")
               VALUES ('forged', 'u1', now() + interval '1 day', now())""",
            """DELETE FROM "Session" """,
            """UPDATE "User" SET email = 'x@example.com'""",
            """TRUNCATE "VerificationToken" """,
            """SELECT "sessionToken" FROM "Session" """,
            "CREATE TABLE public.monitor_was_here (id int)",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(authjs_tables) as admin:
        assert admin.execute("""SELECT "sessionToken" FROM "Session" """).fetchall() == [("token-1",)]
        assert admin.execute("""SELECT email FROM "User" """).fetchall() == [("a@example.com",)]


def test_the_connection_limit_holds(database_url, monitor):
    _, url = monitor
    held = [psycopg.connect(url, autocommit=True) for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            psycopg.connect(url, connect_timeout=3)
        settings = health_settings(url)
        refused = check_db_health(settings, Database(settings.database))  # a fourth environment: 503, app unharmed
        assert refused["status"] == "unhealthy" and "too many connections" in refused["reason"]
        with psycopg.connect(database_url) as app:  # other roles still connect
            assert app.execute("SELECT 1").fetchone() == (1,)
        held.pop().close()
        database = Database(settings.database)
        assert check_db_health(settings, database)["status"] == "healthy"
        database.close()
    finally:
        for conn in held:
            conn.close()


def test_a_role_that_can_write_is_refused(authjs_tables, monitor):
    role, _ = monitor
    with psycopg.connect(authjs_tables, autocommit=True) as admin:
        admin.execute(sql.SQL('GRANT INSERT ON "Session" TO {}').format(sql.Identifier(role)))
    result = run_migration(authjs_tables, role, connection_limit=3)
    assert result.returncode != 0
    assert 'can write "Session"' in result.stdout
