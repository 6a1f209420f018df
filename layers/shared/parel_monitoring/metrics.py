"""CloudWatch metrics as Embedded Metric Format log lines (Powertools Metrics: no API calls).

Namespace ``ParelMonitoring``; every metric carries the dimensions ``service`` (Powertools'
POWERTOOLS_SERVICE_NAME) and ``Stage``; per-component and per-queue metrics add ``Component``
or ``Queue``. template.yaml's alarms and dashboard watch exactly these names and dimensions
(tests/e2e/test_metrics_e2e.py holds the two together).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from parel_monitoring.health import NO_EVICTION, STATUS_CODES
from parel_monitoring.settings import env_str

NAMESPACE = "ParelMonitoring"
STATUS_VALUES = {status: value for value, status in enumerate(STATUS_CODES)}  # healthy 0, degraded 1, unhealthy 2

# (name, unit, value, extra dimensions)
Datum = tuple[str, str, float, tuple[tuple[str, str], ...]]


def health_data(result: dict[str, Any]) -> list[Datum]:
    """The sweep's metrics from :func:`parel_monitoring.health.aggregate.check_all`'s result."""
    checks = result["checks"]
    data: list[Datum] = [
        ("HealthStatus", "Count", STATUS_VALUES[check["status"]], (("Component", name),))
        for name, check in checks.items()
    ]
    data.append(("MemoryUsagePercent", "Percent", float(checks["app"]["memory"]["system"]["usagePercent"]), ()))
    db = checks["db"]
    if db.get("pool"):
        data.append(("DbQueryTimeMs", "Milliseconds", db["responseTimeMs"], ()))
        data.append(("DbConnectionUsagePercent", "Percent", float(db["pool"]["usagePercent"]), ()))
    queue = checks["queue"]
    if queue.get("summary"):
        data.append(("QueueFailureRatePercent", "Percent", queue["thresholds"]["failureRate"]["current"], ()))
        data.append(("HighPriorityLag", "Count", queue["thresholds"]["highPriorityLag"]["current"], ()))
        for row in queue["queues"]:
            dimensions = (("Queue", row["name"]),)
            for name, key in (("QueueWaiting", "waiting"), ("QueueActive", "active"), ("QueueFailed", "failed")):
                data.append((name, "Count", row[key], dimensions))
            data += _queue_liveness(row, dimensions)
        data += _redis_data(queue.get("redis") or {})
    return data


def _queue_liveness(row: dict[str, Any], dimensions: tuple[tuple[str, str], ...]) -> list[Datum]:
    """``QueueWorkers`` (left out when unknown: ``CLIENT LIST`` refused) and ``QueueOldestWaitingAgeSeconds``
    (0 when no job waits, so an age alarm returns to OK when the queue drains instead of going to
    INSUFFICIENT_DATA; the no-worker alarm reads 0 as "nothing waits")."""
    data: list[Datum] = []
    if row.get("workers") is not None:
        data.append(("QueueWorkers", "Count", row["workers"], dimensions))
    if "oldestWaitingAgeSeconds" in row:
        data.append(("QueueOldestWaitingAgeSeconds", "Seconds", float(row["oldestWaitingAgeSeconds"] or 0), dimensions))
    return data


def _redis_data(redis: dict[str, Any]) -> list[Datum]:
    """``RedisMemoryUsagePercent`` (only with a ``maxmemory`` limit: without one there is no percentage) and
    ``RedisEvictionPolicyUnsafe`` (1 when ``maxmemory-policy`` is not ``noeviction``, the policy BullMQ
    requires; left out when the policy is unknown)."""
    data: list[Datum] = []
    if redis.get("usagePercent") is not None:
        data.append(("RedisMemoryUsagePercent", "Percent", float(redis["usagePercent"]), ()))
    if redis.get("maxmemoryPolicy") is not None:
        data.append(("RedisEvictionPolicyUnsafe", "Count", int(redis["maxmemoryPolicy"] != NO_EVICTION), ()))
    return data


def heal_data(result: dict[str, Any]) -> list[Datum]:
    """A heal run's metrics from :func:`parel_monitoring.heal.run.run_all`'s result."""
    failures = sum(1 for detail in result["routines"].values() if detail["status"] == "failed")
    return [
        ("StaleSessionsDeleted", "Count", result["staleSessions"], ()),
        ("StuckJobsRequeued", "Count", result["stuckJobs"], ()),
        ("OrphanedRecordsDeleted", "Count", result["orphanedRecords"], ()),
        ("HealDurationMs", "Milliseconds", result["duration"], ()),
        ("HealFailures", "Count", failures, ()),
    ]


def emit(data: list[Datum]) -> None:
    """Print the data as EMF, one document per dimension set."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    grouped: dict[tuple[tuple[str, str], ...], list[Datum]] = defaultdict(list)
    for datum in data:
        grouped[datum[3]].append(datum)
    for dimensions, group in grouped.items():
        metrics = EphemeralMetrics(namespace=NAMESPACE)
        metrics.add_dimension("Stage", env_str("STAGE", "dev"))
        for name, value in dimensions:
            metrics.add_dimension(name, value)
        for name, unit, value, _ in group:
            metrics.add_metric(name=name, unit=unit, value=value)
        metrics.flush_metrics()
