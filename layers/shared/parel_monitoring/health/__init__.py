"""Health checks shared by the health routes (and, later, the scheduled sweep)."""

from __future__ import annotations

from typing import Any

from parel_monitoring.http import NO_STORE, json_response

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
STATUS_CODES = {HEALTHY: 200, DEGRADED: 200, UNHEALTHY: 503}


def health_response(result: dict[str, Any]) -> dict[str, Any]:
    """healthy/degraded -> 200, unhealthy -> 503; never cached."""
    return json_response(STATUS_CODES[result["status"]], result, NO_STORE)
