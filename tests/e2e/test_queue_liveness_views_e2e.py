"""Issue 15's figures where they are read: GET /api/health in ``application/health+json`` (``bullmq:workers``,
``bullmq:oldestWaitingAge`` per queue, ``redis:memory``, ``redis:evictionPolicy``) for the admin token and
none of them anonymously; through the Lambda emulator (the built HealthFunction), real PostgreSQL, a throwaway
Redis of each test's own configuration and real Node bullmq workers.
"""

from __future__ import annotations

import json

from bullmq_scenario import run_scenario, unique_prefix
from events_loader import load_event
from live_workers import live_workers
from polling import wait_until

TOKEN = "e2e-liveness-admin-token-5c1e9a"
BEARER = {"authorization": f"Bearer {TOKEN}"}
HP = "high-priority"
GRACE_S = 1  # QUEUE_NO_WORKER_GRACE_S: the high-priority queue is stranded one second after its jobs were added


def health_json(function, correlation_id: str, **headers: str) -> tuple[int, dict]:
    invocation = function.invoke(
        load_event("health", headers={"x-correlation-id": correlation_id, "accept": "application/health+json",
                                      **headers})
    )  # fmt: skip
    assert invocation.payload["headers"]["content-type"] == "application/health+json"
    return invocation.payload["statusCode"], json.loads(invocation.payload["body"])


def by_queue(entries: list[dict]) -> dict[str, dict]:
    return {entry["componentId"]: entry for entry in entries}


def test_a_stranded_high_priority_queue_fails_and_an_evicting_redis_warns(start_function, database_url,
                                                                          throwaway_redis):  # fmt: skip
    redis_url = throwaway_redis("maxmemory 256mb", "maxmemory-policy allkeys-lru")
    prefix = unique_prefix("liveness")
    with live_workers(prefix, [HP, "default"], redis_url, count=2, names=["mailer"]) as workers:
        assert workers == {HP: 2, "default": 2}
        run_scenario("populate", prefix, HP, redis_url, waiting=3)  # jobs wait: the workers process nothing
        health = start_function(
            "HealthFunction", DATABASE_URL=database_url, REDIS_URL=redis_url, QUEUE_NAMES=f"{HP},default",
            BULLMQ_PREFIX=prefix, HIGH_PRIORITY_QUEUE=HP, ADMIN_API_TOKEN=TOKEN, HEALTH_CACHE_TTL_S="0",
            QUEUE_NO_WORKER_GRACE_S=str(GRACE_S),
        )  # fmt: skip
        code, served = health_json(health, "liveness-workers", **BEARER)
        checks = served["checks"]
        assert by_queue(checks["bullmq:workers"])[HP] | {"time": None} == {
            "componentType": "component", "componentId": HP, "observedValue": 2, "observedUnit": "workers",
            "status": "pass", "time": None}  # fmt: skip
        assert by_queue(checks["bullmq:workers"])["default"]["observedValue"] == 2
        (policy,) = checks["redis:evictionPolicy"]
        assert (policy["observedValue"], policy["status"]) == ("allkeys-lru", "warn")
        assert "noeviction" in policy["output"] and "job keys" in policy["output"]
        (memory,) = checks["redis:memory"]
        assert memory["observedUnit"] == "percent" and 0 < memory["observedValue"] < 5 and memory["status"] == "pass"
        assert code == 200 and served["status"] == "warn"  # the evicting policy: degraded, not unhealthy

    # The workers are gone; the high-priority jobs keep waiting until they are older than the grace.
    def stranded() -> tuple[int, dict] | None:
        code, served = health_json(health, "liveness-stranded", **BEARER)
        return (code, served) if code == 503 else None

    code, served = wait_until(stranded, f"the high-priority queue to be stranded past {GRACE_S} s")
    checks = served["checks"]
    workers, ages = by_queue(checks["bullmq:workers"]), by_queue(checks["bullmq:oldestWaitingAge"])
    assert (workers[HP]["observedValue"], workers[HP]["status"]) == (0, "fail")
    assert (workers["default"]["observedValue"], workers["default"]["status"]) == (0, "pass")  # nothing waits there
    assert ages[HP]["observedUnit"] == "s" and GRACE_S <= ages[HP]["observedValue"] < 60
    assert ages[HP]["status"] == "pass"  # younger than QUEUE_AGE_WARNING_S (60): the missing worker is what fails
    assert (ages["default"]["observedValue"], ages["default"]["status"]) == (0, "pass")
    assert served["status"] == "fail"

    # Anonymous: the statuses only, in the draft's shape; no figure, queue name or policy.
    code, anonymous = health_json(health, "liveness-anonymous")
    assert code == 503 and anonymous["checks"]["bullmq"] == [{"componentType": "component", "status": "fail"}]
    assert set(anonymous["checks"]) == {"app", "postgresql", "bullmq"}
    for detail in (HP, "default", "allkeys-lru", "workers", "oldestWaitingAge", "redis", prefix):
        assert detail not in json.dumps(anonymous), detail


def test_a_redis_refusing_client_list_leaves_the_worker_count_unknown_and_the_status_to_the_rest(
    start_function, database_url, throwaway_redis
):
    redis_url = throwaway_redis('rename-command CLIENT ""')  # as some hosted Redis services do
    prefix = unique_prefix("liveness-nocl")
    run_scenario("open", prefix, HP, redis_url)  # the queue exists (its meta), nothing waits
    health = start_function(
        "HealthFunction", DATABASE_URL=database_url, REDIS_URL=redis_url, QUEUE_NAMES=HP, BULLMQ_PREFIX=prefix,
        HIGH_PRIORITY_QUEUE=HP, ADMIN_API_TOKEN=TOKEN, HEALTH_CACHE_TTL_S="0",
    )  # fmt: skip
    code, served = health_json(health, "liveness-no-client-list", **BEARER)
    (workers,) = served["checks"]["bullmq:workers"]
    assert workers["observedValue"] is None and workers["status"] == "warn" and workers["output"]
    (age,) = served["checks"]["bullmq:oldestWaitingAge"]
    assert (age["observedValue"], age["status"]) == (0, "pass")
    (memory,) = served["checks"]["redis:memory"]
    assert memory["observedValue"] is None and memory["status"] == "pass"  # no maxmemory: no percentage
    (policy,) = served["checks"]["redis:evictionPolicy"]
    assert (policy["observedValue"], policy["status"]) == ("noeviction", "pass") and "output" not in policy
    assert code == 200 and served["status"] == "pass"  # an unknown count alone changes no status
