"""The sweep's metrics and the health+json checks of issue 15 computed from the real checks (check_all on real
PostgreSQL, Redis and Node bullmq queues): what the metrics leave out when the worker count is unknown, and the
paused-queue exception of the no-worker rule, the same in the check, in health+json and for the page."""

from __future__ import annotations

import pytest

from bullmq_scenario import run_scenario
from parel_monitoring import scrub
from parel_monitoring.bullmq import get_redis
from parel_monitoring.health.aggregate import AggregateHealthSettings, check_all, to_health_json
from parel_monitoring.metrics import health_data

HP = "high-priority"


@pytest.fixture
def sweep(monkeypatch, database_url):
    """``sweep(redis_url, prefix, **env)`` -> check_all's result with only those settings (plus the database)."""
    monkeypatch.setattr(scrub, "_known_secrets", set(scrub._known_secrets))

    def run(redis_url: str, prefix: str, **env: str) -> dict:
        for name, value in {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "BULLMQ_PREFIX": prefix,
                            "QUEUE_NAMES": HP, "HIGH_PRIORITY_QUEUE": HP, **env}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        settings = AggregateHealthSettings.from_env()
        try:
            return check_all(settings)
        finally:
            get_redis(settings.queue.redis).close()

    return run


def metrics(result: dict) -> dict[tuple[str, str | None], float]:
    return {(name, dict(dims).get("Queue")): value for name, _, value, dims in health_data(result)}


def entry(document: dict, check: str) -> dict:
    (found,) = [e for e in document["checks"][check] if e.get("componentId", HP) == HP]
    return found


def test_an_unknown_worker_count_is_no_metric_and_a_warning_entry(sweep, throwaway_redis, prefix):
    redis_url = throwaway_redis('rename-command CLIENT ""')
    run_scenario("add-aged", prefix, HP, redis_url, ages="30")
    result = sweep(redis_url, prefix)
    queue = result["checks"]["queue"]
    assert queue["queues"][0]["workers"] is None and queue["status"] == "healthy"
    emitted = metrics(result)
    assert ("QueueWorkers", HP) not in emitted  # unknown is no data, never 0 (the no-worker alarm stays quiet)
    assert 29 <= emitted[("QueueOldestWaitingAgeSeconds", HP)] < 90  # 30 s plus the time to get here
    assert emitted[("RedisEvictionPolicyUnsafe", None)] == 0  # noeviction, Redis's default
    assert ("RedisMemoryUsagePercent", None) not in emitted  # no maxmemory: no percentage
    workers = entry(to_health_json(result, HP), "bullmq:workers")
    assert workers["observedValue"] is None and workers["status"] == "warn"
    assert workers["output"] == queue["queues"][0]["workersError"]


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_the_no_worker_rule_leaves_a_paused_queue_to_the_pause(sweep, prefix, bullmq_major, paused):
    """Two minutes old jobs, no worker: stranded (503) unless the queue is paused, which the pause rule reports
    (degraded); health+json's workers entry says the same; the age entry warns either way (>= 60 s)."""
    run_scenario("add-aged", prefix, HP, ages="120,5")
    if paused:
        run_scenario("pause", prefix, HP)
    result = sweep("redis://127.0.0.1:6379/0", prefix)
    queue = result["checks"]["queue"]
    assert queue["status"] == ("degraded" if paused else "unhealthy"), queue["reasons"]
    document = to_health_json(result, HP)
    workers, age = entry(document, "bullmq:workers"), entry(document, "bullmq:oldestWaitingAge")
    assert (workers["observedValue"], workers["status"]) == (0, "pass" if paused else "fail")
    assert age["status"] == "warn" and 119 <= age["observedValue"] < 180  # 120 s plus the scenario's own time
    assert document["status"] == ("warn" if paused else "fail")
    emitted = metrics(result)
    assert emitted[("QueueWorkers", HP)] == 0 and emitted[("QueueOldestWaitingAgeSeconds", HP)] == age["observedValue"]
