"""Proof under faults: PostgreSQL and Redis stopped, slowed, exhausted and restarted; webhooks that misbehave.

Every case uses servers of its own (tests/integration/faults.py) or a database/prefix of its own, so
stopping them disturbs nobody. Health checks run as built functions under the Lambda emulator (one
warm environment per test: recovery must happen without a cold start); heal and alert delivery run
in-process with the objects a warm environment keeps (one Database, one Redis client).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
from faults import ControlledPostgres, ControlledRedis
from pytest_httpserver import HTTPServer

from bullmq_scenario import REDIS_URL, node_counts, run_scenario, wait_locks_expired
from events_loader import load_event
from lambda_emulator import Emulator
from nextauth_schema import create_prisma_schema
from parel_monitoring.bullmq import RedisSettings, get_redis
from parel_monitoring.db import Database
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.jobs import StuckJobSettings, heal_stuck_jobs
from parel_monitoring.heal.options import HealOptions
from parel_monitoring.heal.run import HealSettings, run_all
from parel_monitoring.notify.delivery import Channel, DeliverySettings, fan_out
from parel_monitoring.notify.model import Alert
from polling import LOADED_MARGIN_S, wait_until

QUEUE = "mail"
CONNECT_TIMEOUT_S = 2
# Every bound below is the timeout that bounds the wait plus a loaded machine's LOADED_MARGIN_S, and stays under
# the function's own Timeout (10 s): it still tells "answered within its timeout" from "hung until Lambda killed it".


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def postgres():
    """``postgres(max_connections=20)``: a started throwaway server of this test's own."""
    servers: list[ControlledPostgres] = []

    def start(max_connections: int = 20) -> ControlledPostgres:
        server = ControlledPostgres(max_connections=max_connections)
        servers.append(server)
        return server.init()

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def redis_server():
    """``redis_server(persistent=False)``: a started throwaway redis-server of this test's own."""
    servers: list[ControlledRedis] = []

    def start(persistent: bool = False) -> ControlledRedis:
        server = ControlledRedis(persistent=persistent)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def heal_env(monkeypatch):
    """``heal_env(database_url, redis_url, prefix, **env)``: HealSettings.from_env() with those variables."""

    def configure(database_url: str, redis_url: str, prefix: str, **env: str) -> HealSettings:
        for name in ("SESSION_SCHEMA", "SESSION_TABLE", "SESSION_EXPIRES_COLUMN", "ORPHAN_RULES", "HEAL_LOCK"):
            monkeypatch.delenv(name, raising=False)
        values = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "QUEUE_NAMES": QUEUE,
            "BULLMQ_PREFIX": prefix,
            "HIGH_PRIORITY_QUEUE": QUEUE,
            "STUCK_JOB_THRESHOLD_MS": "0",
            "DB_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
            **env,
        }
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return HealSettings.from_env()

    return configure


# --------------------------------------------------------------------------- helpers


# Every invocation runs its own check (the health routes reuse a result for HEALTH_CACHE_TTL_S otherwise).
FRESH_CHECKS = {"HEALTH_CACHE_TTL_S": "0"}


def status_of(invocation) -> tuple[int, str]:
    payload = invocation.payload
    assert isinstance(payload, dict) and "statusCode" in payload, f"not an HTTP answer: {payload!r}"
    return payload["statusCode"], json.loads(payload["body"]).get("status")


def timed_invoke(app: Emulator, event: dict):
    started = time.monotonic()
    result = app.invoke(event)
    return result, time.monotonic() - started


def seed_sessions(url: str, expired: int = 0, live: int = 0) -> None:
    """NextAuth Prisma tables with ``expired`` and ``live`` sessions, interleaved in primary-key order."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with psycopg.connect(url, autocommit=True) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'a@example.com', now())""")
        rows = [(f"s-{i:05d}-x", "u1", now - timedelta(hours=1 + i % 50)) for i in range(expired)]
        rows += [(f"s-{i:05d}-l", "u1", now + timedelta(days=30)) for i in range(live)]
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt") VALUES (%s, %s, %s, now())""",
                rows,
            )


def session_rows(url: str) -> dict[str, tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {row[0]: row for row in conn.execute("""SELECT "sessionToken", "userId", expires FROM "Session\"""")}


def crash_worker(prefix: str, redis_url: str, count: int) -> list[str]:
    """Ids a SIGKILLed real bullmq worker left in ``active`` (locks of 300 ms, expired on return)."""
    crashed = run_scenario(
        "crash-active", prefix, QUEUE, redis_url, count=count, lock_duration=300, kill="SIGKILL",
        allowed_returncodes=(-9,),
    )  # fmt: skip
    assert len(crashed["ids"]) == count
    wait_locks_expired(redis.Redis.from_url(redis_url), prefix, QUEUE, crashed["ids"])
    return sorted(crashed["ids"])


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_stopped_health_db_503_then_recovers_warm(postgres, start_function):
    """PostgreSQL stopped during health checks: /api/health/db answers 503 within its connect timeout (plus a loaded machine's margin, under the function timeout); after restart the same warm environment answers 200 (no cold start), also when the server restarts between two invocations."""  # noqa: E501
    pg = postgres()
    app = start_function(
        "HealthDbFunction", DATABASE_URL=pg.url, DB_CONNECT_TIMEOUT_S=str(CONNECT_TIMEOUT_S), **FRESH_CHECKS
    )
    event = load_event("health-db")
    first = app.invoke(event)
    assert status_of(first) == (200, "healthy") and first.init_duration_ms is not None

    pg.stop()
    down, took = timed_invoke(app, event)
    assert status_of(down) == (503, "unhealthy"), down.payload
    bound = CONNECT_TIMEOUT_S + LOADED_MARGIN_S
    assert took < bound < app.spec.timeout_s, f"503 took {took:.2f} s (bound {bound} s)"

    pg.start()
    back, took = timed_invoke(app, event)
    assert status_of(back) == (200, "healthy"), back.payload
    assert back.init_duration_ms is None, "recovery needed a cold start (INIT REPORT seen)"
    assert app.process.poll() is None, "the execution environment died"

    pg.restart()  # between two invocations: the kept socket is dead, one reconnect hides it
    again = app.invoke(event)
    assert status_of(again) == (200, "healthy"), f"a restart between invocations gave {again.payload}"
    assert again.init_duration_ms is None


def test_connections_exhausted_health_db_503_then_recovers_warm(postgres, start_function):
    """Connections exhausted (max_connections filled by idle sessions, the function's own backend gone): /api/health/db answers 503 at once; when one slot frees the same warm environment answers 200."""  # noqa: E501
    pg = postgres(max_connections=6)
    app = start_function(
        "HealthDbFunction", DATABASE_URL=pg.url, DB_CONNECT_TIMEOUT_S=str(CONNECT_TIMEOUT_S), **FRESH_CHECKS
    )
    event = load_event("health-db")
    assert status_of(app.invoke(event))[0] == 200
    idle: list[psycopg.Connection] = []
    try:
        while True:  # fill every free slot
            try:
                idle.append(psycopg.connect(pg.url, autocommit=True, connect_timeout=2))
            except psycopg.OperationalError as exc:
                assert "too many clients" in str(exc), exc
                break
        assert len(idle) == 5, f"expected 5 free slots besides the function's, filled {len(idle)}"
        # The function's backend dies (e.g. idle timeout); take its slot as soon as it frees.
        pids = (
            idle[0]
            .execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'parel-monitoring:HealthDbFunction'")
            .fetchall()
        )
        assert len(pids) == 1, f"the function's backend in pg_stat_activity: {pids}"
        ((pid,),) = pids
        idle[0].execute("SELECT pg_terminate_backend(%s)", (pid,))

        def take_the_freed_slot() -> bool:
            try:
                idle.append(psycopg.connect(pg.url, autocommit=True, connect_timeout=2))
            except psycopg.OperationalError:
                return False
            return True

        wait_until(take_the_freed_slot, "the terminated backend's slot to free")

        full, took = timed_invoke(app, event)
        assert status_of(full) == (503, "unhealthy"), full.payload
        assert took < CONNECT_TIMEOUT_S + LOADED_MARGIN_S < app.spec.timeout_s, f"503 took {took:.2f} s (server full)"

        # One slot frees: closing is asynchronous on the server, so wait until the backend has gone.
        backends = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        before = idle[0].execute(backends).fetchone()[0]
        idle.pop().close()
        wait_until(lambda: idle[0].execute(backends).fetchone()[0] < before, "the closed connection's backend to exit")
        back, took = timed_invoke(app, event)
        assert status_of(back)[0] == 200, back.payload
        assert back.init_duration_ms is None, "recovery needed a cold start"
    finally:
        for conn in idle:
            conn.close()


def test_postgres_stopped_heal_fails_db_routines_and_still_requeues_jobs(postgres, heal_env, prefix):
    """PostgreSQL stopped during a heal run: sessions and orphans are reported failed within the connect timeout, the Redis routine still requeues the stuck jobs, and after restart the same warm Database heals the rest."""  # noqa: E501
    pg = postgres()
    seed_sessions(pg.url, expired=3, live=2)
    crashed = crash_worker(prefix, REDIS_URL, count=2)
    settings = heal_env(pg.url, REDIS_URL, prefix)
    database, client = Database(settings.database), get_redis(settings.redis)
    try:
        database.run(lambda conn: conn.execute("SELECT 1"))  # warm: a connection kept from an earlier invocation
        pg.stop()
        started = time.monotonic()
        down = run_all(settings, database, client, HealOptions(), Budget())
        took = time.monotonic() - started
        summary = {name: (detail["status"], detail["error"]) for name, detail in down["routines"].items()}
        assert down["status"] == "failed", summary
        assert down["routines"]["sessions"]["status"] == "failed", summary
        assert down["routines"]["orphans"]["status"] == "failed", summary
        assert down["routines"]["jobs"]["status"] == "ok" and down["stuckJobs"] == 2, summary
        # sessions, orphans and the run lock each try one connect: bounded by three connect timeouts
        assert took < 3 * CONNECT_TIMEOUT_S + LOADED_MARGIN_S, f"the failed run took {took:.2f} s"

        pg.start()
        back = run_all(settings, database, client, HealOptions(), Budget())
        assert back["status"] == "ok", back["routines"]
        assert (back["staleSessions"], back["stuckJobs"]) == (3, 0)
        assert {row[0] for row in session_rows(pg.url).values()} == {"s-00000-l", "s-00001-l"}
        counts = node_counts(prefix, QUEUE)
        assert (counts["active"], counts["waiting"]) == (0, len(crashed)), counts
    finally:
        database.close()


def test_lock_held_by_another_session_heal_batch_hits_statement_timeout(database_url, heal_env, prefix):
    """A lock held by another session makes the heal batch wait: the sessions routine fails with a statement timeout (bounded by DB_STATEMENT_TIMEOUT_MS), the jobs routine still runs, and once the lock is released the next run deletes the expired sessions."""  # noqa: E501
    seed_sessions(database_url, expired=3, live=1)
    crash_worker(prefix, REDIS_URL, count=1)
    settings = heal_env(database_url, REDIS_URL, prefix, DB_STATEMENT_TIMEOUT_MS="500")
    database, client = Database(settings.database), get_redis(settings.redis)
    holder = psycopg.connect(database_url)
    try:
        holder.execute("""LOCK TABLE "Session" IN ACCESS EXCLUSIVE MODE""")  # transaction stays open
        started = time.monotonic()
        blocked = run_all(settings, database, client, HealOptions(), Budget())
        took = time.monotonic() - started
        sessions = blocked["routines"]["sessions"]
        assert sessions["status"] == "failed" and "statement timeout" in (sessions["error"] or ""), sessions
        assert blocked["routines"]["jobs"]["status"] == "ok" and blocked["stuckJobs"] == 1, blocked["routines"]
        # the lock is held until the test releases it: only the statement timeouts (0.5 s per waiting statement,
        # a few statements) end the run
        assert took < 2 + LOADED_MARGIN_S, f"the blocked run took {took:.2f} s (statement timeout 0.5 s)"
        assert len(session_rows_nolock(holder)) == 4, "a blocked batch changed rows"
        holder.rollback()

        back = run_all(settings, database, client, HealOptions(), Budget())
        assert back["status"] == "ok" and back["staleSessions"] == 3, back["routines"]
    finally:
        holder.close()
        database.close()


def session_rows_nolock(conn: psycopg.Connection) -> list:
    return conn.execute("""SELECT "sessionToken" FROM "Session\"""").fetchall()


def test_heal_interrupted_mid_batch_leaves_consistent_rows_and_next_run_finishes(postgres, heal_env, prefix):
    """PostgreSQL stopped after two committed heal batches: the run reports the sessions routine failed, every remaining row is intact, only expired rows were deleted, live rows are untouched, and the next run (same warm Database, after restart) deletes the rest."""  # noqa: E501
    pg = postgres()
    seed_sessions(pg.url, expired=3000, live=400)
    before = session_rows(pg.url)
    live = {sid: row for sid, row in before.items() if sid.endswith("-l")}
    settings = heal_env(pg.url, REDIS_URL, prefix, SESSION_BATCH_SIZE="500")
    database, client = Database(settings.database), get_redis(settings.redis)

    calls = []

    class StopAfterTwoBatches(Budget):
        def exhausted(self) -> bool:
            calls.append(time.monotonic())
            if len(calls) == 4:  # 1: run_all before the routine, 2-3: before batches 1-2, 4: before batch 3
                pg.stop()
            return False

    try:
        interrupted = run_all(settings, database, client, HealOptions(routines=("sessions",)), StopAfterTwoBatches())
        sessions = interrupted["routines"]["sessions"]
        assert sessions["status"] == "failed" and interrupted["status"] == "failed", sessions

        pg.start()
        after = session_rows(pg.url)
        deleted = set(before) - set(after)
        assert set(after) <= set(before), "rows appeared"
        assert all(after[sid] == before[sid] for sid in after), "a remaining row was changed (partial write)"
        assert {sid: after.get(sid) for sid in live} == live, "a live session was deleted or changed"
        assert all(sid.endswith("-x") for sid in deleted), "a non-expired row was deleted"
        assert 0 < len(deleted) < 3000, f"expected the committed batches only, {len(deleted)} of 3000 deleted"

        finished = run_all(settings, database, client, HealOptions(routines=("sessions",)), Budget())
        assert finished["status"] == "ok", finished["routines"]
        assert finished["staleSessions"] == 3000 - len(deleted), (finished["staleSessions"], len(deleted))
        assert session_rows(pg.url) == live
    finally:
        database.close()


# --------------------------------------------------------------------------- Redis


def test_redis_stopped_health_queue_503_then_recovers_warm(redis_server, start_function, prefix):
    """Redis stopped during health checks: /api/health/queue answers 503 within connect + socket timeout (plus a loaded machine's margin, under the function timeout); after restart the same warm environment answers 200 (the client reconnects, no cold start), also when Redis restarts between two invocations."""  # noqa: E501
    rd = redis_server()
    app = start_function(
        "HealthQueueFunction", REDIS_URL=rd.url, QUEUE_NAMES=QUEUE, BULLMQ_PREFIX=prefix, HIGH_PRIORITY_QUEUE=QUEUE,
        REDIS_CONNECT_TIMEOUT_S="1", REDIS_SOCKET_TIMEOUT_S="2", **FRESH_CHECKS,
    )  # fmt: skip
    event = load_event("health-queue")
    first = app.invoke(event)
    assert status_of(first)[0] == 200, first.payload

    rd.stop()
    down, took = timed_invoke(app, event)
    assert status_of(down) == (503, "unhealthy"), down.payload
    assert took < 1 + 2 + LOADED_MARGIN_S < app.spec.timeout_s, f"503 took {took:.2f} s"

    rd.start()
    back, took = timed_invoke(app, event)
    assert status_of(back)[0] == 200, back.payload
    assert back.init_duration_ms is None, "recovery needed a cold start"

    rd.restart()  # between two invocations: the pooled socket is dead, one retry hides it
    again = app.invoke(event)
    assert status_of(again)[0] == 200, f"a restart between invocations gave {again.payload}"
    assert again.init_duration_ms is None


def test_redis_restart_requeued_jobs_neither_lost_nor_duplicated(redis_server, prefix, monkeypatch):
    """Redis killed (AOF, fsync always) with a crashed worker's jobs active: heal fails fast while it is down, requeues every job once it is back, the requeue survives another kill, and a fresh bullmq worker completes each job exactly once."""  # noqa: E501
    rd = redis_server(persistent=True)
    crashed = crash_worker(prefix, rd.url, count=5)
    for name, value in {"BULLMQ_PREFIX": prefix, "QUEUE_NAMES": QUEUE, "HIGH_PRIORITY_QUEUE": QUEUE,
                        "STUCK_JOB_THRESHOLD_MS": "0"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    settings = StuckJobSettings.from_env()
    client = get_redis(RedisSettings(rd.url, 1.0, 2.0))
    assert client.ping()  # a warm client with a pooled connection

    rd.stop()
    started = time.monotonic()
    with pytest.raises(Exception) as failure:
        heal_stuck_jobs(client, settings, Budget())
    took = time.monotonic() - started
    assert "Connection" in type(failure.value).__name__, repr(failure.value)
    assert took < 1 + 2 + LOADED_MARGIN_S, f"heal against a dead Redis took {took:.2f} s"

    rd.start()
    assert node_counts(prefix, QUEUE, rd.url)["active"] == 5, "the AOF lost the active jobs"
    healed = heal_stuck_jobs(client, settings, Budget())
    assert healed["count"] == 5, healed
    rd.restart()  # the requeue itself must be durable
    counts = node_counts(prefix, QUEUE, rd.url)
    assert (counts["active"], counts["waiting"]) == (0, 5), counts

    worked = run_scenario("work", prefix, QUEUE, rd.url, seconds=2)
    assert sorted(worked["completed"]) == crashed, f"completed {worked['completed']} vs crashed {crashed}"
    assert worked["failed"] == [] and worked["stalled"] == [], worked
    counts = node_counts(prefix, QUEUE, rd.url)
    assert (counts["completed"], counts["active"], counts["waiting"], counts["failed"]) == (5, 0, 0, 0), counts


# --------------------------------------------------------------------------- webhooks

ALERT = Alert(
    severity="CRITICAL",
    title="Database Connection Lost",
    message="PostgreSQL connection failed",
    metadata={},
    timestamp="2025-10-13T16:00:00.000Z",
    correlation_id="corr-faults",
    source="parel-monitoring-test",
    suppressed=0,
)


class BadWebhook:
    """A TCP server that reads a request then hangs, resets the connection, or answers garbage."""

    def __init__(self, mode: str) -> None:
        self.mode, self.release, self.requests = mode, threading.Event(), 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/services/T1/B1/SecretPart"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(65536)
            except OSError:
                return
            self.requests += 1
            if self.mode == "hang":
                self.release.wait(10)
            elif self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            else:
                conn.sendall(b"\x00\xffNOT-HTTP garbage\r\n\r\n")

    def close(self) -> None:
        self.release.set()
        self.sock.close()


@pytest.mark.parametrize("mode", ["hang", "reset", "garbage"])
def test_bad_webhook_does_not_cost_the_healthy_channel_its_alert(mode):
    """A Slack webhook that hangs, resets the connection or answers garbage: the alert still reaches Discord exactly once, Slack is reported undelivered with a reason, and fan-out returns by its deadline (plus a loaded machine's margin, well before the hung server's 10 s)."""  # noqa: E501
    bad = BadWebhook(mode)
    good = HTTPServer(host="127.0.0.1")
    good.start()
    try:
        good.expect_request("/api/webhooks/1/token").respond_with_data("", status=204)
        channels = [Channel("slack", bad.url), Channel("discord", good.url_for("/api/webhooks/1/token"))]
        settings = DeliverySettings(connect_timeout_s=0.5, read_timeout_s=0.5, max_attempts=3, backoff_base_s=0.05)
        started = time.monotonic()
        slack, discord = fan_out(ALERT, channels, started + 2.0, settings)
        took = time.monotonic() - started
        assert discord.delivered and discord.attempts == 1 and len(good.log) == 1, discord.to_dict()
        assert not slack.delivered and slack.error and bad.requests >= 1, slack.to_dict()
        assert slack.attempts == settings.max_attempts, f"retried within the deadline: {slack.to_dict()}"
        expected = {"hang": "read timeout", "reset": "connection reset", "garbage": "network error"}[mode]
        assert expected in slack.error, slack.to_dict()
        assert "SecretPart" not in json.dumps(slack.to_dict())
        assert took < 2.0 + LOADED_MARGIN_S / 2, f"fan-out took {took:.2f} s ({mode}: {slack.to_dict()})"
    finally:
        bad.close()
        good.clear()
        good.stop()
