"""check_db_health against real PostgreSQL servers."""

import time

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from parel_monitoring.db import Database, DatabaseSettings, DatabaseUnavailable
from parel_monitoring.health.db import DbHealthSettings, check_db_health
from polling import LOADED_MARGIN_S


def settings_for(url: str, query_ms: float = 1000, pool_pct: float = 90, **database) -> DbHealthSettings:
    options = {
        "url": url,
        "connect_timeout_s": 3,
        "statement_timeout_ms": 5000,
        "prepared_statements": True,
        "application_name": "parel-test",
    }
    options.update(database)
    return DbHealthSettings(DatabaseSettings(**options), query_ms, pool_pct)


def backend_pids(url: str, application_name: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,))
        return {pid for (pid,) in rows}


def test_healthy_with_the_seed_fields_and_server_pool(database_url):
    settings = settings_for(database_url)
    result = check_db_health(settings, Database(settings.database))
    assert result["status"] == "healthy"
    assert result["query"]["threshold"] == "1000ms" and result["query"]["healthy"] is True
    assert result["query"]["responseTime"].endswith("ms")
    pool = result["pool"]
    with psycopg.connect(database_url) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
    assert pool["max"] == max_connections and pool["active"] >= 1
    assert pool["total"] >= pool["active"] + pool["idle"] + pool["idleInTransaction"]
    assert float(pool["usagePercent"]) == pytest.approx(pool["total"] / max_connections * 100, abs=0.01)


def test_pool_counts_idle_and_idle_in_transaction_sessions(database_url):
    settings = settings_for(database_url)
    database = Database(settings.database)
    before = check_db_health(settings, database)["pool"]
    idle = psycopg.connect(database_url, autocommit=True)
    stuck = psycopg.connect(database_url)
    stuck.execute("SELECT 1")  # leaves the session idle in transaction
    try:
        after = check_db_health(settings, database)["pool"]
    finally:
        idle.close()
        stuck.close()
    assert after["idle"] >= before["idle"] + 1
    assert after["idleInTransaction"] >= before["idleInTransaction"] + 1
    assert after["total"] == before["total"] + 2


@pytest.mark.parametrize(("query_ms", "pool_pct"), [(0, 90), (1000, 0)])
def test_degraded_when_a_threshold_is_exceeded(database_url, query_ms, pool_pct):
    settings = settings_for(database_url, query_ms, pool_pct)
    result = check_db_health(settings, Database(settings.database))
    assert result["status"] == "degraded"
    assert result["query"]["healthy"] is (query_ms > 0) and result["pool"]["healthy"] is (pool_pct > 0)


def test_unhealthy_fast_when_nothing_listens(closed_port):
    settings = settings_for(f"postgresql://app:NotShown-123@127.0.0.1:{closed_port}/app")
    started = time.monotonic()
    result = check_db_health(settings, Database(settings.database))
    assert time.monotonic() - started < settings.database.connect_timeout_s + LOADED_MARGIN_S  # refused at once
    assert result["status"] == "unhealthy" and result["pool"] is None
    assert "NotShown-123" not in result["reason"] and "postgresql://" not in result["reason"]
    assert result["reasonCategory"] == "connection refused" and str(closed_port) in result["reason"]


def test_unhealthy_fast_with_a_wrong_password(password_protected_postgres):
    wrong = password_protected_postgres.replace("right-Pa55word", "wrong-Pa55word")
    settings = settings_for(wrong)
    started = time.monotonic()
    result = check_db_health(settings, Database(settings.database))
    assert time.monotonic() - started < settings.database.connect_timeout_s + LOADED_MARGIN_S
    assert result["status"] == "unhealthy"
    assert "password authentication failed" in result["reason"]
    assert "wrong-Pa55word" not in result["reason"]
    assert result["reasonCategory"] == "authentication failed"
    right = settings_for(password_protected_postgres)
    assert check_db_health(right, Database(right.database))["status"] == "healthy"


def test_connection_is_reused_and_replaced_after_pg_terminate_backend(database_url):
    settings = settings_for(database_url, application_name="parel-reuse-test")
    database = Database(settings.database)
    assert check_db_health(settings, database)["status"] == "healthy"
    (pid,) = backend_pids(database_url, "parel-reuse-test")
    assert check_db_health(settings, database)["status"] == "healthy"
    assert backend_pids(database_url, "parel-reuse-test") == {pid}  # the same backend served both
    with psycopg.connect(database_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    result = check_db_health(settings, database)
    assert result["status"] == "healthy", result
    (new_pid,) = backend_pids(database_url, "parel-reuse-test")
    assert new_pid != pid


def test_statement_timeout_bounds_a_slow_query(database_url):
    settings = settings_for(database_url, statement_timeout_ms=200)
    database = Database(settings.database)
    started = time.monotonic()
    with pytest.raises(Exception, match="statement timeout"):
        database.run(lambda conn: conn.execute("SELECT pg_sleep(30)"))
    assert time.monotonic() - started < 0.2 + LOADED_MARGIN_S  # cancelled at 0.2 s, not after the 30 s sleep
    assert check_db_health(settings, database)["status"] == "healthy"  # the connection survives


def test_without_prepared_statements_for_pgbouncer_transaction_mode(database_url):
    settings = settings_for(database_url, prepared_statements=False)
    database = Database(settings.database)
    for _ in range(8):  # past psycopg's default prepare threshold of 5
        assert check_db_health(settings, database)["status"] == "healthy"
    prepared = database.run(lambda conn: conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0])
    assert prepared == 0
    with_prepare = Database(settings_for(database_url).database)
    for _ in range(8):
        check_db_health(settings, with_prepare)
    assert with_prepare.run(lambda conn: conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]) > 0


# --------------------------------------------------------------------------- failure categories (shown to anyone)


def unreachable(url: str, **database) -> dict:
    settings = settings_for(url, **database)
    return check_db_health(settings, Database(settings.database))


def test_an_unknown_host_an_unknown_role_and_an_unknown_database_are_categories_naming_nothing(database_url):
    cases = [
        ("postgresql://monitor_user:pw@db.internal.example:5432/app", "DNS lookup failed", "db.internal.example"),
        (make_conninfo(database_url, user="no_such_role"), "authentication failed", '"no_such_role"'),
        (make_conninfo(database_url, dbname="no_such_database"), "database not found", '"no_such_database"'),
    ]
    for url, category, named in cases:
        result = unreachable(url)
        assert result["status"] == "unhealthy" and result["reasonCategory"] == category, (url, result)
        assert named in result["reason"]


def test_no_connection_slot_left_is_too_many_connections(database_url):
    role = "parel_no_slots"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    try:
        result = unreachable(make_conninfo(database_url, user=role))
        assert result["reasonCategory"] == "too many connections", result
        assert "too many connections for role" in result["reason"]
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f"DROP ROLE {role}")


def test_a_statement_timeout_and_a_refused_statement_are_categories(database_url):
    database = Database(settings_for(database_url, statement_timeout_ms=100).database)
    with pytest.raises(DatabaseUnavailable) as slow:
        database.run(lambda conn: conn.execute("SELECT pg_sleep(2)"))
    assert slow.value.category == "timeout" and "statement timeout" in slow.value.reason
    with pytest.raises(DatabaseUnavailable) as refused:
        database.run(lambda conn: conn.execute("SELECT * FROM no_such_table"))
    assert refused.value.category == "query failed" and "no_such_table" in refused.value.reason
    with pytest.raises(DatabaseUnavailable) as denied:
        database.run(lambda conn: conn.execute("SET ROLE pg_monitor; CREATE TABLE parel_denied (id int)"))
    assert denied.value.category == "permission denied", denied.value.reason
