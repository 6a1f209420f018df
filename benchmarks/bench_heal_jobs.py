"""Benchmark of healStuckJobs: 10,000 stuck BullMQ jobs across 5 queues, written into BENCHMARKS.md ("heal-jobs").

The jobs are made by the real bullmq (``scenario.mjs crash-active``: a Worker takes them all,
then is SIGKILLed) on a throwaway Redis of our own, so its configuration can be changed and
no other client disturbs the figures: ``slowlog-log-slower-than 0`` records every command
with its server-side duration. Each queue also holds long-running jobs with live locks,
which must be left alone. A dry run is measured first, then the heal itself; every command
is also timed client-side.

Targets: all 10,000 requeued in ≤ 1 s, and no single call blocks Redis for more than 50 ms.

    .venv/bin/python benchmarks/bench_heal_jobs.py
"""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from bench import TIMES, publish
from bullmq_scenario import run_scenario, unique_prefix
from parel_monitoring.bullmq import QueueSettings, job_counts
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.jobs import StuckJobSettings, heal_stuck_jobs
from report import quick
from services import start_throwaway_redis

QUEUES = tuple(f"bench-{index}" for index in range(5))
STUCK_PER_QUEUE = quick(2000, 100)
LIVE_PER_QUEUE = quick(20, 2)
LOCK_MS = 1000  # the killed worker's locks: expired before the heal starts
BATCH_SIZE = 500  # STUCK_JOB_BATCH_SIZE default
TOTAL_TARGET_MS = 1000.0
CALL_TARGET_MS = 50.0


class TimedRedis(redis.Redis):
    """Records ``(command, seconds)`` of every command, measured around the round trip."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timings: list[tuple[str, float]] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().execute_command(*args, **options)
        finally:
            self.timings.append((str(args[0]).upper(), time.perf_counter() - started))


@dataclass
class Run:
    """One heal_stuck_jobs() call with its client-side and server-side (SLOWLOG) command durations."""

    result: dict[str, Any]
    total_ms: float
    client_ms: dict[str, list[float]] = field(default_factory=dict)
    server_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def script_calls(self) -> int:
        return len(self.client_ms.get("EVALSHA", []))

    def worst_ms(self, timings: dict[str, list[float]]) -> tuple[str, float]:
        return max(((name, max(values)) for name, values in timings.items()), key=lambda item: item[1])


def make_stuck_jobs(url: str, prefix: str) -> float:
    """Seconds to leave STUCK_PER_QUEUE expired-lock and LIVE_PER_QUEUE live-lock active jobs in every queue."""
    started = time.perf_counter()

    def crash(queue: str, count: int, lock_ms: int) -> None:
        run_scenario(
            "crash-active", prefix, queue, url, count=count, lock_duration=lock_ms, kill="SIGKILL",
            allowed_returncodes=(-9,), timeout=120,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=len(QUEUES)) as pool:
        list(pool.map(lambda queue: crash(queue, STUCK_PER_QUEUE, LOCK_MS), QUEUES))
        # Newer than the stuck ones (left of them in `active`), with locks that outlive the benchmark.
        list(pool.map(lambda queue: crash(queue, LIVE_PER_QUEUE, 600_000), QUEUES))
    return time.perf_counter() - started


def measured(client: TimedRedis, settings: StuckJobSettings, dry_run: bool) -> Run:
    client.slowlog_reset()
    client.timings.clear()
    started = time.perf_counter()
    result = heal_stuck_jobs(client, settings, Budget(total_ms=60_000), dry_run=dry_run)
    run = Run(result, (time.perf_counter() - started) * 1000)
    for name, seconds in client.timings:
        run.client_ms.setdefault(name, []).append(seconds * 1000)
    client.timings.clear()
    for entry in client.slowlog_get(10_000):
        name = entry["command"].split()[0].decode().upper()
        if name not in ("SLOWLOG", "CONFIG"):
            run.server_ms.setdefault(name, []).append(entry["duration"] / 1000)
    return run


def verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "**MISSED**"


def run() -> str:
    url, _ = start_throwaway_redis()
    prefix = unique_prefix("bench")
    setup_s = make_stuck_jobs(url, prefix)
    client = TimedRedis.from_url(url, socket_timeout=10)
    time.sleep(LOCK_MS / 1000)  # let the last expired-lock job's lock run out
    client.config_set("slowlog-log-slower-than", 0)  # log every command with its duration
    client.config_set("slowlog-max-len", 10_000)
    settings = StuckJobSettings(QueueSettings(prefix, QUEUES, QUEUES[0]), 0, 1, BATCH_SIZE)

    dry = measured(client, settings, dry_run=True)
    heal = measured(client, settings, dry_run=False)
    counts = job_counts(client, prefix, QUEUES)
    client.close()

    stuck = STUCK_PER_QUEUE * len(QUEUES)
    correct = (
        heal.result["count"] == dry.result["count"] == stuck
        and heal.result["longRunning"] == LIVE_PER_QUEUE * len(QUEUES)
        and all(counts[q]["waiting"] == STUCK_PER_QUEUE and counts[q]["active"] == LIVE_PER_QUEUE for q in QUEUES)
    )
    rows = []
    for name, figures in (("dry run", dry), ("heal", heal)):
        script_ms = figures.client_ms["EVALSHA"]
        client_name, client_worst = figures.worst_ms(figures.client_ms)
        server_name, server_worst = figures.worst_ms(figures.server_ms)
        rows.append(
            f"| {name} | {figures.result['count']} | {figures.result['longRunning']} | {figures.total_ms:.0f} "
            f"| {figures.script_calls} | {statistics.median(script_ms):.1f} | {client_worst:.1f} ({client_name}) "
            f"| {server_worst:.1f} ({server_name}) |"
        )
    heal_server_worst = heal.worst_ms(heal.server_ms)[1]
    lines = [
        f"## healStuckJobs: {stuck:,} stuck jobs (`benchmarks/bench_heal_jobs.py`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on a throwaway Redis "
        f"({len(QUEUES)} queues {TIMES} {STUCK_PER_QUEUE} jobs left active by a SIGKILLed bullmq Worker, "
        f"locks expired, plus {LIVE_PER_QUEUE} jobs with live locks per queue; "
        f"made by the real bullmq in {setup_s:.1f} s). Threshold 0, batch size {BATCH_SIZE}. "
        "Client-side: every command timed around its round trip; server-side: `SLOWLOG` with "
        "`slowlog-log-slower-than 0` (every command's execution time in Redis). The dry run's script calls "
        "include the first call's `NOSCRIPT` answer, after which redis-py loads the script.",
        "",
        "| run | requeued | longRunning | total ms | script calls | script p50 ms (client) "
        "| slowest call ms (client) | slowest call ms (Redis SLOWLOG) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| {stuck:,} requeued in ≤ {TOTAL_TARGET_MS:.0f} ms | {heal.total_ms:.0f} ms "
        f"| {verdict(heal.total_ms, TOTAL_TARGET_MS) if correct else '**MISSED** (wrong result)'} |",
        f"| no call blocks Redis > {CALL_TARGET_MS:.0f} ms | {heal_server_worst:.1f} ms "
        f"| {verdict(heal_server_worst, CALL_TARGET_MS)} |",
        "",
        f"After the heal each queue reads waiting {counts[QUEUES[0]]['waiting']}, active {counts[QUEUES[0]]['active']} "
        f"(the live-lock jobs); {'as expected' if correct else '**not as expected**'}.",
    ]
    return "\n".join(lines)


def main() -> int:
    return publish("heal-jobs", run())


if __name__ == "__main__":
    sys.exit(main())
