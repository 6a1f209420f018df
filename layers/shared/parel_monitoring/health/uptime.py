"""GET /api/health/uptime: the probe targets' results as a health document.

The probes themselves are :mod:`parel_monitoring.probe` (the same code the scheduled ProbeFunction runs);
this module only turns their per-target results into the route's document:

* ``status``: ``unhealthy`` (503) when any target is down, ``degraded`` when any is degraded, else
  ``healthy`` (also with no target configured: nothing is down);
* ``targets``: per target its ``name``, ``status`` (``up``/``degraded``/``down``), ``latencyMs``,
  ``ttfbMs``, ``certificateDaysLeft``, ``httpStatus``, failure ``category`` and full ``reason``, ``url``;
* ``summary``: how many targets are up, degraded and down.

Anonymous callers (see :mod:`parel_monitoring.health.route`) read :func:`public_uptime`: the overall
status and per target its name, status and failure category only, never a URL, figure or reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from parel_monitoring.clock import utc_now_iso
from parel_monitoring.health import DEGRADED, HEALTHY, UNHEALTHY

UP, TARGET_DEGRADED, DOWN = "up", "degraded", "down"
# What a target's result may show to the admin token (anything else a probe adds stays in the log).
TARGET_FIELDS = ("name", "url", "status", "ok", "httpStatus", "latencyMs", "ttfbMs", "certificateDaysLeft",
                 "category", "reason")  # fmt: skip


def _target_status(result: dict[str, Any]) -> str:
    status = result.get("status")
    if status in (UP, TARGET_DEGRADED, DOWN):
        return status
    return UP if result.get("ok") else DOWN


def uptime_document(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The route's full document from :func:`parel_monitoring.probe.probe_all`'s per-target results."""
    targets = []
    for result in results:
        target = {key: result.get(key) for key in TARGET_FIELDS}
        target["status"] = _target_status(result)
        targets.append(target)
    counts = {state: sum(t["status"] == state for t in targets) for state in (UP, TARGET_DEGRADED, DOWN)}
    status = UNHEALTHY if counts[DOWN] else DEGRADED if counts[TARGET_DEGRADED] else HEALTHY
    return {
        "status": status,
        "timestamp": utc_now_iso(),
        "summary": {"targets": len(targets), **counts},
        "targets": targets,
    }


def uptime_problems(result: dict[str, Any]) -> list[str]:
    """Per target that is not up: ``name status (category: reason)`` (the log line's and the token's reason)."""
    problems = []
    for target in result.get("targets") or []:
        if target.get("status") == UP:
            continue
        why = ": ".join(str(part) for part in (target.get("category"), target.get("reason")) if part)
        problems.append(f"{target.get('name')} {target.get('status')}" + (f" ({why})" if why else ""))
    return problems


def public_uptime(result: dict[str, Any]) -> dict[str, Any]:
    """What anyone may read: the overall status, per target its name, status and failure category."""
    targets = []
    for target in result.get("targets") or []:
        view = {"name": target.get("name"), "status": target.get("status")}
        if target.get("status") != UP and target.get("category"):
            view["category"] = target["category"]
        targets.append(view)
    return {"status": result["status"], "targets": targets}
