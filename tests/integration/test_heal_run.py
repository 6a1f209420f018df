"""runAllHealingRoutines against real PostgreSQL (NextAuth Prisma schema) and real BullMQ queues."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import psycopg
import pytest
import redis

from bullmq_scenario import REDIS_URL, node_counts, run_scenario, wait_locks_expired
from nextauth_schema import create_prisma_schema
from parel_monitoring.bullmq import get_redis
from parel_monitoring.db import Database
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.options import HealOptions
from parel_monitoring.heal.run import LOCK_KEY, HealInProgress, HealSettings, run_all
from polling import wait_until

QUEUE = "mail"
HEAL_VARIABLES = (
    "SESSION_SCHEMA", "SESSION_TABLE", "SESSION_EXPIRES_COLUMN", "ORPHAN_RULES", "SESSION_BATCH_SIZE",
    "AUTH_TABLES_SCHEMA", "VERIFICATION_TOKEN_TABLE", "VERIFICATION_TOKEN_EXPIRES_COLUMN",
)  # fmt: skip


@pytest.fixture
def configure(monkeypatch, database_url, prefix):
    def configure(**env: str) -> HealSettings:
        for name in HEAL_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        values = {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "QUEUE_NAMES": QUEUE,
            "BULLMQ_PREFIX": prefix,
            "HIGH_PRIORITY_QUEUE": QUEUE,
            "STUCK_JOB_THRESHOLD_MS": "0",
            **env,
        }
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return HealSettings.from_env()

    return configure


def seed_rot(database_url: str, prefix: str) -> dict:
    """What the app accumulates: expired sessions and tokens, orphans, a crashed worker's jobs."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_prisma_schema(conn, foreign_keys=False)  # relationMode = "prisma": orphans can arise
        conn.execute(
            """INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'a@example.com', now()),
                                                                 ('u2', 'b@example.com', now())"""
        )
        sessions = [
            ("s-expired-1", "u1", now - timedelta(days=2)),
            ("s-expired-2", "u2", now - timedelta(minutes=1)),
            ("s-live", "u1", now + timedelta(days=30)),
            ("s-orphan-live", "gone", now + timedelta(days=30)),
        ]
        conn.cursor().executemany(
            """INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt") VALUES (%s, %s, %s, now())""",
            sessions,
        )
        conn.execute(
            """INSERT INTO "VerificationToken"(identifier, token, expires) VALUES
               ('a@example.com', 'old', %s), ('b@example.com', 'fresh', %s)""",
            (now - timedelta(hours=1), now + timedelta(hours=1)),
        )
        conn.execute(
            """INSERT INTO "Account"("userId", type, provider, "providerAccountId", "updatedAt")
               VALUES ('u1', 'oauth', 'github', 'a1', now()), ('gone', 'oauth', 'github', 'a2', now())"""
        )
    crashed = run_scenario(
        "crash-active", prefix, QUEUE, count=2, lock_duration=300, kill="SIGKILL", allowed_returncodes=(-9,)
    )
    wait_locks_expired(redis.Redis.from_url(REDIS_URL), prefix, QUEUE, crashed["ids"])
    return crashed


def remaining(database_url: str, table: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        column = {"VerificationToken": "token", "Session": "sessionToken", "Account": "providerAccountId"}[table]
        return {row[0] for row in conn.execute(f'SELECT "{column}" FROM "{table}"')}  # noqa: S608 - fixed names


def heal(settings: HealSettings, options: HealOptions | None = None, budget: Budget | None = None) -> dict:
    database = Database(settings.database)
    try:
        return run_all(settings, database, get_redis(settings.redis), options or HealOptions(), budget or Budget())
    finally:
        database.close()


def test_run_all_heals_each_kind_of_rot_and_reports_the_seed_shape(configure, database_url, prefix):
    seed_rot(database_url, prefix)
    result = heal(configure())
    assert (result["staleSessions"], result["stuckJobs"], result["orphanedRecords"]) == (2, 2, 2)
    assert isinstance(result["duration"], int) and result["status"] == "ok" and result["partial"] is False
    assert result["dryRun"] is False and result["correlationId"]
    assert result["routines"]["sessions"]["verificationTokens"] == 1
    assert {detail["status"] for detail in result["routines"].values()} == {"ok"}
    assert remaining(database_url, "Session") == {"s-live"}  # the live orphan went as an orphan
    assert remaining(database_url, "Account") == {"a1"}
    assert remaining(database_url, "VerificationToken") == {"fresh"}
    counts = node_counts(prefix, QUEUE)
    assert (counts["active"], counts["waiting"]) == (0, 2)

    again = heal(configure())  # the same run delivered twice heals nothing twice
    assert (again["staleSessions"], again["stuckJobs"], again["orphanedRecords"]) == (0, 0, 0)


def test_dry_run_counts_and_changes_nothing(configure, database_url, prefix):
    seed_rot(database_url, prefix)
    before = {table: remaining(database_url, table) for table in ("Session", "Account", "VerificationToken")}
    result = heal(configure(), HealOptions(dry_run=True))
    assert (result["staleSessions"], result["stuckJobs"], result["orphanedRecords"]) == (2, 2, 2)
    assert result["dryRun"] is True
    assert {table: remaining(database_url, table) for table in before} == before
    assert node_counts(prefix, QUEUE)["active"] == 2


def test_a_subset_runs_only_those_routines(configure, database_url, prefix):
    seed_rot(database_url, prefix)
    result = heal(configure(), HealOptions(routines=("jobs",)))
    assert set(result["routines"]) == {"jobs"}
    assert (result["staleSessions"], result["stuckJobs"], result["orphanedRecords"]) == (0, 2, 0)
    assert "s-expired-1" in remaining(database_url, "Session")


def test_a_second_run_while_one_holds_the_lock_is_refused(configure, database_url, prefix):
    seed_rot(database_url, prefix)
    settings = configure()
    with psycopg.connect(database_url, autocommit=True) as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone() == (True,)
        with pytest.raises(HealInProgress):
            heal(settings)
        assert "s-expired-1" in remaining(database_url, "Session")  # nothing ran
    assert heal(settings)["staleSessions"] == 2  # the lock died with its connection


def test_parallel_runs_one_heals_the_others_are_refused(configure, database_url, prefix):
    seed_rot(database_url, prefix)
    with psycopg.connect(database_url, autocommit=True) as conn:  # enough work to overlap
        conn.execute(
            """INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt")
               SELECT 'bulk-' || g, 'u1', now() - interval '1 day', now() FROM generate_series(1, 20000) g"""
        )
    settings = configure(SESSION_BATCH_SIZE="200")
    outcomes: list[str] = []
    barrier = threading.Barrier(3)

    def attempt():
        barrier.wait()
        try:
            outcomes.append(f"ran:{heal(settings)['staleSessions']}")
        except HealInProgress:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ran = [outcome for outcome in outcomes if outcome.startswith("ran:")]
    assert sorted(outcomes).count("refused") >= 1 and len(outcomes) == 3
    assert sum(int(outcome.split(":")[1]) for outcome in ran) == 20002  # every expired session deleted once


def test_tiny_budget_is_partial_and_a_later_run_finishes(configure, database_url, prefix):
    seed_rot(database_url, prefix)
    settings = configure()
    starved = heal(settings, budget=Budget(reserve_ms=1000, total_ms=0))
    assert starved["partial"] is True and starved["status"] == "partial"
    assert {detail["status"] for detail in starved["routines"].values()} == {"skipped"}
    finished = heal(settings)
    assert (finished["staleSessions"], finished["stuckJobs"], finished["orphanedRecords"]) == (2, 2, 2)
    assert finished["partial"] is False


@pytest.fixture
def alert_inbox(monkeypatch, fake_aws):
    """moto SNS topic with an SQS queue subscribed: what the layer's alert publisher sent."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:6]}")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)

    def received() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    yield received


def test_a_failing_routine_does_not_stop_the_others_and_raises_a_critical_alert(
    configure, database_url, prefix, closed_port, alert_inbox
):
    seed_rot(database_url, prefix)
    result = heal(configure(REDIS_URL=f"redis://:hunter2pass@127.0.0.1:{closed_port}/0"))
    assert result["status"] == "failed"
    jobs = result["routines"]["jobs"]
    assert jobs["status"] == "failed" and jobs["error"].startswith("ConnectionError")
    assert "hunter2pass" not in json.dumps(result)
    assert (result["staleSessions"], result["orphanedRecords"]) == (2, 2)
    (alert,) = alert_inbox()
    assert alert["severity"] == "CRITICAL" and "jobs" in alert["title"]
    assert alert["correlationId"] == result["correlationId"]


def test_requeued_stuck_jobs_raise_a_warning(configure, database_url, prefix, alert_inbox):
    seed_rot(database_url, prefix)
    result = heal(configure(), HealOptions(routines=("jobs",)))
    (alert,) = alert_inbox()
    assert alert["severity"] == "WARNING" and str(result["stuckJobs"]) in alert["message"]


def test_the_redis_lock_refuses_a_second_run_and_is_released_after(configure, database_url, prefix):
    """HEAL_LOCK=redis: for PostgreSQL behind PgBouncer in transaction mode (no session locks)."""
    from parel_monitoring.heal.run import REDIS_LOCK_KEY

    seed_rot(database_url, prefix)
    settings = configure(HEAL_LOCK="redis", HEAL_LOCK_TTL_MS="60000")
    client = get_redis(settings.redis)
    client.set(REDIS_LOCK_KEY, "another-run", px=60_000)
    try:
        with pytest.raises(HealInProgress):
            heal(settings)
    finally:
        client.delete(REDIS_LOCK_KEY)
    assert heal(settings)["staleSessions"] == 2
    assert client.get(REDIS_LOCK_KEY) is None  # released by its holder


def test_an_api_budget_caps_the_run_below_the_function_timeout(configure, database_url, prefix):
    seed_rot(database_url, prefix)
    capped = heal(configure(), budget=Budget(reserve_ms=1000, total_ms=600_000, limit_ms=500))
    assert capped["partial"] is True and capped["staleSessions"] == 0


def test_work_a_routine_could_not_do_makes_the_run_incomplete_not_ok(configure, database_url, prefix):
    """No verification token table (and no Account table): the rest is healed, the run says what it left."""
    seed_rot(database_url, prefix)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute('DROP TABLE "VerificationToken"; DROP TABLE "Account"')
    result = heal(configure(), HealOptions(routines=("sessions", "orphans")))
    assert result["status"] == "incomplete" and result["partial"] is False
    sessions, orphans = result["routines"]["sessions"], result["routines"]["orphans"]
    assert (sessions["status"], sessions["count"], sessions["verificationTable"]) == ("incomplete", 2, None)
    assert sessions["skipped"] == [
        "verification token table VerificationToken: names no table in the database (see VERIFICATION_TOKEN_TABLE)"
    ]
    assert (orphans["status"], orphans["count"]) == ("incomplete", 1)  # the live orphan session
    assert orphans["skipped"] == ["Account.userId -> User.id: table names no table in the database"]
    assert remaining(database_url, "Session") == {"s-live"}


def waiting_statements(database_url: str, application_name: str) -> set[tuple[int, datetime]]:
    """(pid, query_start) of the statements of ``application_name`` waiting for a lock."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            """SELECT pid, query_start FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = %s AND wait_event_type = 'Lock'""",
            (application_name,),
        ).fetchall()
    return {(pid, started) for pid, started in rows}


def test_a_statement_timeout_mid_run_keeps_the_run_lock_until_the_run_ends(configure, database_url, prefix):
    """A table lock makes the sessions batch hit the statement timeout; the orphans routine then waits on the same
    table. While it waits the first run still holds the heal lock: a second run is refused (409 / logged skip)."""
    seed_rot(database_url, prefix)
    first = configure(DB_STATEMENT_TIMEOUT_MS="4000", DB_APPLICATION_NAME="heal-first")
    second = configure(DB_STATEMENT_TIMEOUT_MS="4000", DB_APPLICATION_NAME="heal-second")
    holder = psycopg.connect(database_url)
    outcome: dict = {}
    try:
        holder.execute("""LOCK TABLE "Session" IN ACCESS EXCLUSIVE MODE""")  # transaction stays open
        thread = threading.Thread(
            target=lambda: outcome.update(result=heal(first, HealOptions(routines=("sessions", "orphans"))))
        )
        thread.start()
        (sessions_batch,) = wait_until(
            lambda: waiting_statements(database_url, "heal-first"), "the sessions batch to wait"
        )
        # The sessions statement was cancelled by the statement timeout; the orphans routine waits now.
        wait_until(
            lambda: waiting_statements(database_url, "heal-first") - {sessions_batch}, "the orphans routine to wait"
        )
        with pytest.raises(HealInProgress):
            heal(second)
        holder.rollback()
        thread.join(60)
    finally:
        holder.close()
    result = outcome["result"]
    assert "statement timeout" in result["routines"]["sessions"]["error"], result["routines"]
    assert result["routines"]["orphans"]["status"] == "ok", result["routines"]
    assert heal(second)["staleSessions"] == 2  # the lock was released at the end of the first run


def test_a_run_whose_lock_connection_died_starts_no_further_routine(configure, database_url, prefix):
    """The lock lives on its own connection; if that connection ends mid-run, so does the lock, and the run
    stops starting routines (another run may hold the lock by then)."""
    seed_rot(database_url, prefix)
    settings = configure(DB_APPLICATION_NAME="heal-lost")
    holder = psycopg.connect(database_url)
    outcome: dict = {}
    try:
        holder.execute("""LOCK TABLE "Session" IN ACCESS EXCLUSIVE MODE""")
        thread = threading.Thread(
            target=lambda: outcome.update(result=heal(settings, HealOptions(routines=("sessions", "orphans"))))
        )
        thread.start()
        wait_until(lambda: waiting_statements(database_url, "heal-lost"), "the sessions routine to wait")
        with psycopg.connect(database_url, autocommit=True) as admin:
            (terminated,) = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'heal-lost:lock'"
            ).fetchone()
        assert terminated
        holder.rollback()
        thread.join(60)
    finally:
        holder.close()
    result = outcome["result"]
    assert result["routines"]["sessions"]["status"] == "ok" and result["staleSessions"] == 2, result["routines"]
    orphans = result["routines"]["orphans"]
    assert (orphans["status"], orphans["count"]) == ("skipped", 0) and "lock was lost" in orphans["error"]
    assert result["status"] == "partial"
