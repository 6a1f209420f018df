"""GET /api/health/queue through the Lambda Runtime Interface Emulator, on real BullMQ 5 and 6 queues."""

from __future__ import annotations

import json
import socket
import time

from bullmq_scenario import REDIS_URL, node_counts, run_scenario
from events_loader import load_event

COUNT_TYPES = ("waiting", "active", "completed", "failed", "delayed", "prioritized", "paused", "waiting-children")
HP = "high-priority"
# The counts are details: read here with HEALTH_SHOW_DETAILS=always (who sees what: test_health_details_e2e.py),
# and without caching where every invocation must read Redis again.
DETAILS = {"HEALTH_SHOW_DETAILS": "always"}
FRESH = {**DETAILS, "HEALTH_CACHE_TTL_S": "0"}


def body(invocation):
    return json.loads(invocation.payload["body"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_counts_with_every_seed_field(start_function, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, completed=25, failed=1, waiting=3, delayed=2, prioritized=2)
    run_scenario("populate", prefix, "default", completed=4, waiting=1)
    queue_fn = start_function(
        "HealthQueueFunction", REDIS_URL=REDIS_URL, QUEUE_NAMES=f"{HP},default", BULLMQ_PREFIX=prefix,
        HIGH_PRIORITY_QUEUE=HP, **DETAILS,
    )  # fmt: skip
    result = queue_fn.invoke(load_event("health-queue"))

    assert result.payload["statusCode"] == 200
    headers = result.payload["headers"]
    assert headers["content-type"] == "application/json" and headers["cache-control"] == "public, max-age=5"
    assert headers["x-correlation-id"] == "demo-queue-0001"
    health = body(result)
    assert health["status"] == "healthy"
    assert [queue["name"] for queue in health["queues"]] == [HP, "default"]
    for queue in health["queues"]:
        assert set(COUNT_TYPES) | {"name", "isPaused", "exists", "bullmqLayout"} <= set(queue)
        assert {key: queue[key] for key in COUNT_TYPES} == node_counts(prefix, queue["name"])
        assert queue["bullmqLayout"] == bullmq_major
    high = health["queues"][0]
    assert (high["waiting"], high["active"], high["completed"], high["failed"]) == (3, 0, 25, 1)
    # 1 failed of 30 finished = 3.33 %; 25+1+3+2+2 + 4+1 jobs
    assert health["summary"] == {"totalJobs": 38, "failureRate": "3.33%", "failed": 1, "completed": 29}
    assert health["thresholds"]["highPriorityLag"] == {"warning": 50, "critical": 100, "current": 5}
    assert health["thresholds"]["failureRate"] == {"warning": 5, "critical": 10, "current": 3.33}


def test_warm_invocations_read_fresh_counts(start_function, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, waiting=2)
    queue_fn = start_function("HealthQueueFunction", REDIS_URL=REDIS_URL, QUEUE_NAMES=HP, BULLMQ_PREFIX=prefix, **FRESH)
    first = queue_fn.invoke(load_event("health-queue"))
    run_scenario("populate", prefix, HP, waiting=58)  # lag 60: degraded, still 200
    second = queue_fn.invoke(load_event("health-queue", headers={"x-correlation-id": "demo-queue-0002"}))

    assert first.payload["statusCode"] == 200 and second.payload["statusCode"] == 200
    assert body(first)["status"] == "healthy" and body(second)["status"] == "degraded"
    assert body(first)["thresholds"]["highPriorityLag"]["current"] == 2
    assert body(second)["thresholds"]["highPriorityLag"]["current"] == 60
    assert second.payload["headers"]["x-correlation-id"] == "demo-queue-0002"
    assert first.init_duration_ms is not None and second.init_duration_ms is None  # same warm environment


def test_503_quickly_when_redis_is_down(start_function):
    url = f"redis://:s3cret-pass@127.0.0.1:{closed_port()}/0"
    queue_fn = start_function("HealthQueueFunction", REDIS_URL=url, QUEUE_NAMES=f"{HP},default", **FRESH)
    for _ in range(2):  # cold, then warm (the cached client has to fail fast again)
        started = time.perf_counter()
        result = queue_fn.invoke(load_event("health-queue"))
        elapsed = time.perf_counter() - started
        assert elapsed < 2.5, f"answered after {elapsed:.2f} s"
        assert result.payload["statusCode"] == 503
        assert result.payload["headers"]["cache-control"] == "no-store"
        health = body(result)
        assert health["status"] == "unhealthy" and health["reason"]
        assert "://" not in result.payload["body"] and "s3cret-pass" not in result.payload["body"]
        assert health["queues"] == [] and health["summary"] is None
    assert not any("s3cret-pass" in line for line in result.logs)


def test_empty_queue_names_is_a_500_naming_the_variable(start_function):
    queue_fn = start_function("HealthQueueFunction", REDIS_URL=REDIS_URL, QUEUE_NAMES="")
    result = queue_fn.invoke(load_event("health-queue"))
    assert result.payload["statusCode"] == 500
    error = body(result)
    assert error["error"] == "configuration" and error["variable"] == "QUEUE_NAMES"
    assert error["correlationId"] == "demo-queue-0001"
    assert result.payload["headers"]["x-correlation-id"] == "demo-queue-0001"


def test_a_high_priority_queue_without_workers_answers_503_and_anonymous_callers_read_only_the_status(
    start_function, prefix, bullmq_major
):
    """Issue 15: jobs waiting 2 minutes on the high-priority queue with no live worker: 503 (the no-worker rule),
    the figures and reasons for the admin token, the status alone anonymously; with a live (named) worker the
    same jobs are only old: 200 degraded, `workers` equal to Node's getWorkersCount()."""
    from live_workers import live_workers

    token = "e2e-queue-liveness-token-31f0"
    run_scenario("add-aged", prefix, HP, ages="120")
    queue_fn = start_function(
        "HealthQueueFunction", REDIS_URL=REDIS_URL, QUEUE_NAMES=HP, BULLMQ_PREFIX=prefix, HIGH_PRIORITY_QUEUE=HP,
        HEALTH_CACHE_TTL_S="0", ADMIN_API_TOKEN=token,
    )  # fmt: skip
    admin = {"authorization": f"Bearer {token}"}

    stranded = queue_fn.invoke(load_event("health-queue", headers=admin))
    anonymous = queue_fn.invoke(load_event("health-queue"))
    assert stranded.payload["statusCode"] == 503 and anonymous.payload["statusCode"] == 503
    assert body(anonymous) == {"status": "unhealthy"}
    full = body(stranded)
    high = full["queues"][0]
    assert full["status"] == "unhealthy" and high["workers"] == 0 and 119 <= high["oldestWaitingAgeSeconds"] < 180
    assert full["reasons"][0].startswith(f"high-priority queue {HP}: no live worker (CLIENT LIST)"), full["reasons"]
    assert full["redis"]["maxmemoryPolicy"] == "noeviction" and full["thresholds"]["noWorkerGraceSeconds"] == 60

    with live_workers(prefix, [HP], count=2, names=["mailer"]) as node:
        alive = queue_fn.invoke(load_event("health-queue", headers=admin))
    assert alive.payload["statusCode"] == 200
    assert body(alive)["status"] == "degraded" and body(alive)["queues"][0]["workers"] == node[HP] == 2
    assert not any("no live worker" in reason for reason in body(alive)["reasons"])
