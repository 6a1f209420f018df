"""Queue health: BullMQ counts per queue, failure rate and high-priority lag.

Failure rate = failed / (completed + failed), over the jobs BullMQ still retains in
its completed and failed sets (``removeOnComplete``/``removeOnFail`` trim them), across
all watched queues. Lag = the high-priority queue's jobs ready but not started
(waiting + paused + prioritized), one rule for bullmq 5 and 6: a paused queue's ready jobs
are ``paused`` under 5 and ``waiting`` under 6, and either way they are lag. A paused
high-priority queue is never healthy, whatever its lag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from parel_monitoring.bullmq import COUNT_TYPES, QueueSettings, RedisSettings, job_counts
from parel_monitoring.failures import category
from parel_monitoring.health import DEGRADED, HEALTHY, UNHEALTHY
from parel_monitoring.scrub import safe_reason
from parel_monitoring.settings import ConfigurationError, env_float, env_int


@dataclass(frozen=True)
class QueueHealthSettings:
    redis: RedisSettings
    queues: QueueSettings
    lag_warning: int
    lag_critical: int
    failure_warning_pct: float
    failure_critical_pct: float

    @classmethod
    def from_env(cls) -> QueueHealthSettings:
        settings = cls(
            redis=RedisSettings.from_env(),
            queues=QueueSettings.from_env(),
            lag_warning=env_int("QUEUE_LAG_WARNING", 50, 0),
            lag_critical=env_int("QUEUE_LAG_CRITICAL", 100, 0),
            failure_warning_pct=env_float("QUEUE_FAILURE_WARNING_PCT", 5, 0, 100),
            failure_critical_pct=env_float("QUEUE_FAILURE_CRITICAL_PCT", 10, 0, 100),
        )
        if settings.lag_critical < settings.lag_warning:
            raise ConfigurationError("QUEUE_LAG_CRITICAL", "must not be below QUEUE_LAG_WARNING")
        if settings.failure_critical_pct < settings.failure_warning_pct:
            raise ConfigurationError("QUEUE_FAILURE_CRITICAL_PCT", "must not be below QUEUE_FAILURE_WARNING_PCT")
        return settings


def _status(lag: int, failure_pct: float, settings: QueueHealthSettings) -> str:
    if lag < settings.lag_warning and failure_pct < settings.failure_warning_pct:
        return HEALTHY
    if lag < settings.lag_critical and failure_pct < settings.failure_critical_pct:
        return DEGRADED
    return UNHEALTHY


def _thresholds(settings: QueueHealthSettings) -> dict[str, Any]:
    return {
        "highPriorityLag": {"warning": settings.lag_warning, "critical": settings.lag_critical, "current": None},
        "failureRate": {
            "warning": settings.failure_warning_pct,
            "critical": settings.failure_critical_pct,
            "current": None,
        },
    }


def _unhealthy(settings: QueueHealthSettings, reason: str, reason_category: str) -> dict[str, Any]:
    return {
        "status": UNHEALTHY,
        "reason": reason,
        "reasonCategory": reason_category,
        "queues": [],
        "summary": None,
        "thresholds": _thresholds(settings),
    }


def queue_timed_out(settings: QueueHealthSettings, reason: str) -> dict[str, Any]:
    """The answer when the check has not finished by the invocation's deadline."""
    return _unhealthy(settings, reason, "timeout")


def check_queue_health(settings: QueueHealthSettings, client: redis.Redis) -> dict[str, Any]:
    queue_settings = settings.queues
    names = list(dict.fromkeys([*queue_settings.queue_names, queue_settings.high_priority_queue]))
    thresholds = _thresholds(settings)
    try:
        counts = job_counts(client, queue_settings.prefix, names)
    except redis.RedisError as exc:
        return _unhealthy(settings, safe_reason(exc), category(exc))

    queues = [{"name": name, **counts[name]} for name in names]
    completed = sum(queue["completed"] for queue in queues)
    failed = sum(queue["failed"] for queue in queues)
    failure_pct = failed / (completed + failed) * 100 if completed + failed else 0.0
    high = counts[queue_settings.high_priority_queue]
    lag = high["waiting"] + high["paused"] + high["prioritized"]
    status = _status(lag, failure_pct, settings)
    missing = [queue["name"] for queue in queues if not queue["exists"]]
    unreadable = [queue["name"] for queue in queues if not queue["readable"]]
    # A missing queue usually means a wrong name or prefix; an unreadable one keys of another layout;
    # a paused high-priority queue runs nothing, even without a backlog yet: none may look healthy.
    if status == HEALTHY and (missing or unreadable or high["isPaused"]):
        status = DEGRADED
    thresholds["highPriorityLag"]["current"] = lag
    thresholds["failureRate"]["current"] = round(failure_pct, 2)
    result: dict[str, Any] = {
        "status": status,
        "queues": queues,
        "summary": {
            "totalJobs": sum(queue[key] for queue in queues for key in COUNT_TYPES),
            "failureRate": f"{failure_pct:.2f}%",
            "failed": failed,
            "completed": completed,
        },
        "thresholds": thresholds,
    }
    if missing:
        result["missingQueues"] = missing
    if unreadable:
        result["unreadableQueues"] = unreadable
    paused = [queue["name"] for queue in queues if queue["isPaused"]]
    if paused:
        result["pausedQueues"] = paused
    return result
