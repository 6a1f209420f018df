"""Database health: a ``SELECT 1`` round trip and the server's connection usage.

In a serverless deployment the meaningful pool is the database server's, so ``pool``
counts client backends in ``pg_stat_activity`` (active, idle, idle in transaction)
against ``max_connections``. The monitoring role needs ``pg_monitor`` (or
``pg_read_all_stats``): without it PostgreSQL hides other roles' ``backend_type`` and
state too, so ``pool`` would count only the role's own connection
(migrations/002_monitoring_role.sql grants it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from parel_monitoring.db import Database, DatabaseSettings, DatabaseUnavailable
from parel_monitoring.health import DEGRADED, HEALTHY, UNHEALTHY, OneAtATime
from parel_monitoring.settings import env_float

POOL_QUERY = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE state = 'active') AS active,
       count(*) FILTER (WHERE state = 'idle') AS idle,
       count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_in_transaction,
       current_setting('max_connections')::int AS max
FROM pg_stat_activity
WHERE backend_type = 'client backend'
"""


@dataclass(frozen=True)
class DbHealthSettings:
    database: DatabaseSettings
    query_threshold_ms: float
    pool_threshold_pct: float

    @classmethod
    def from_env(cls) -> DbHealthSettings:
        return cls(
            database=DatabaseSettings.from_env(),
            query_threshold_ms=env_float("DB_QUERY_THRESHOLD_MS", 1000.0, 0.0),
            pool_threshold_pct=env_float("DB_POOL_THRESHOLD_PCT", 90.0, 0.0, 100.0),
        )


def _measure(conn: Any) -> tuple[float, tuple]:
    started = time.perf_counter()
    conn.execute("SELECT 1").fetchone()
    elapsed_ms = (time.perf_counter() - started) * 1000
    return elapsed_ms, conn.execute(POOL_QUERY).fetchone()


_one_at_a_time = OneAtATime("db-check")


def _unhealthy(settings: DbHealthSettings, reason: str, reason_category: str) -> dict[str, Any]:
    return {
        "status": UNHEALTHY,
        "reason": reason,
        "reasonCategory": reason_category,
        "query": {"responseTime": None, "threshold": f"{settings.query_threshold_ms:g}ms", "healthy": False},
        "pool": None,
    }


def check_db_health(settings: DbHealthSettings, database: Database, deadline: float | None = None) -> dict[str, Any]:
    """The check; with a ``deadline`` (``time.monotonic()``), an unhealthy ``timeout`` answer once it passes
    (connect, reconnect and two statements can together outlast the Lambda timeout)."""
    if deadline is None:
        return _check(settings, database)
    return _one_at_a_time.run(
        lambda: _check(settings, database), deadline, lambda reason: _unhealthy(settings, reason, "timeout")
    )


def _check(settings: DbHealthSettings, database: Database) -> dict[str, Any]:
    threshold = f"{settings.query_threshold_ms:g}ms"
    try:
        elapsed_ms, (total, active, idle, idle_in_transaction, max_connections) = database.run(_measure)
    except DatabaseUnavailable as exc:
        return _unhealthy(settings, exc.reason, exc.category)
    usage_pct = total / max_connections * 100 if max_connections else 0.0
    query_ok = elapsed_ms < settings.query_threshold_ms
    pool_ok = usage_pct < settings.pool_threshold_pct
    return {
        "status": HEALTHY if query_ok and pool_ok else DEGRADED,
        "query": {"responseTime": f"{round(elapsed_ms)}ms", "threshold": threshold, "healthy": query_ok},
        "pool": {
            "total": total,
            "active": active,
            "idle": idle,
            "idleInTransaction": idle_in_transaction,
            "max": max_connections,
            "usagePercent": f"{usage_pct:.2f}",
            "threshold": f"{settings.pool_threshold_pct:g}%",
            "healthy": pool_ok,
        },
        "responseTimeMs": round(elapsed_ms, 3),
    }
