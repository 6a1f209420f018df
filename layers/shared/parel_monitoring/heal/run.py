"""runAllHealingRoutines: the three routines, isolated, one run at a time, within the time budget.

One code path for the admin route and the schedule. A run holds a PostgreSQL
advisory lock (a session lock: it dies with its connection, so a crashed run never
blocks the next); a second run while one holds it is refused (409 on the API, a
logged skip on the schedule). Each routine runs even when another failed; a failed
routine is captured to Sentry and announced as a CRITICAL alert; requeued stuck
jobs are announced as a WARNING (their workers died).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from parel_monitoring import alerts, correlation, error_tracker, metrics
from parel_monitoring.bullmq import RedisSettings
from parel_monitoring.db import Database, DatabaseSettings, DatabaseUnavailable
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.jobs import StuckJobSettings, heal_stuck_jobs
from parel_monitoring.heal.options import ROUTINES, HealOptions
from parel_monitoring.heal.orphans import OrphanSettings, clean_orphaned_records
from parel_monitoring.heal.positions import PositionStore
from parel_monitoring.heal.sessions import SessionSettings, heal_stale_sessions
from parel_monitoring.logs import create_logger
from parel_monitoring.scrub import safe_reason
from parel_monitoring.settings import env_choice, env_int

# pg_try_advisory_lock key: a fixed 64-bit number ("parel-heal" in ASCII)
LOCK_KEY = 0x70617265_6C2D6865
# A routine not started because the run's lock connection died (another run may have started since).
LOCK_LOST = "the heal run lock was lost (its connection ended); the next run continues"

# A routine that ran but left out part of what it was asked to do (a table or queue it could not find or
# classify) puts the reasons in its detail's "skipped" list; its status, and the run's unless a routine
# failed, is then INCOMPLETE (HTTP 200: the next run will not fix it by itself; the reasons say what to set).
OK, PARTIAL, INCOMPLETE, FAILED, SKIPPED = "ok", "partial", "incomplete", "failed", "skipped"


def routine_status(detail: dict[str, Any]) -> str:
    """A finished routine's status from its detail: ``partial`` (the budget ran out), ``incomplete``, ``ok``."""
    if detail.get("partial"):
        return PARTIAL
    return INCOMPLETE if detail.get("skipped") else OK


def run_status(statuses: set[str]) -> str:
    """The run's status: ``failed`` over ``incomplete`` over ``partial`` (or routines skipped) over ``ok``."""
    if FAILED in statuses:
        return FAILED
    if INCOMPLETE in statuses:
        return INCOMPLETE
    return PARTIAL if statuses & {PARTIAL, SKIPPED} else OK


@dataclass(frozen=True)
class HealSettings:
    database: DatabaseSettings
    redis: RedisSettings
    sessions: SessionSettings
    jobs: StuckJobSettings
    orphans: OrphanSettings
    reserve_ms: int = field(default=5000)
    # "postgres": a session advisory lock; "redis": SET NX PX with a token, for PostgreSQL behind
    # PgBouncer in transaction mode, where a session lock is not bound to this run's connection.
    lock: str = field(default="postgres")
    lock_ttl_ms: int = field(default=900_000)
    # An API run answers before API Gateway's 30 s integration timeout; the schedule has the function's.
    api_budget_ms: int = field(default=25_000)

    @classmethod
    def from_env(cls) -> HealSettings:
        return cls(
            database=DatabaseSettings.from_env(),
            redis=RedisSettings.from_env(),
            sessions=SessionSettings.from_env(),
            jobs=StuckJobSettings.from_env(),
            orphans=OrphanSettings.from_env(),
            reserve_ms=env_int("HEAL_TIME_RESERVE_MS", 5000, minimum=0),
            lock=env_choice("HEAL_LOCK", "postgres", ("postgres", "redis")),
            lock_ttl_ms=env_int("HEAL_LOCK_TTL_MS", 900_000, minimum=1000),
            api_budget_ms=env_int("HEAL_API_BUDGET_MS", 25_000, minimum=1000),
        )


class HealInProgress(Exception):
    """Another heal run holds the lock."""


class _RunLock:
    """One heal run at a time. A lock that cannot be reached (its store is down) is skipped with a
    warning: only the routines that do not need that store can run then, and their per-row and
    per-job checks are atomic."""

    store = ""
    unavailable: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self.held = False

    def _acquire(self) -> bool:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _RunLock:
        try:
            acquired = self._acquire()
        except self.unavailable as exc:
            reason = getattr(exc, "reason", None) or safe_reason(exc)
            create_logger("heal").warning(
                f"Heal lock unavailable ({self.store} down); running unlocked", {"reason": reason}
            )
            return self
        if not acquired:
            raise HealInProgress
        self.held = True
        return self

    def still_held(self) -> bool:
        """Whether the lock is still this run's (checked before each routine)."""
        return True

    def __exit__(self, *exc_info: Any) -> None:
        if self.held:
            with contextlib.suppress(*self.unavailable):  # gone with its connection, or expiring anyway
                self._release()


_HELD = """SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
           AND granted AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = %s)"""


class _AdvisoryLock(_RunLock):
    """A session advisory lock on a connection of its own: a statement timeout or a reconnect on the
    routines' connection cannot release it, and it dies with its connection (a crashed run's too)."""

    store, unavailable = "PostgreSQL", (DatabaseUnavailable,)

    def __init__(self, database: Database) -> None:
        super().__init__()
        self.database = database
        self.conn: psycopg.Connection | None = None

    def _statement(self, query: str) -> Any:
        assert self.conn is not None
        try:
            with self.conn.transaction():
                timeout = str(self.database.settings.statement_timeout_ms)
                self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout,))
                return self.conn.execute(query, (LOCK_KEY,)).fetchone()[0]  # type: ignore[index]
        except psycopg.Error as exc:
            raise DatabaseUnavailable.from_error(exc) from None

    def _close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None

    def _acquire(self) -> bool:
        self.conn = self.database.open_dedicated(":lock")
        try:
            acquired = bool(self._statement("SELECT pg_try_advisory_lock(%s)"))
        except DatabaseUnavailable:
            self._close()
            raise
        if not acquired:
            self._close()
        return acquired

    def _release(self) -> None:
        try:
            self._statement("SELECT pg_advisory_unlock(%s)")
        finally:
            self._close()  # ends the session, and with it the lock, whatever the unlock did

    def still_held(self) -> bool:
        try:
            return self.conn is not None and bool(self._statement(_HELD))
        except DatabaseUnavailable:
            return False  # its connection died: the server released the lock


REDIS_LOCK_KEY = "parel-monitoring:heal:lock"
_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class _RedisLock(_RunLock):
    """SET NX PX with a token: it expires with its holder."""

    store, unavailable = "Redis", (redis.RedisError,)

    def __init__(self, client: redis.Redis, ttl_ms: int) -> None:
        super().__init__()
        self.client, self.ttl_ms = client, ttl_ms
        self.token = correlation.new_id()

    def _acquire(self) -> bool:
        return bool(self.client.set(REDIS_LOCK_KEY, self.token, nx=True, px=self.ttl_ms))

    def _release(self) -> None:
        self.client.eval(_RELEASE_LUA, 1, REDIS_LOCK_KEY, self.token)


def _routine_calls(
    settings: HealSettings, database: Database, client: redis.Redis, options: HealOptions, budget: Budget
) -> dict[str, Callable[[], dict[str, Any]]]:
    positions = PositionStore(client)  # where a partial tid-range walk stopped: the next run resumes there
    return {
        "sessions": lambda: heal_stale_sessions(
            database, settings.sessions, budget, options.dry_run, positions=positions
        ),
        "jobs": lambda: heal_stuck_jobs(client, settings.jobs, budget, options.dry_run, options.force),
        "orphans": lambda: clean_orphaned_records(
            database, settings.orphans, budget, options.dry_run, positions=positions
        ),
    }


def run_all(
    settings: HealSettings, database: Database, client: redis.Redis, options: HealOptions, budget: Budget
) -> dict[str, Any]:
    """The seed's ``{staleSessions, stuckJobs, orphanedRecords, duration}`` plus per-routine detail."""
    started = time.monotonic()
    calls = _routine_calls(settings, database, client, options, budget)
    details: dict[str, dict[str, Any]] = {}
    lock = _RedisLock(client, settings.lock_ttl_ms) if settings.lock == "redis" else _AdvisoryLock(database)
    with lock:
        for name in options.routines:
            if budget.exhausted():
                details[name] = {"status": SKIPPED, "count": 0, "partial": True, "error": None}
                continue
            if lock.held and not lock.still_held():
                details[name] = {"status": SKIPPED, "count": 0, "partial": True, "error": LOCK_LOST}
                create_logger("heal").error("Heal run lock lost: routine skipped", extra={"routine": name})
                continue
            try:
                detail = calls[name]()
                details[name] = {"status": routine_status(detail), "error": None, **detail}
            except Exception as exc:
                details[name] = {"status": FAILED, "count": 0, "partial": False, "error": safe_reason(exc)}
                _report_failure(name, exc, options)
    result: dict[str, Any] = {key: details[name]["count"] if name in details else 0 for name, key in ROUTINES.items()}
    result["duration"] = round((time.monotonic() - started) * 1000)
    result.update(
        status=run_status({detail["status"] for detail in details.values()}),
        partial=any(detail["partial"] for detail in details.values()),
        dryRun=options.dry_run,
        routines=details,
        correlationId=correlation.get_current(),
    )
    if not options.dry_run:
        metrics.emit(metrics.heal_data(result))
    if details.get("jobs", {}).get("count") and not options.dry_run:
        alerts.alert_warning(
            "Stuck BullMQ jobs requeued",
            f"{details['jobs']['count']} job(s) were stuck in active with expired locks: their workers died.",
            {"queues": details["jobs"].get("queues"), "correlationId": result["correlationId"]},
        )
    create_logger("heal").info(
        "Heal run finished", {key: result[key] for key in (*ROUTINES.values(), "duration", "status")}
    )
    return result


def _report_failure(routine: str, exc: Exception, options: HealOptions) -> None:
    reason = safe_reason(exc)
    create_logger("heal").error("Heal routine failed", exc, {"routine": routine})
    error_tracker.capture_error(exc, {"action": f"heal:{routine}", "metadata": {"dryRun": options.dry_run}})
    alerts.alert_critical(
        f"Self-healing routine failed: {routine}", reason, {"routine": routine, "dryRun": options.dry_run}
    )
