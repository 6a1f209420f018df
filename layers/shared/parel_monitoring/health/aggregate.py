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
from parel_monitoring.health import DEGRADED, HEALTHY, UNHEALTHY, OneAtATime, deadline, public_check
from parel_monitoring.health.app import AppHealthSettings, check_app_health
from parel_monitoring.health.db import DbHealthSettings, check_db_health
from parel_monitoring.health.queue import QueueHealthSettings, check_queue_health, queue_timed_out

HEALTH_JSON = "application/health+json"
_SEVERITY = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
_IETF_STATUS = {HEALTHY: "pass", DEGRADED: "warn", UNHEALTHY: "fail"}
# Component name and type of each check in the public health+json document.
_PUBLIC_COMPONENTS = {"app": ("app", "system"), "db": ("postgresql", "datastore"), "queue": ("bullmq", "component")}
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


def to_health_json(result: dict[str, Any]) -> dict[str, Any]:
    """The IETF health-check draft's shape of :func:`check_all`'s result."""
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


def aggregate_view(accept: str | None) -> Any:
    """The view of GET /api/health for this ``Accept``: JSON or ``application/health+json``, full or public."""
    health_json = bool(accept and HEALTH_JSON in accept.lower())

    def view(result: dict[str, Any], details: bool, cached: bool) -> tuple[dict[str, Any], dict[str, str]]:
        if health_json:
            body = to_health_json(result) if details else public_health_json(result)
            return body, {"content-type": HEALTH_JSON}
        return ({**result, "cached": cached} if details else public_result(result)), {}

    return view
