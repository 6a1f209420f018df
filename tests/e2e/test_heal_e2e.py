"""HealFunction through the Lambda emulator: the admin route and the schedule, one code path."""

import json

import psycopg
import pytest

from bullmq_scenario import REDIS_URL, node_counts, run_scenario, wait_locks_expired
from events_loader import load_event
from nextauth_schema import create_prisma_schema
from parel_monitoring.heal.run import LOCK_KEY

QUEUE = "mail"


@pytest.fixture
def rotten_database(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'a@example.com', now())""")
        conn.execute(
            """INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt") VALUES
               ('old', 'u1', now() - interval '1 day', now()), ('live', 'u1', now() + interval '1 day', now()),
               ('orphan', 'deleted-user', now() + interval '1 day', now())"""
        )
    return database_url


def start_heal(start_function, database_url, prefix, **env):
    """HealFunction on this test's database and BullMQ prefix, alerts only logged."""
    return start_function(
        "HealFunction",
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        QUEUE_NAMES=QUEUE,
        HIGH_PRIORITY_QUEUE=QUEUE,
        BULLMQ_PREFIX=prefix,
        ALERT_TOPIC_ARN="",
        **env,
    )


@pytest.fixture
def heal_function(start_function, rotten_database, prefix):
    return start_heal(start_function, rotten_database, prefix)


@pytest.fixture
def jobs_heal_function(start_function, database_url, prefix):
    """HealFunction for the stuck-job routine: any active job whose lock expired counts as stuck."""
    return start_heal(start_function, database_url, prefix, STUCK_JOB_THRESHOLD_MS="0")


def heal_jobs_event():
    return load_event("heal-api", queryStringParameters={"routines": "jobs"}, rawQueryString="routines=jobs")


def crash_worker(redis_client, prefix, count):
    """Job ids a SIGKILLed worker (of the test's bullmq major) left active, once their locks have expired."""
    crashed = run_scenario(
        "crash-active", prefix, QUEUE, count=count, lock_duration=500, kill="SIGKILL", allowed_returncodes=(-9,)
    )["ids"]
    assert len(crashed) == count
    wait_locks_expired(redis_client, prefix, QUEUE, crashed)
    return crashed


def body(result):
    return json.loads(result.payload["body"])


def test_admin_route_heals_and_answers_the_seed_shape(heal_function):
    result = heal_function.invoke(load_event("heal-api"))
    assert result.payload["statusCode"] == 200
    assert result.payload["headers"]["x-correlation-id"] == "demo-heal-0001"
    summary = body(result)
    assert {"staleSessions", "stuckJobs", "orphanedRecords", "duration"} <= set(summary)
    assert (summary["staleSessions"], summary["orphanedRecords"], summary["stuckJobs"]) == (1, 1, 0)
    assert summary["correlationId"] == "demo-heal-0001"


def test_bad_options_are_a_400_and_change_nothing(heal_function, rotten_database):
    event = load_event("heal-api", queryStringParameters={"dryRun": "maybe"}, rawQueryString="dryRun=maybe")
    result = heal_function.invoke(event)
    assert result.payload["statusCode"] == 400
    assert body(result)["parameter"] == "dryRun" and body(result)["correlationId"] == "demo-heal-0001"
    with psycopg.connect(rotten_database) as conn:
        assert conn.execute('SELECT count(*) FROM "Session"').fetchone() == (3,)


def test_schedule_runs_the_same_path_and_a_redelivery_heals_nothing_twice(heal_function):
    first = heal_function.invoke(load_event("heal-schedule")).payload
    assert (first["staleSessions"], first["orphanedRecords"]) == (1, 1)
    assert first["correlationId"] == load_event("heal-schedule")["id"]
    second = heal_function.invoke(load_event("heal-schedule")).payload
    assert (second["staleSessions"], second["stuckJobs"], second["orphanedRecords"]) == (0, 0, 0)


def test_a_run_in_progress_means_409_on_the_api_and_a_clean_skip_on_the_schedule(heal_function, rotten_database):
    with psycopg.connect(rotten_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        api = heal_function.invoke(load_event("heal-api"))
        scheduled = heal_function.invoke(load_event("heal-schedule"))
    assert api.payload["statusCode"] == 409 and body(api)["error"] == "conflict"
    assert scheduled.payload == {"skipped": "another heal run is in progress"}


def test_unknown_trigger_is_rejected_without_a_retry(heal_function):
    result = heal_function.invoke({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]})
    assert result.payload == {"rejected": "unsupported trigger"}


def test_dry_run_through_the_api(heal_function, rotten_database):
    event = load_event("heal-api", queryStringParameters={"dryRun": "true"}, rawQueryString="dryRun=true")
    summary = body(heal_function.invoke(event))
    assert summary["dryRun"] is True and summary["staleSessions"] == 1
    with psycopg.connect(rotten_database) as conn:
        assert conn.execute('SELECT count(*) FROM "Session"').fetchone() == (3,)


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_crashed_workers_jobs_are_requeued_by_the_admin_route_and_completed_once(
    jobs_heal_function, redis_client, prefix, bullmq_major, paused
):
    crashed = crash_worker(redis_client, prefix, count=3)
    if paused:
        run_scenario("pause", prefix, QUEUE)

    result = jobs_heal_function.invoke(heal_jobs_event())

    assert result.payload["statusCode"] == 200
    summary = body(result)
    assert (summary["status"], summary["stuckJobs"]) == ("ok", 3)
    jobs = summary["routines"]["jobs"]
    assert jobs["queues"][QUEUE] == {
        "requeued": 3, "longRunning": 0, "failedNext": 0, "skipped": None, "bullmqLayout": bullmq_major
    }  # fmt: skip
    assert sorted(jobs["requeuedJobs"]) == sorted(f"{QUEUE}:{job_id}" for job_id in crashed) and jobs["skipped"] == []
    ready = "paused" if paused and bullmq_major == 5 else "waiting"  # bullmq 6 keeps them in `wait`, paused or not
    assert node_counts(prefix, QUEUE) == {**dict.fromkeys(node_counts(prefix, "none"), 0), ready: 3}
    if paused:
        assert run_scenario("work", prefix, QUEUE, seconds=0.5)["completed"] == []  # nothing runs while paused
        run_scenario("resume", prefix, QUEUE)
    worked = run_scenario("work", prefix, QUEUE, seconds=1)
    assert sorted(worked["completed"], key=int) == sorted(crashed, key=int)  # each exactly once
    assert worked["failed"] == [] and worked["stalled"] == []
    assert node_counts(prefix, QUEUE)["completed"] == 3

    again = body(jobs_heal_function.invoke(heal_jobs_event()))
    assert (again["status"], again["stuckJobs"]) == ("ok", 0)


def test_a_queue_of_an_unknown_major_is_left_alone_and_the_run_is_incomplete(
    jobs_heal_function, redis_client, prefix, bullmq_major
):
    crashed = crash_worker(redis_client, prefix, count=1)
    redis_client.hset(f"{prefix}:{QUEUE}:meta", "version", "bullmq:7.0.0")

    result = jobs_heal_function.invoke(heal_jobs_event())

    assert result.payload["statusCode"] == 200  # nothing failed; the body says what was left alone
    summary = body(result)
    assert (summary["status"], summary["stuckJobs"]) == ("incomplete", 0)
    jobs = summary["routines"]["jobs"]
    reason = "version bullmq:7.0.0 is neither BullMQ 5 nor 6"
    assert jobs["status"] == "incomplete" and jobs["skipped"] == [f"{QUEUE}: {reason}"]
    assert jobs["queues"][QUEUE]["skipped"] == reason
    assert redis_client.lrange(f"{prefix}:{QUEUE}:active", 0, -1) == [crashed[0].encode()]
