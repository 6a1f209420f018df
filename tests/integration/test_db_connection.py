"""db.Database keeps a connection through statement-level errors and replaces only a lost one."""

from __future__ import annotations

import psycopg
import pytest

from parel_monitoring.db import Database, DatabaseSettings, DatabaseUnavailable


def database_for(url: str, **options) -> Database:
    values = {"connect_timeout_s": 3, "statement_timeout_ms": 5000, "prepared_statements": True}
    return Database(DatabaseSettings(url=url, application_name="parel-test-db", **{**values, **options}))


def backend_pid(database: Database) -> int:
    return database.run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone()[0])


def test_a_statement_timeout_keeps_the_connection_and_its_session_locks(database_url):
    """QueryCanceled is an OperationalError: it must not close the connection (nor drop its session locks)."""
    database = database_for(database_url, statement_timeout_ms=200)
    try:
        pid = backend_pid(database)
        database.run(lambda conn: conn.execute("SELECT pg_advisory_lock(4242)"))
        with pytest.raises(DatabaseUnavailable) as slow:
            database.run(lambda conn: conn.execute("SELECT pg_sleep(5)"))
        assert slow.value.category == "timeout"
        assert backend_pid(database) == pid
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND pid = %s"
        with psycopg.connect(database_url) as observer:
            assert observer.execute(held, (pid,)).fetchone() == (1,)
    finally:
        database.close()


def test_a_lock_timeout_and_a_deadlock_keep_the_connection(database_url):
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
    database = database_for(database_url)
    holder = psycopg.connect(database_url)
    try:
        pid = backend_pid(database)
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(DatabaseUnavailable):  # LockNotAvailable
            database.run(lambda conn: conn.execute("SET LOCAL lock_timeout = '100ms'; SELECT * FROM t"))
        holder.rollback()
        with pytest.raises(DatabaseUnavailable):  # SerializationFailure, raised by hand
            database.run(lambda conn: conn.execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$"))
        assert backend_pid(database) == pid
    finally:
        holder.close()
        database.close()


def test_a_terminated_connection_is_replaced_within_the_call(database_url):
    database = database_for(database_url)
    try:
        pid = backend_pid(database)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert backend_pid(database) != pid  # one fresh attempt, no error
    finally:
        database.close()
