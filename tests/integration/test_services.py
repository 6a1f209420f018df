"""The demo's service discovery against real servers and binaries."""

import socket

import psycopg
import pytest
import redis

import services


def test_explicit_url_that_does_not_answer_is_reported(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:pw@127.0.0.1:{closed}/db")
    with pytest.raises(services.ServiceUnavailable, match="DATABASE_URL is set but"):
        services.postgres_url()


def test_default_local_servers_are_found(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    database_url, _ = services.postgres_url()
    with psycopg.connect(database_url, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    url, _ = services.redis_url()
    assert redis.Redis.from_url(url, socket_timeout=2).ping()


def test_throwaway_redis_starts_from_the_installed_binary():
    url, where = services.start_throwaway_redis()
    assert "throwaway" in where and not url.endswith(":6379/0")
    assert redis.Redis.from_url(url, socket_timeout=2).ping()


def test_throwaway_postgres_starts_from_the_installed_binaries():
    url, where = services.start_throwaway_postgres()
    assert "throwaway" in where
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_setting('fsync')").fetchone() == ("off",)


def test_redact_hides_the_password():
    assert services.redact("postgresql://app:s3cret@h:5432/db") == "postgresql://app:***@h:5432/db"
