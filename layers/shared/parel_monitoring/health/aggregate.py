"""GET /api/health: the three checks together, the worst status overall.

Answers in the seed's JSON by default, or in the IETF health-check draft format
(``application/health+json``: pass/warn/fail, ``checks`` keyed ``component:measurement``
with ``observedValue``/``observedUnit``/``time``) when the client asks for it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from parel_monitoring import __version__
from parel_monitoring.bullmq import get_redis
from parel_monitoring.clock import utc_now_iso
from parel_monitoring.db import get_database
from parel_monitoring.health import (
    DEGRADED,
    HEALTHY,
    NO_EVICTION,
    UNHEALTHY,
    OneAtATime,
    deadline,
    public_check,
)
from parel_monitoring.health.app import AppHealthSettings, check_app_health
from parel_monitoring.health.db import DbHealthSettings, check_db_health
from parel_monitoring.health.queue import QueueHealthSettings, check_queue_health, queue_timed_out

HEALTH_JSON = "application/health+json"
_SEVERITY = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
_IETF_STATUS = {HEALTHY: "pass", DEGRADED: "warn", UNHEALTHY: "fail"}
# Component name and type of each check in the public health+json document.
_PUBLIC_COMPONENTS = {"app": ("app", "system"), "db": ("postgresql", "datastore"), "queue": ("bullmq", "component")}
# Why a maxmemory-policy other than noeviction is a warning.
EVICTION_WARNING = (
    "maxmemory-policy {policy}: BullMQ requires noeviction; under memory pressure Redis deletes job keys and locks "
    "(jobs lost or processed twice)"
)
# The db check waits on the network beside the queue check (each answers by the deadline).
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health")
_queue_check = OneAtATime("queue-check")


@dataclass(frozen=True)
class AggregateHealthSettings:
    app: AppHealthSettings
    db: DbHealthSettings
    queue: QueueHealthSettings

    @classmethod
    def from_env(cls) -> AggregateHealthSettings:
        return cls(AppHealthSettings.from_env(), DbHealthSettings.from_env(), QueueHealthSettings.from_env())


def worst(*statuses: str) -> str:
    return max(statuses, key=_SEVERITY.__getitem__)


def check_all(settings: AggregateHealthSettings, context: Any = None, cold_start: bool = False) -> dict[str, Any]:
    """The three checks; each answers by the invocation's deadline (see :func:`parel_monitoring.health.deadline`)."""
    until = deadline(context)
    db = _executor.submit(check_db_health, settings.db, get_database(settings.db.database), until)
    queue = partial(check_queue_health, settings.queue, get_redis(settings.queue.redis))
    app = check_app_health(settings.app, context, cold_start)
    # Bounded by the Redis timeouts too; the deadline keeps a long REDIS_SOCKET_TIMEOUT_S within the invocation.
    timed_out = partial(queue_timed_out, settings.queue)
    queue_result = queue() if until is None else _queue_check.run(queue, until, timed_out)
    checks = {"app": app, "db": db.result(), "queue": queue_result}
    return {
        "status": worst(*(check["status"] for check in checks.values())),
        "timestamp": checks["app"]["timestamp"],
        "checks": checks,
    }


def _entry(component_type: str, value: Any, unit: str, status: str, time: str, **extra: Any) -> dict[str, Any]:
    entry = {"componentType": component_type, "observedValue": value, "observedUnit": unit}
    return {**entry, "status": _IETF_STATUS[status], "time": time, **extra}


def _level(current: float, thresholds: dict[str, Any]) -> str:
    if current < thresholds["warning"]:
        return HEALTHY
    return DEGRADED if current < thresholds["critical"] else UNHEALTHY


def _liveness_checks(queue: dict[str, Any], high_priority: str | None, now: str) -> dict[str, list[dict[str, Any]]]:
    """``bullmq:workers`` and ``bullmq:oldestWaitingAge`` per queue, ``redis:memory`` and ``redis:evictionPolicy``.

    Each entry's status is its own measurement's, by the queue check's rules: workers 0 while a job has waited
    ``noWorkerGraceSeconds`` (a paused queue excepted) fails on the high-priority queue and warns on the others,
    an unknown count (``CLIENT LIST`` refused) warns with the
    reason; the oldest job's age against ``oldestWaitingAge`` (the high-priority queue: warn / fail; the others:
    warn from the warning age), 0 when no job waits; memory against ``redisMemory`` (null without a
    ``maxmemory`` limit); any policy but ``noeviction`` warns."""
    thresholds = queue["thresholds"]
    grace = thresholds.get("noWorkerGraceSeconds")
    age_limits = thresholds.get("oldestWaitingAge")
    workers, ages = [], []
    for q in queue["queues"]:
        high = q["name"] == high_priority
        age = q.get("oldestWaitingAgeSeconds")
        if "workers" in q:
            count, extra = q["workers"], {}
            if count is None:
                status, extra = DEGRADED, {"output": q.get("workersError") or "worker count unknown"}
            elif count == 0 and not q.get("isPaused") and age is not None and grace is not None and age >= grace:
                status = UNHEALTHY if high else DEGRADED
            else:
                status = HEALTHY
            workers.append(_entry("component", count, "workers", status, now, componentId=q["name"], **extra))
        if "oldestWaitingAgeSeconds" in q:
            status = HEALTHY
            if age is not None and age_limits:
                status = _level(age, age_limits) if high else (DEGRADED if age >= age_limits["warning"] else HEALTHY)
            ages.append(_entry("component", age or 0, "s", status, now, componentId=q["name"]))
    checks: dict[str, list[dict[str, Any]]] = {}
    if workers:
        checks["bullmq:workers"] = workers
    if ages:
        checks["bullmq:oldestWaitingAge"] = ages
    redis = queue.get("redis")
    if redis:
        usage, limits = redis.get("usagePercent"), thresholds.get("redisMemory")
        status = _level(usage, limits) if usage is not None and limits else HEALTHY
        checks["redis:memory"] = [_entry("datastore", usage, "percent", status, now)]
        policy = redis.get("maxmemoryPolicy")
        if policy is not None:
            extra = {} if policy == NO_EVICTION else {"output": EVICTION_WARNING.format(policy=policy)}
            status = HEALTHY if policy == NO_EVICTION else DEGRADED
            checks["redis:evictionPolicy"] = [_entry("datastore", policy, "policy", status, now, **extra)]
    return checks


def to_health_json(result: dict[str, Any], high_priority: str | None = None) -> dict[str, Any]:
    """The IETF health-check draft's shape of :func:`check_all`'s result (``high_priority``: the
    ``HIGH_PRIORITY_QUEUE``, whose worker and age entries fail rather than warn)."""
    now = utc_now_iso("seconds")
    app, db, queue = (result["checks"][name] for name in ("app", "db", "queue"))
    checks: dict[str, list[dict[str, Any]]] = {
        "uptime": [_entry("system", app["uptime"]["seconds"], "s", HEALTHY, now)],
        "memory:utilization": [
            _entry("system", float(app["memory"]["system"]["usagePercent"]), "percent", app["status"], now)
        ],
    }
    if db["pool"] is None:
        checks["postgresql:responseTime"] = [_entry("datastore", None, "ms", UNHEALTHY, now, output=db["reason"])]
    else:
        query_status = HEALTHY if db["query"]["healthy"] else DEGRADED
        pool_status = HEALTHY if db["pool"]["healthy"] else DEGRADED
        checks["postgresql:responseTime"] = [_entry("datastore", db["responseTimeMs"], "ms", query_status, now)]
        checks["postgresql:connections"] = [
            _entry("datastore", float(db["pool"]["usagePercent"]), "percent", pool_status, now)
        ]
    if queue["summary"] is None:
        checks["bullmq:failureRate"] = [_entry("component", None, "percent", UNHEALTHY, now, output=queue["reason"])]
    else:
        failure, lag = queue["thresholds"]["failureRate"], queue["thresholds"]["highPriorityLag"]
        checks["bullmq:failureRate"] = [
            _entry("component", failure["current"], "percent", _level(failure["current"], failure), now)
        ]
        checks["bullmq:highPriorityLag"] = [
            _entry("component", lag["current"], "jobs", _level(lag["current"], lag), now)
        ]
        checks["bullmq:waiting"] = [
            _entry("component", q["waiting"] + q["paused"] + q["prioritized"], "jobs",
                   HEALTHY if q["exists"] else DEGRADED, now, componentId=q["name"])
            for q in queue["queues"]
        ]  # fmt: skip
        checks.update(_liveness_checks(queue, high_priority, now))
    return {
        "status": _IETF_STATUS[result["status"]],
        "version": __version__.split(".")[0],
        "releaseId": __version__,
        "serviceId": "parel-monitoring",
        "description": "health of the application, PostgreSQL and BullMQ queues",
        "checks": checks,
    }


def public_result(result: dict[str, Any]) -> dict[str, Any]:
    """What anyone may read of :func:`check_all`'s result: the statuses (and failure categories)."""
    checks = {name: public_check(check) for name, check in result["checks"].items()}
    return {"status": result["status"], "checks": checks}


def public_health_json(result: dict[str, Any]) -> dict[str, Any]:
    """The IETF draft's shape of :func:`public_result`: one entry per component, no figures."""
    checks: dict[str, list[dict[str, Any]]] = {}
    for name, check in result["checks"].items():
        key, component_type = _PUBLIC_COMPONENTS[name]
        entry = {"componentType": component_type, "status": _IETF_STATUS[check["status"]]}
        if check.get("reasonCategory"):
            entry["output"] = check["reasonCategory"]
        checks[key] = [entry]
    return {"status": _IETF_STATUS[result["status"]], "checks": checks}


def aggregate_view(accept: str | None, high_priority: str | None = None) -> Any:
    """The view of GET /api/health for this ``Accept``: JSON or ``application/health+json``, full or public."""
    health_json = bool(accept and HEALTH_JSON in accept.lower())

    def view(result: dict[str, Any], details: bool, cached: bool) -> tuple[dict[str, Any], dict[str, str]]:
        if health_json:
            body = to_health_json(result, high_priority) if details else public_health_json(result)
            return body, {"content-type": HEALTH_JSON}
        return ({**result, "cached": cached} if details else public_result(result)), {}

    return view
