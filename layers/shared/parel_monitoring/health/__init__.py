"""Health checks shared by the health routes and the scheduled sweep.

Every check returns a full document (``status`` plus its figures). :func:`log_checks` writes the
trace of a run: one structured line per component, DEBUG when healthy, WARNING when degraded,
ERROR when unhealthy, with the full scrubbed reason (:func:`problem`), so an answer seen by an
uptime monitor can be found in the logs by its correlation ID.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
STATUS_CODES = {HEALTHY: 200, DEGRADED: 200, UNHEALTHY: 503}
# The one Redis maxmemory-policy under which Redis never deletes BullMQ's keys (BullMQ requires it).
NO_EVICTION = "noeviction"
# Kept free before Lambda's timeout to answer, log and flush once a check has given up.
ANSWER_RESERVE_S = 1.5


class OneAtATime:
    """A check run on a thread of its own and answered by a deadline, at most one per execution environment.

    A check that outlives its invocation keeps running (it holds a connection until its own timeouts end);
    until it ends, the next invocation is answered at once instead of starting a second one beside it, so an
    environment never holds more than one connection for the check.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._executor: Any = None  # its thread pool, made by the first run (no import or thread before then)
        self._running = threading.Lock()  # released by the check's own thread when it ends

    def run(
        self, check: Callable[[], dict[str, Any]], until: float, timed_out: Callable[[str], dict[str, Any]]
    ) -> dict[str, Any]:
        if not self._running.acquire(blocking=False):
            return timed_out("the previous check of this environment has not finished")

        def guarded() -> dict[str, Any]:
            try:
                return check()
            finally:
                self._running.release()

        if self._executor is None:  # only the holder of ``_running`` gets here: made once
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        future = self._executor.submit(guarded)
        budget_s = max(0.0, until - time.monotonic())
        try:
            return future.result(timeout=budget_s)
        except TimeoutError:
            return timed_out(f"no answer within {budget_s:.1f} s (the invocation's time left)")


def deadline(context: Any) -> float | None:
    """The ``time.monotonic()`` by which this invocation's checks must have answered (its remaining time
    less :data:`ANSWER_RESERVE_S`), or None without a Lambda context."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return None
    return time.monotonic() + max(0.0, remaining_ms() / 1000 - ANSWER_RESERVE_S)


def _app_problems(result: dict[str, Any]) -> list[str]:
    usage = (result.get("memory") or {}).get("system", {}).get("usagePercent")
    limit = (result.get("thresholds") or {}).get("memoryPercent")
    return [f"memory usage {usage}% above MEMORY_THRESHOLD_PCT {limit}%"] if result["status"] == UNHEALTHY else []


def _db_problems(result: dict[str, Any]) -> list[str]:
    problems = []
    query, pool = result.get("query") or {}, result.get("pool") or {}
    if query.get("healthy") is False and query.get("responseTime"):
        problems.append(f"query took {query['responseTime']} (threshold {query.get('threshold')})")
    if pool.get("healthy") is False:
        problems.append(
            f"connection usage {pool.get('usagePercent')}% ({pool.get('total')} of {pool.get('max')}; "
            f"threshold {pool.get('threshold')})"
        )
    return problems


def _queue_problems(result: dict[str, Any]) -> list[str]:
    if result.get("reasons"):  # the check's own list: one line per rule that fired
        return [str(reason) for reason in result["reasons"]]
    problems = []
    thresholds = result.get("thresholds") or {}
    lag, failure = thresholds.get("highPriorityLag") or {}, thresholds.get("failureRate") or {}
    if lag.get("current") is not None and lag["current"] >= lag["warning"]:
        problems.append(f"high-priority lag {lag['current']} (warning {lag['warning']}, critical {lag['critical']})")
    if failure.get("current") is not None and failure["current"] >= failure["warning"]:
        problems.append(
            f"failure rate {failure['current']}% (warning {failure['warning']}%, critical {failure['critical']}%)"
        )
    for key, label in (("missingQueues", "missing"), ("unreadableQueues", "unreadable"), ("pausedQueues", "paused")):
        if result.get(key):
            problems.append(f"{label} queues: {', '.join(map(str, result[key]))}")
    return problems


def _uptime_problems(result: dict[str, Any]) -> list[str]:
    from parel_monitoring.health.uptime import uptime_problems  # here: uptime imports this module

    return uptime_problems(result)


_PROBLEMS = {"app": _app_problems, "db": _db_problems, "queue": _queue_problems, "uptime": _uptime_problems}


def problem(component: str, result: dict[str, Any]) -> str | None:
    """Why ``result`` is not healthy, in full (for the log line and authorized callers); None if healthy."""
    if result["status"] == HEALTHY:
        return None
    if result.get("reason"):
        return str(result["reason"])
    found = _PROBLEMS.get(component, lambda _: [])(result)
    return "; ".join(found) or result["status"]


def log_checks(logger: Any, checks: dict[str, dict[str, Any]], **fields: Any) -> None:
    """One line per component: DEBUG healthy, WARNING degraded, ERROR unhealthy (correlation ID added by the logger)."""
    for component, result in checks.items():
        status = result["status"]
        extra = {"component": component, "status": status, **fields}
        if status == HEALTHY:
            logger.debug("Health check healthy", extra)
            continue
        extra["reason"] = problem(component, result)
        if result.get("reasonCategory"):
            extra["reasonCategory"] = result["reasonCategory"]
        if status == DEGRADED:
            logger.warning("Health check degraded", extra)
        else:
            logger.error("Health check unhealthy", None, extra)


def public_check(result: dict[str, Any]) -> dict[str, Any]:
    """What anyone may read of a check: its status, and the category of an unhealthy one's failure (the
    uptime route's: also each target's name, status and failure category)."""
    if "targets" in result:
        from parel_monitoring.health.uptime import public_uptime  # here: uptime imports this module

        return public_uptime(result)
    view: dict[str, Any] = {"status": result["status"]}
    if result.get("reasonCategory"):
        view["reason"] = result["reasonCategory"]
    return view
