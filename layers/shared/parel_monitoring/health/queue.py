"""Queue health: BullMQ counts per queue, failure rate, high-priority lag, live workers, the oldest
waiting job's age, and the Redis settings that lose jobs.

Failure rate = failed / (completed + failed), over the jobs BullMQ still retains in
its completed and failed sets (``removeOnComplete``/``removeOnFail`` trim them), across
all watched queues. Lag = the high-priority queue's jobs ready but not started
(waiting + paused + prioritized), one rule for bullmq 5 and 6: a paused queue's ready jobs
are ``paused`` under 5 and ``waiting`` under 6, and either way they are lag. A paused
high-priority queue is never healthy, whatever its lag.

Per queue ``workers`` (Node's ``getWorkersCount()``; None with ``workersError`` when ``CLIENT LIST`` is
refused) and ``oldestWaitingAgeSeconds``; a ``redis`` section from ``INFO memory``
(:func:`parel_monitoring.bullmq.queue_state`). Rules, each adding a line to ``reasons``:

* no worker: a queue whose oldest job has waited ``QUEUE_NO_WORKER_GRACE_S`` (60) while ``workers`` is 0 is
  degraded, the high-priority queue unhealthy. Not applied to a paused queue (its jobs wait for the resume,
  and the pause is its own rule) nor where the count is unknown: an unknown count never changes the status.
* oldest waiting age: the high-priority queue degraded from ``QUEUE_AGE_WARNING_S`` (60), unhealthy from
  ``QUEUE_AGE_CRITICAL_S`` (300); any other queue degraded from ``QUEUE_AGE_WARNING_S``, never unhealthy
  (the route's 503 is kept for the queue whose latency users feel).
* Redis: a ``maxmemory-policy`` other than ``noeviction`` degraded (BullMQ requires it); used memory
  degraded from ``REDIS_MEMORY_WARNING_PCT`` (80) and unhealthy from ``REDIS_MEMORY_CRITICAL_PCT`` (90) of
  ``maxmemory`` (no rule without a ``maxmemory``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from parel_monitoring.bullmq import COUNT_TYPES, QueueSettings, RedisSettings, queue_state
from parel_monitoring.failures import category
from parel_monitoring.health import DEGRADED, HEALTHY, NO_EVICTION, UNHEALTHY
from parel_monitoring.scrub import safe_reason
from parel_monitoring.settings import ConfigurationError, env_float, env_int

MAX_AGE_S = 7 * 24 * 3600  # a week: larger values are more likely milliseconds typed as seconds
_SEVERITY = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


@dataclass(frozen=True)
class QueueHealthSettings:
    redis: RedisSettings
    queues: QueueSettings
    lag_warning: int
    lag_critical: int
    failure_warning_pct: float
    failure_critical_pct: float
    no_worker_grace_s: float = 60.0
    age_warning_s: float = 60.0
    age_critical_s: float = 300.0
    memory_warning_pct: float = 80.0
    memory_critical_pct: float = 90.0

    @classmethod
    def from_env(cls) -> QueueHealthSettings:
        settings = cls(
            redis=RedisSettings.from_env(),
            queues=QueueSettings.from_env(),
            lag_warning=env_int("QUEUE_LAG_WARNING", 50, 0),
            lag_critical=env_int("QUEUE_LAG_CRITICAL", 100, 0),
            failure_warning_pct=env_float("QUEUE_FAILURE_WARNING_PCT", 5, 0, 100),
            failure_critical_pct=env_float("QUEUE_FAILURE_CRITICAL_PCT", 10, 0, 100),
            no_worker_grace_s=env_float("QUEUE_NO_WORKER_GRACE_S", 60, 0, MAX_AGE_S),
            age_warning_s=env_float("QUEUE_AGE_WARNING_S", 60, 0, MAX_AGE_S),
            age_critical_s=env_float("QUEUE_AGE_CRITICAL_S", 300, 0, MAX_AGE_S),
            memory_warning_pct=env_float("REDIS_MEMORY_WARNING_PCT", 80, 0, 100),
            memory_critical_pct=env_float("REDIS_MEMORY_CRITICAL_PCT", 90, 0, 100),
        )
        if settings.lag_critical < settings.lag_warning:
            raise ConfigurationError("QUEUE_LAG_CRITICAL", "must not be below QUEUE_LAG_WARNING")
        if settings.failure_critical_pct < settings.failure_warning_pct:
            raise ConfigurationError("QUEUE_FAILURE_CRITICAL_PCT", "must not be below QUEUE_FAILURE_WARNING_PCT")
        if settings.age_critical_s < settings.age_warning_s:
            raise ConfigurationError("QUEUE_AGE_CRITICAL_S", "must not be below QUEUE_AGE_WARNING_S")
        if settings.memory_critical_pct < settings.memory_warning_pct:
            raise ConfigurationError("REDIS_MEMORY_CRITICAL_PCT", "must not be below REDIS_MEMORY_WARNING_PCT")
        return settings


def _thresholds(settings: QueueHealthSettings) -> dict[str, Any]:
    return {
        "highPriorityLag": {"warning": settings.lag_warning, "critical": settings.lag_critical, "current": None},
        "failureRate": {
            "warning": settings.failure_warning_pct,
            "critical": settings.failure_critical_pct,
            "current": None,
        },
        "oldestWaitingAge": {"warning": settings.age_warning_s, "critical": settings.age_critical_s, "current": None},
        "redisMemory": {
            "warning": settings.memory_warning_pct,
            "critical": settings.memory_critical_pct,
            "current": None,
        },
        "noWorkerGraceSeconds": settings.no_worker_grace_s,
    }


def _no_redis() -> dict[str, Any]:
    return {"maxmemoryPolicy": None, "usedMemoryBytes": None, "maxmemoryBytes": None, "usagePercent": None}


def _unhealthy(settings: QueueHealthSettings, reason: str, reason_category: str) -> dict[str, Any]:
    return {
        "status": UNHEALTHY,
        "reason": reason,
        "reasonCategory": reason_category,
        "reasons": [reason],
        "queues": [],
        "redis": _no_redis(),
        "summary": None,
        "thresholds": _thresholds(settings),
    }


def queue_timed_out(settings: QueueHealthSettings, reason: str) -> dict[str, Any]:
    """The answer when the check has not finished by the invocation's deadline."""
    return _unhealthy(settings, reason, "timeout")


def _at_least(current: float | None, warning: float, critical: float) -> str:
    if current is None or current < warning:
        return HEALTHY
    return DEGRADED if current < critical else UNHEALTHY


def _worst(statuses: list[str]) -> str:
    return max(statuses, key=_SEVERITY.__getitem__, default=HEALTHY)


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _queue_rules(queue: dict[str, Any], high: bool, settings: QueueHealthSettings) -> list[tuple[str, str]]:
    """(status, reason) of the no-worker and age rules that fire for one queue."""
    found: list[tuple[str, str]] = []
    name, age = queue["name"], queue["oldestWaitingAgeSeconds"]
    if age is None:
        return found
    role = "high-priority queue" if high else "queue"
    if queue["workers"] == 0 and not queue["isPaused"] and age >= settings.no_worker_grace_s:
        found.append((
            UNHEALTHY if high else DEGRADED,
            f"{role} {name}: no live worker (CLIENT LIST) while its oldest job has waited {_seconds(age)} "
            f"(QUEUE_NO_WORKER_GRACE_S {_seconds(settings.no_worker_grace_s)})",
        ))  # fmt: skip
    level = _at_least(age, settings.age_warning_s, settings.age_critical_s)
    if level != HEALTHY:
        limits = f"QUEUE_AGE_WARNING_S {_seconds(settings.age_warning_s)}"
        if high:
            limits += f", QUEUE_AGE_CRITICAL_S {_seconds(settings.age_critical_s)}"
        found.append((level if high else DEGRADED, f"{role} {name}: oldest waiting job {_seconds(age)} old ({limits})"))
    return found


def _redis_rules(memory: dict[str, Any], settings: QueueHealthSettings) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    policy = memory["maxmemoryPolicy"]
    if policy is not None and policy != NO_EVICTION:
        found.append((
            DEGRADED,
            f"Redis maxmemory-policy is {policy}: BullMQ requires noeviction; under memory pressure Redis may "
            "delete job keys and locks (jobs lost or processed twice)",
        ))  # fmt: skip
    usage = memory["usagePercent"]
    level = _at_least(usage, settings.memory_warning_pct, settings.memory_critical_pct)
    if level != HEALTHY:
        found.append((
            level,
            f"Redis memory {usage}% of maxmemory ({memory['usedMemoryBytes']} of {memory['maxmemoryBytes']} bytes; "
            f"REDIS_MEMORY_WARNING_PCT {settings.memory_warning_pct:g}%, "
            f"REDIS_MEMORY_CRITICAL_PCT {settings.memory_critical_pct:g}%)",
        ))  # fmt: skip
    return found


def check_queue_health(settings: QueueHealthSettings, client: redis.Redis) -> dict[str, Any]:
    queue_settings = settings.queues
    names = list(dict.fromkeys([*queue_settings.queue_names, queue_settings.high_priority_queue]))
    thresholds = _thresholds(settings)
    try:
        state = queue_state(client, queue_settings.prefix, names, settings.redis.cluster)
    except redis.RedisError as exc:
        return _unhealthy(settings, safe_reason(exc), category(exc))

    queues = []
    for name in names:
        queue: dict[str, Any] = {"name": name, **state.queues[name]}
        queue["workers"] = state.workers[name] if state.workers is not None else None
        if state.workers is None:
            queue["workersError"] = state.workers_error
        queues.append(queue)
    completed = sum(queue["completed"] for queue in queues)
    failed = sum(queue["failed"] for queue in queues)
    failure_pct = failed / (completed + failed) * 100 if completed + failed else 0.0
    high = queues[names.index(queue_settings.high_priority_queue)]
    lag = high["waiting"] + high["paused"] + high["prioritized"]
    thresholds["highPriorityLag"]["current"] = lag
    thresholds["failureRate"]["current"] = round(failure_pct, 2)
    thresholds["oldestWaitingAge"]["current"] = high["oldestWaitingAgeSeconds"]
    thresholds["redisMemory"]["current"] = state.redis["usagePercent"]

    rules: list[tuple[str, str]] = []
    level = _at_least(lag, settings.lag_warning, settings.lag_critical)
    if level != HEALTHY:
        rules.append(
            (level, f"high-priority lag {lag} (warning {settings.lag_warning}, critical {settings.lag_critical})")
        )
    level = _at_least(failure_pct, settings.failure_warning_pct, settings.failure_critical_pct)
    if level != HEALTHY:
        rules.append((level, f"failure rate {round(failure_pct, 2)}% (warning {settings.failure_warning_pct:g}%, "
                             f"critical {settings.failure_critical_pct:g}%)"))  # fmt: skip
    # A missing queue usually means a wrong name or prefix; an unreadable one keys of another layout;
    # a paused high-priority queue runs nothing, even without a backlog yet: none may look healthy.
    missing = [queue["name"] for queue in queues if not queue["exists"]]
    unreadable = [queue["name"] for queue in queues if not queue["readable"]]
    paused = [queue["name"] for queue in queues if queue["isPaused"]]
    for label, listed in (
        ("missing", missing),
        ("unreadable", unreadable),
        ("paused", paused if high["isPaused"] else []),
    ):
        if listed:
            rules.append((DEGRADED, f"{label} queues: {', '.join(listed)}"))
    for queue in queues:
        rules += _queue_rules(queue, queue is high, settings)
    rules += _redis_rules(state.redis, settings)

    result: dict[str, Any] = {
        "status": _worst([status for status, _ in rules]),
        "reasons": [reason for _, reason in rules],
        "queues": queues,
        "redis": state.redis,
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
    if paused:
        result["pausedQueues"] = paused
    return result
