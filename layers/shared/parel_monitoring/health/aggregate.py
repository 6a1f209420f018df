"""GET /api/health: the three checks together, the worst status overall.

Answers in the seed's JSON by default, or in the IETF health-check draft format
(``application/health+json``: pass/warn/fail, ``checks`` keyed ``component:measurement``
with ``observedValue``/``observedUnit``/``time``) when the client asks for it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from parel_monitoring import __version__
from parel_monitoring.bullmq import get_redis
from parel_monitoring.clock import utc_now_iso
from parel_monitoring.db import get_database
from parel_monitoring.health import DEGRADED, HEALTHY, STATUS_CODES, UNHEALTHY
from parel_monitoring.health.app import AppHealthSettings, check_app_health
from parel_monitoring.health.db import DbHealthSettings, check_db_health
from parel_monitoring.health.queue import QueueHealthSettings, check_queue_health
from parel_monitoring.http import NO_STORE, json_response

HEALTH_JSON = "application/health+json"
_SEVERITY = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
_IETF_STATUS = {HEALTHY: "pass", DEGRADED: "warn", UNHEALTHY: "fail"}
# The db and queue checks wait on the network: run them side by side.
_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="health")


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
    db = _executor.submit(check_db_health, settings.db, get_database(settings.db.database))
    queue = _executor.submit(check_queue_health, settings.queue, get_redis(settings.queue.redis))
    checks = {"app": check_app_health(settings.app, context, cold_start), "db": db.result(), "queue": queue.result()}
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


def aggregate_response(result: dict[str, Any], accept: str | None) -> dict[str, Any]:
    status_code = STATUS_CODES[result["status"]]
    if accept and HEALTH_JSON in accept.lower():
        return json_response(status_code, to_health_json(result), {**NO_STORE, "content-type": HEALTH_JSON})
    return json_response(status_code, result, NO_STORE)
