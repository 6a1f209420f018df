"""HealFunction through the Lambda emulator: the admin route and the schedule, one code path."""

import json

import psycopg
import pytest

from bullmq_scenario import REDIS_URL, cleanup, unique_prefix
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


@pytest.fixture
def heal_function(start_function, rotten_database):
    prefix = unique_prefix("heal-e2e")
    emulator = start_function(
        "HealFunction",
        DATABASE_URL=rotten_database,
        REDIS_URL=REDIS_URL,
        QUEUE_NAMES=QUEUE,
        HIGH_PRIORITY_QUEUE=QUEUE,
        BULLMQ_PREFIX=prefix,
        ALERT_TOPIC_ARN="",
    )
    yield emulator
    cleanup(prefix)


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
