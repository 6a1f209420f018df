"""Real BullMQ queue states for tests: runs ``tests/bullmq/scenario.mjs`` (Node, bullmq 5 or 6).

    run_scenario("populate", prefix, "default", completed=5, failed=1, waiting=3)
    node_counts(prefix, "default")  # queue.getJobCounts() of all eight types as Node reports it

The bullmq major is ``BULLMQ_MAJOR`` from the environment (the ``bullmq_major`` fixture sets it;
default 5), or ``major=`` per call.

Options become ``--name value`` (``lock_duration=500`` -> ``--lock-duration 500``). The
script's README is its header comment. :func:`cleanup` deletes a test's keys afterwards
(test-side only: the monitoring code never deletes or scans).
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis

from polling import wait_until

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "bullmq" / "scenario.mjs"
REDIS_URL = "redis://127.0.0.1:6379"
TIMEOUT_S = 60


class ScenarioError(RuntimeError):
    """scenario.mjs failed, printed no JSON, or exited with an unexpected code."""


def unique_prefix(tag: str = "bt") -> str:
    """A prefix no other test (or engineer) uses: ``bt-1a2b3c4d``."""
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def _arguments(options: dict[str, Any]) -> list[str]:
    arguments: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        arguments.append("--" + name.replace("_", "-"))
        if value is not True:
            arguments.append(str(value))
    return arguments


def run_scenario(
    command: str,
    prefix: str,
    queue: str,
    redis_url: str = REDIS_URL,
    *,
    allowed_returncodes: Iterable[int] = (0,),
    timeout: float = TIMEOUT_S,
    major: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run ``node scenario.mjs <command>`` and return the JSON document it printed.

    ``allowed_returncodes``: ``crash-active --kill SIGKILL`` dies by its own signal
    (``-9``) after printing its report; pass ``(-9,)`` (or ``(0, -9)``) for that.
    """
    argv = ["node", str(SCENARIO), command, "--redis", redis_url, "--prefix", prefix, "--queue", queue]
    argv += _arguments({"major": major, **options})
    try:
        result = subprocess.run(argv, cwd=SCENARIO.parent, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ScenarioError(f"{command} did not finish within {timeout} s (stderr: {exc.stderr!r})") from None
    allowed = tuple(allowed_returncodes)
    if result.returncode not in allowed:
        raise ScenarioError(
            f"scenario.mjs {command} exited {result.returncode} (allowed {allowed}):\n{result.stderr.strip()}"
        )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise ScenarioError(f"scenario.mjs {command} printed nothing:\n{result.stderr.strip()}")
    try:
        document = json.loads(lines[-1])
    except ValueError:
        raise ScenarioError(f"scenario.mjs {command} printed no JSON: {lines[-1]!r}\n{result.stderr.strip()}") from None
    if document.get("command") != command:
        raise ScenarioError(f"scenario.mjs {command} answered for {document.get('command')!r}: {document}")
    return document


def node_state(prefix: str, queue: str, redis_url: str = REDIS_URL, major: int | None = None) -> dict[str, Any]:
    """The ``counts`` command's document: ``jobCounts`` (the major's default types), ``pausedCount``,
    ``isPaused`` and ``waitingCount``."""
    return run_scenario("counts", prefix, queue, redis_url, major=major)


def all_counts(state: dict[str, Any]) -> dict[str, int]:
    """The eight types of a ``counts`` document: bullmq 6's default leaves out ``paused``."""
    return {**state["jobCounts"], "paused": state["pausedCount"]}


def node_counts(prefix: str, queue: str, redis_url: str = REDIS_URL, major: int | None = None) -> dict[str, int]:
    """``queue.getJobCounts()`` of all eight types as bullmq itself computes it."""
    return all_counts(node_state(prefix, queue, redis_url, major))


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def prefix_keys(prefix: str, redis_url: str = REDIS_URL) -> list[str]:
    """Every key under ``<prefix>:`` (SCAN, so it is safe on a shared server)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=_glob_escape(prefix) + ":*", count=1000))
    finally:
        client.close()


def cleanup(prefix: str, redis_url: str = REDIS_URL) -> int:
    """Delete the keys ``<prefix>:*``; returns how many were deleted."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=_glob_escape(prefix) + ":*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted


def wait_locks_expired(client: Any, prefix: str, queue: str, ids: list[str]) -> None:
    """Until the locks of ``ids`` (a killed worker's jobs) have expired; ``client`` a redis-py client (Cluster
    included: the keys share the queue's hash slot)."""
    lock_keys = [f"{prefix}:{queue}:{job_id}:lock" for job_id in ids]
    wait_until(lambda: client.exists(*lock_keys) == 0, f"the locks of the killed worker ({len(ids)} jobs) to expire")
