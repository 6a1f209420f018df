"""BullMQ 5 queues read straight from Redis (what the Node app's workers write).

Key layout (``<prefix>:<queue>:<type>``, bullmq 5.x): ``wait``, ``paused`` and
``active`` are lists; ``prioritized``, ``delayed``, ``completed``, ``failed`` and
``waiting-children`` are sorted sets; ``meta`` is a hash (``version``, ``paused``
while the queue is paused). Pausing renames ``wait`` to ``paused``, so a paused
queue's ready jobs count as ``paused``, not ``waiting`` (``getWaitingCount()`` in
Node adds both). Prioritized jobs sit in their own sorted set, also while paused.

:func:`job_counts` reproduces Node's ``queue.getJobCounts()`` for any number of
queues in one round trip (one MULTI/EXEC pipeline, no ``KEYS``, read-only).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from parel_monitoring.settings import ConfigurationError, env_float, env_str, secret

COUNT_TYPES = ("waiting", "active", "completed", "failed", "delayed", "prioritized", "paused", "waiting-children")
_LISTS = ("wait", "paused")  # LLEN + tail (BullMQ discounts a legacy "0:" marker at the tail)
_SORTED_SETS = ("completed", "failed", "delayed", "prioritized", "waiting-children")
_REPLIES_PER_QUEUE = 2 * len(_LISTS) + 1 + len(_SORTED_SETS) + 2
# Queue names: no key separator (BullMQ rejects ":" too), no whitespace, no hash-tag braces,
# so a configured name can never address keys outside its own queue.
_QUEUE_NAME = re.compile(r"[^\s:{}]{1,200}")
# A plain prefix ("bull") or a whole {hash-tag} one ("{bull}", for Redis Cluster). No ":":
# a prefix like "bull:default" would alias another queue's keys.
_PREFIX = re.compile(r"\{[A-Za-z0-9_.\-]{1,98}\}|[A-Za-z0-9_.\-]{1,100}")


@dataclass(frozen=True)
class RedisSettings:
    url: str
    connect_timeout_s: float
    socket_timeout_s: float

    @classmethod
    def from_env(cls) -> RedisSettings:
        return cls(
            url=secret("REDIS_URL", required=True),
            connect_timeout_s=env_float("REDIS_CONNECT_TIMEOUT_S", 1.0, 0.05, 30.0),
            socket_timeout_s=env_float("REDIS_SOCKET_TIMEOUT_S", 2.0, 0.05, 60.0),
        )


@dataclass(frozen=True)
class QueueSettings:
    prefix: str
    queue_names: tuple[str, ...]
    high_priority_queue: str

    @classmethod
    def from_env(cls) -> QueueSettings:
        prefix = env_str("BULLMQ_PREFIX", "bull")
        if not _PREFIX.fullmatch(prefix):
            raise ConfigurationError("BULLMQ_PREFIX", "must be letters, digits, _ . - (optionally in {hash-tag})")
        names = tuple(dict.fromkeys(name.strip() for name in (env_str("QUEUE_NAMES") or "").split(",") if name.strip()))
        if not names:
            raise ConfigurationError("QUEUE_NAMES", "must list at least one queue (comma-separated)")
        bad = [name for name in names if not _QUEUE_NAME.fullmatch(name)]
        if bad:
            raise ConfigurationError("QUEUE_NAMES", "names may not contain ':', '{', '}' or whitespace")
        high = env_str("HIGH_PRIORITY_QUEUE", "high-priority")
        if not _QUEUE_NAME.fullmatch(high):
            raise ConfigurationError("HIGH_PRIORITY_QUEUE", "may not contain ':', '{', '}' or whitespace")
        return cls(prefix=prefix, queue_names=names, high_priority_queue=high)


_clients: dict[RedisSettings, redis.Redis] = {}


def get_redis(settings: RedisSettings) -> redis.Redis:
    """The execution environment's client (created once; reconnects by itself).

    One retry without backoff, on connection errors only: enough to replace a socket that
    died between invocations, and still an answer within connect + socket timeout when
    Redis is down or hangs.
    """
    client = _clients.get(settings)
    if client is None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = _clients[settings] = redis.Redis.from_url(
            settings.url,
            socket_connect_timeout=settings.connect_timeout_s,
            socket_timeout=settings.socket_timeout_s,
            # Retry a dropped connection at once; a timeout is not retried (answer within the bound).
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            client_name="parel-monitoring",
        )
    return client


def queue_key(prefix: str, queue: str, key_type: str) -> str:
    return f"{prefix}:{queue}:{key_type}"


def _list_count(length: int, tail: Any) -> int:
    if isinstance(tail, bytes) and tail.startswith(b"0:"):  # BullMQ 4 marker, skipped by getCounts
        return max(length - 1, 0)
    return length


def job_counts(client: redis.Redis, prefix: str, queues: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{queue: {waiting, active, ..., waiting-children, isPaused, exists}}`` in one round trip."""
    names = list(dict.fromkeys(queues))
    pipe = client.pipeline(transaction=True)
    for name in names:
        for list_type in _LISTS:
            pipe.llen(queue_key(prefix, name, list_type))
            pipe.lindex(queue_key(prefix, name, list_type), -1)
        pipe.llen(queue_key(prefix, name, "active"))
        for set_type in _SORTED_SETS:
            pipe.zcard(queue_key(prefix, name, set_type))
        pipe.hexists(queue_key(prefix, name, "meta"), "paused")
        pipe.exists(queue_key(prefix, name, "meta"))
    replies = pipe.execute()

    result: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        r = replies[index * _REPLIES_PER_QUEUE : (index + 1) * _REPLIES_PER_QUEUE]
        counts: dict[str, Any] = {
            "waiting": _list_count(r[0], r[1]),
            "active": r[4],
            "completed": r[5],
            "failed": r[6],
            "delayed": r[7],
            "prioritized": r[8],
            "paused": _list_count(r[2], r[3]),
            "waiting-children": r[9],
        }
        counts["isPaused"] = bool(r[10])
        counts["exists"] = bool(r[11]) or any(counts[key] for key in COUNT_TYPES)
        result[name] = counts
    return result
