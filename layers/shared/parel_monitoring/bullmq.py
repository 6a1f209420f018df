"""BullMQ 5 and 6 queues read straight from Redis (what the Node app's workers write).

Key layout (``<prefix>:<queue>:<type>``, bullmq 5.x and 6.x): ``wait``, ``paused`` and
``active`` are lists; ``prioritized``, ``delayed``, ``completed``, ``failed`` and
``waiting-children`` are sorted sets; ``meta`` is a hash (``version``, ``paused`` while the
queue is paused). Prioritized jobs sit in their own sorted set, also while paused.

The two majors differ in where a paused queue's ready jobs are. bullmq 5 renames ``wait``
to ``paused`` on pause and adds to ``paused`` while paused, so they count as ``paused``.
bullmq 6 only sets the flag: they stay in ``wait`` (``waiting``), everything is pushed to
``wait`` even while paused, nothing writes ``paused`` any more, a resume drains a ``paused``
list left by bullmq 5, and ``getJobCounts()`` leaves ``paused`` out unless asked for it.

Layout rule (:data:`LAYOUT_LUA`, the same in the counts and the heal scripts). ``meta.version``
is written by whichever ``Queue`` was opened last, so where bullmq 5 and 6 services share a
queue it flips: it only says whether the queue is bullmq 5 or 6 at all (no version, another
major or another library: unknown, left alone by the heal). Which of the two layouts is in
effect is read from the keys: a ``paused`` list means bullmq 5's (jobs paused by 5 wait
there until a resume of either major moves them to ``wait``); a paused queue with jobs in
``wait`` and no ``paused`` list means bullmq 6's; when the lists do not tell (a running queue,
where both layouts are the same, or a paused queue without ready jobs) the version's major does.

:func:`job_counts` reproduces Node's ``queue.getJobCounts()`` of all eight types (the types
bullmq 6 returns by default are the same numbers; its ``paused`` is what
``getJobCounts('paused')`` returns: 0 unless bullmq 5 left a ``paused`` list) for any number
of queues in one round trip (one read-only Lua script, no ``KEYS`` command).

Redis Cluster (``REDIS_CLUSTER=true``): :func:`get_redis` gives redis-py's ``RedisCluster``, and
``BULLMQ_PREFIX`` must be a whole ``{hash-tag}`` (``{bull}``), as BullMQ requires there. Every key
of every queue under that prefix then hashes to the tag's one slot: the counts script takes the
keys of all queues in one call and the heal script builds job keys from its declared ``active``
key, both within that slot (per-queue hash tags, ``{name}`` queue names, are not supported).
"""

from __future__ import annotations

import base64
import functools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from parel_monitoring.settings import ConfigurationError, env_choice, env_float, env_str, redis_url, secret

COUNT_TYPES = ("waiting", "active", "completed", "failed", "delayed", "prioritized", "paused", "waiting-children")
# Queue names: no key separator (BullMQ rejects ":" too), no whitespace, no hash-tag braces,
# so a configured name can never address keys outside its own queue.
_QUEUE_NAME = re.compile(r"[^\s:{}]{1,200}")
# A plain prefix ("bull") or a whole {hash-tag} one ("{bull}", for Redis Cluster). No ":":
# a prefix like "bull:default" would alias another queue's keys.
_PREFIX = re.compile(r"\{[A-Za-z0-9_.\-]{1,98}\}|[A-Za-z0-9_.\-]{1,100}")


def redis_cluster_enabled() -> bool:
    """``REDIS_CLUSTER``: ``true`` when ``REDIS_URL`` is a node of a Redis Cluster (cluster mode enabled)."""
    return env_choice("REDIS_CLUSTER", "false", ("true", "false")) == "true"


@dataclass(frozen=True)
class RedisSettings:
    url: str = field(repr=False)  # holds the password
    connect_timeout_s: float
    socket_timeout_s: float
    cluster: bool = False

    @classmethod
    def from_env(cls) -> RedisSettings:
        return cls(
            url=redis_url(secret("REDIS_URL", required=True)),
            connect_timeout_s=env_float("REDIS_CONNECT_TIMEOUT_S", 1.0, 0.05, 30.0),
            socket_timeout_s=env_float("REDIS_SOCKET_TIMEOUT_S", 2.0, 0.05, 60.0),
            cluster=redis_cluster_enabled(),
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
        if redis_cluster_enabled() and not prefix.startswith("{"):
            # Without a hash tag a queue's keys spread over the cluster's slots: neither BullMQ's
            # scripts nor ours could run (CROSSSLOT), and the queues would not share one slot.
            raise ConfigurationError("BULLMQ_PREFIX", "must be a {hash-tag} prefix like {bull} with REDIS_CLUSTER=true")
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


@functools.cache
def get_redis(settings: RedisSettings) -> redis.Redis:
    """The execution environment's client (created once; reconnects by itself).

    One retry without backoff, on connection errors only: enough to replace a socket that
    died between invocations, and still an answer within connect + socket timeout when
    Redis is down or hangs. With ``settings.cluster``: a :class:`ClusterClient`.
    """
    if settings.cluster:
        return ClusterClient(settings)  # type: ignore[return-value]  # the same commands, routed by slot
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.url,
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=settings.socket_timeout_s,
        # Retry a dropped connection at once; a timeout is not retried (answer within the bound).
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        # No client_name: redis-py fails the connection when CLIENT SETNAME is refused (renamed CLIENT,
        # some managed services), which would make every check unhealthy there.
    )


class ClusterUnavailable(redis.ConnectionError):
    """A Redis Cluster error redis-py raises outside ``redis.RedisError`` (``RedisClusterException``:
    no reachable node, a slot not covered), so that every caller's ``except redis.RedisError`` holds."""


class ClusterClient:
    """redis-py's ``RedisCluster``, created on the first command rather than at ``get_redis``.

    ``RedisCluster()`` reads the cluster's topology (``CLUSTER SLOTS``) in its constructor; made
    lazily, an unreachable cluster fails the command that needs it, where the caller handles
    ``redis.RedisError`` (the health check answers unhealthy, alert deduplication fails open),
    instead of the handler. Commands are routed to the node serving their keys' slot (``MOVED``
    and ``ASK`` followed); scripts are registered without a round trip (``SCRIPT LOAD`` reaches every
    primary when a node does not know one). Errors outside ``redis.RedisError`` become
    :class:`ClusterUnavailable`. One retry without backoff on connection errors and timeouts,
    after a topology refresh (redis-py's cluster retry), so a down cluster answers within
    about twice the connect + socket timeouts.
    """

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings
        self._cluster: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        if self._cluster is None:
            with self._lock:
                if self._cluster is None:
                    self._cluster = self._translated(self._connect)()
        return self._cluster

    def _connect(self) -> Any:
        from redis.backoff import NoBackoff
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        settings = self._settings
        return RedisCluster.from_url(
            settings.url,
            socket_connect_timeout=settings.connect_timeout_s,
            socket_timeout=settings.socket_timeout_s,
            retry=Retry(NoBackoff(), 1),  # no client_name: see get_redis
        )

    @staticmethod
    def _translated(method: Any) -> Any:
        from redis.exceptions import RedisClusterException

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except RedisClusterException as exc:
                raise ClusterUnavailable(f"Redis Cluster: {type(exc).__name__}: {exc}") from exc

        return call

    def get_encoder(self) -> Any:
        """The encoder a ``Script`` hashes its text with (redis-py's default, as the cluster's nodes use)."""
        from redis._parsers.encoders import Encoder

        return Encoder("utf-8", "strict", False)

    def register_script(self, script: str) -> Any:
        from redis.commands.core import Script

        return Script(self, script)  # evalsha/script_load go through __getattr__ on first call

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends probe these: no connection for them
            raise AttributeError(name)
        attribute = getattr(self._client(), name)
        return self._translated(attribute) if callable(attribute) else attribute


def queue_key(prefix: str, queue: str, key_type: str) -> str:
    return f"{prefix}:{queue}:{key_type}"


# The layout rule of the module docstring: queue_layout(waitKey, pausedKey, metaKey) returns
# 5 or 6, or nil and the reason the queue cannot be classified.
LAYOUT_LUA = """
local function queue_layout(waitKey, pausedKey, metaKey)
  local meta = redis.call('HMGET', metaKey, 'version', 'paused')
  local version = meta[1]
  if not version then return nil, 'meta has no version: cannot classify' end
  local major = tonumber(string.match(version, '^bullmq:(%d+)%.'))
  if major ~= 5 and major ~= 6 then return nil, 'version ' .. version .. ' is neither BullMQ 5 nor 6' end
  if redis.call('EXISTS', pausedKey) == 1 then return 5 end
  if meta[2] and redis.call('LLEN', waitKey) > 0 then return 6 end
  return major
end
"""

# Counts of many queues in one call, like BullMQ's own getCounts-1.lua (read-only), with the age of each
# queue's oldest waiting job (see :func:`job_counts`): milliseconds on the server's clock (TIME), -1 when no job
# waits. KEYS: for each queue, the 9 keys of _SCRIPT_KEY_TYPES in that order.
_COUNTS_LUA = (
    LAYOUT_LUA
    + """
local SCAN = 10  -- job hashes read per list tail, priority levels visited per prioritized set
local LEVEL = 4294967296  -- a prioritized score is priority * 2^32 + a counter
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function size(command, key, ...)  -- nil when the key has another type (an error reply, not raised)
  local n = redis.pcall(command, key, ...)
  if type(n) ~= 'number' then return nil end
  return n
end
local function without_marker(key, n)
  if n > 0 then
    local tail = redis.call('LINDEX', key, -1)
    if tail and string.sub(tail, 1, 2) == '0:' then n = n - 1 end  -- BullMQ 4 marker
  end
  return n
end
local function waiting_since(jobPrefix, id, oldest)  -- the later of timestamp and processedOn (a retry)
  local fields = redis.pcall('HMGET', jobPrefix .. id, 'timestamp', 'processedOn')
  if fields.err then return oldest end  -- not a job hash
  local since = tonumber(fields[1])
  if not since then return oldest end
  local started = tonumber(fields[2])
  if started and started > since then since = started end
  if not oldest or since < oldest then return since end
  return oldest
end
local function oldest_in_list(key, jobPrefix, oldest)  -- LPUSH: the first to wait is at the tail
  for _, id in ipairs(redis.call('LRANGE', key, -SCAN, -1)) do
    if string.sub(id, 1, 2) ~= '0:' then oldest = waiting_since(jobPrefix, id, oldest) end
  end
  return oldest
end
local function oldest_in_prioritized(key, jobPrefix, oldest)  -- the first job of each priority level
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local levels = 0
  while first[1] and levels < SCAN do
    levels = levels + 1
    oldest = waiting_since(jobPrefix, first[1], oldest)
    local next_level = (math.floor(tonumber(first[2]) / LEVEL) + 1) * LEVEL
    first = redis.call('ZRANGEBYSCORE', key, string.format('%.0f', next_level), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  end
  return oldest
end
local COUNT = {'LLEN', 'LLEN', 'LLEN', 'ZCARD', 'ZCARD', 'ZCARD', 'ZCARD', 'ZCARD', 'HLEN'}
local out = {}
for i = 1, #KEYS, 9 do
  -- Each key counted by its type's command: a key of another type (another major's layout?) answers an
  -- error instead of failing the whole call, and makes the queue unreadable.
  local n, readable = {}, true
  for j = 1, 9 do
    n[j] = size(COUNT[j], KEYS[i + j - 1])
    if n[j] == nil then readable = false end
  end
  if readable then
    out[#out + 1] = without_marker(KEYS[i], n[1])
    out[#out + 1] = without_marker(KEYS[i + 1], n[2])
    for j = 3, 8 do out[#out + 1] = n[j] end
    out[#out + 1] = n[9] > 0 and redis.call('HEXISTS', KEYS[i + 8], 'paused') or 0
    out[#out + 1] = n[9] > 0 and 1 or 0
    out[#out + 1] = queue_layout(KEYS[i], KEYS[i + 1], KEYS[i + 8]) or 0
    local jobPrefix = string.sub(KEYS[i], 1, -5)  -- '<prefix>:<queue>:' of '<prefix>:<queue>:wait'
    local base = #out - 11  -- this queue's counts: waiting, paused, ..., prioritized at base + 7
    local oldest = nil
    if out[base + 1] > 0 then oldest = oldest_in_list(KEYS[i], jobPrefix, oldest) end
    if out[base + 2] > 0 then oldest = oldest_in_list(KEYS[i + 1], jobPrefix, oldest) end
    if out[base + 7] > 0 then oldest = oldest_in_prioritized(KEYS[i + 6], jobPrefix, oldest) end
    if oldest then out[#out + 1] = math.max(0, now - oldest) else out[#out + 1] = -1 end
  else
    for _ = 1, 10 do out[#out + 1] = 0 end
    out[#out + 1] = -1
    out[#out + 1] = -1
  end
end
return out
"""
)
_SCRIPT_KEY_TYPES = ("wait", "paused", "active", "completed", "failed", "delayed", "prioritized", "waiting-children",
                     "meta")  # fmt: skip
_REPLY_FIELDS = ("waiting", "paused", "active", "completed", "failed", "delayed", "prioritized", "waiting-children",
                 "isPaused", "meta", "layout", "oldestMs")  # fmt: skip
_script: list[Any] = []  # the registered Script, created on first use


def job_counts(client: redis.Redis, prefix: str, queues: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{queue: {waiting, ..., waiting-children, isPaused, exists, bullmqLayout, readable,
    oldestWaitingAgeSeconds}}`` in one round trip.

    ``bullmqLayout``: 5 or 6 by the layout rule, None when the queue cannot be classified.
    ``readable``: False when one of its keys has a type BullMQ 5/6 never gives it (counts then 0).
    ``oldestWaitingAgeSeconds``: see :func:`queue_state` (None when no job waits).

    One EVALSHA of a read-only script (redis-py loads it once per server), so the cost
    does not grow with round trips, and every key is declared: on Redis Cluster the
    ``{hash-tag}`` prefix puts every queue's keys in one slot, so one call reads them all.
    """
    names = list(dict.fromkeys(queues))
    keys = _script_keys(prefix, names)
    replies = _counts_script(client)(keys=keys, client=client) if names else []
    return _readings(names, replies)


def _counts_script(client: Any) -> Any:
    if not _script:
        _script.append(client.register_script(_COUNTS_LUA))
    return _script[0]


def _script_keys(prefix: str, names: list[str]) -> list[bytes]:
    return list(_encoded_keys(prefix, tuple(names)))


@functools.lru_cache(maxsize=8)
def _encoded_keys(prefix: str, names: tuple[str, ...]) -> tuple[bytes, ...]:
    """The script's keys, encoded once per environment (the settings do not change): 180 for 20 queues."""
    return tuple(queue_key(prefix, name, key_type).encode() for name in names for key_type in _SCRIPT_KEY_TYPES)


def _readings(names: list[str], replies: list[Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    width = len(_REPLY_FIELDS)
    for index, name in enumerate(names):
        reply = dict(zip(_REPLY_FIELDS, replies[index * width : (index + 1) * width], strict=True))
        counts: dict[str, Any] = {key: reply[key] for key in COUNT_TYPES}
        counts["isPaused"] = bool(reply["isPaused"])
        readable = reply["layout"] != -1
        counts["exists"] = not readable or bool(reply["meta"]) or any(counts[key] for key in COUNT_TYPES)
        counts["bullmqLayout"] = reply["layout"] if reply["layout"] in (5, 6) else None
        counts["readable"] = readable
        counts["oldestWaitingAgeSeconds"] = round(reply["oldestMs"] / 1000, 1) if reply["oldestMs"] >= 0 else None
        result[name] = counts
    return result


# --------------------------------------------------------------------------- workers and Redis memory


def worker_client_name(prefix: str, queue: str) -> str:
    """The connection name a BullMQ Worker of ``queue`` sets (``CLIENT SETNAME``), before any ``:w:<name>``."""
    return f"{prefix}:{base64.b64encode(queue.encode()).decode()}"


_CLIENT_NAME = re.compile(rb"(?:^| )name=(\S*)", re.M)


def count_workers(client_list: bytes | str, prefix: str, queues: Iterable[str]) -> dict[str, int]:
    """``{queue: workers}`` in one ``CLIENT LIST`` reply, matched as bullmq's ``Queue.getWorkers()`` matches: a
    connection named ``<prefix>:<base64(queue)>`` (an unnamed Worker) or starting ``<prefix>:<base64(queue)>:w:``
    (a Worker with ``name``)."""
    text = client_list.encode() if isinstance(client_list, str) else client_list
    bases = {worker_client_name(prefix, queue).encode(): queue for queue in queues}
    counts = dict.fromkeys(bases.values(), 0)
    for match in _CLIENT_NAME.finditer(text):
        name = match.group(1)
        queue = bases.get(name)
        if queue is None and b":w:" in name:
            queue = bases.get(name[: name.index(b":w:")])  # neither prefix nor base64 holds ":w:"
        if queue is not None:
            counts[queue] += 1
    return counts


def _refusal(exc: BaseException) -> str:
    from parel_monitoring.scrub import scrub_text

    message = scrub_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return f"CLIENT LIST refused by the server ({message[:160]})"


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def redis_memory(info: Any) -> dict[str, Any]:
    """The ``redis`` section of the queue document from an ``INFO memory`` reply (or an error: every field None)."""
    if not isinstance(info, dict):
        return {"maxmemoryPolicy": None, "usedMemoryBytes": None, "maxmemoryBytes": None, "usagePercent": None}
    policy = info.get("maxmemory_policy")
    used, limit = _number(info.get("used_memory")), _number(info.get("maxmemory"))
    usage = round(used / limit * 100, 1) if used is not None and limit else None
    return {
        "maxmemoryPolicy": policy.decode() if isinstance(policy, bytes) else policy,
        "usedMemoryBytes": used,
        "maxmemoryBytes": limit,
        "usagePercent": usage,
    }


@dataclass(frozen=True)
class QueueState:
    """:func:`queue_state`'s reading: per-queue counts and age, worker counts (or why there are none), memory."""

    queues: dict[str, dict[str, Any]]
    workers: dict[str, int] | None
    workers_error: str | None
    redis: dict[str, Any]


def queue_state(client: Any, prefix: str, queues: Iterable[str], cluster: bool = False) -> QueueState:
    """Counts and the oldest waiting job's age of every queue, its live Workers, and Redis memory.

    * Counts and ages: :func:`job_counts`'s script. ``oldestWaitingAgeSeconds`` (0.1 s) is the age of the job
      that has waited longest in ``wait``, ``paused`` (bullmq 5's paused layout; bullmq 6 leaves a paused queue's
      jobs in ``wait``) and ``prioritized``, None when none waits (delayed jobs and parents waiting for children
      are not waiting). A job waits since the later of its ``timestamp`` (when it was added) and ``processedOn``
      (a retried job: its last start). Bounded per queue, so the call costs the same with a million jobs: bullmq
      pushes a ready job at the head of a list (``LPUSH``) and takes it from the tail, so the 10 jobs at each
      list's tail are read (the oldest is among them unless more than 10 ``lifo`` jobs or jobs added with an
      older ``timestamp`` option sit behind it); in ``prioritized`` jobs of one priority are in the order they
      were added (score ``priority * 2^32 + counter``), so the first job of each priority level is read, for the
      10 most urgent levels in use (exact with up to 10 distinct priorities). Jobs promoted from ``delayed``
      keep their ``timestamp``: they count from when they were added. Ages are measured on the Redis server's
      clock (``TIME`` inside the script) against timestamps the producers' clocks wrote (``Date.now()``): one
      clock for every reader (the health routes and the sweep, in any execution environment), read in the same
      atomic step as the jobs, with no network time in between; a clock skew between producer and Redis shows
      as age (negative ages read 0).
    * Workers: ``{queue: n}`` as Node's ``Queue.getWorkersCount()`` counts them (:func:`count_workers`) from one
      ``CLIENT LIST``; on Redis Cluster from every primary, taking per queue the node with the most matching
      connections (what bullmq does: a Worker's connections are named on each node it talks to, so nodes are
      not added). ``workers`` None and ``workers_error`` the reason when the server refuses ``CLIENT LIST``
      (renamed or disabled, an ACL without ``client|list``, a managed service); bullmq itself then answers a
      placeholder list of one.
    * ``redis``: :func:`redis_memory` of ``INFO memory`` (on Cluster: of the node holding the queues' slot).

    A single server gets the three commands in one pipeline: one round trip (plus one ``SCRIPT LOAD`` the
    first time a server sees the script). A connection failure or timeout raises ``redis.RedisError``;
    a refused ``CLIENT LIST`` or ``INFO`` does not.
    """
    names = list(dict.fromkeys(queues))
    keys = _script_keys(prefix, names)
    script = _counts_script(client)
    if cluster:
        replies = script(keys=keys, client=client) if names else []
        client_lists, info = _cluster_extras(client, keys[0] if keys else queue_key(prefix, "x", "meta"))
    else:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys)
        pipe.execute_command("CLIENT", "LIST")
        pipe.execute_command("INFO", "memory")
        replies, client_list, info = pipe.execute(raise_on_error=False)
        if isinstance(replies, redis.exceptions.NoScriptError):
            replies = script(keys=keys, client=client)  # loads it, then EVALSHA again
        elif isinstance(replies, Exception):
            raise replies
        client_lists = client_list if isinstance(client_list, Exception) else [client_list]
    if isinstance(client_lists, Exception):
        workers, error = None, _refusal(client_lists)
    else:
        per_node = [count_workers(reply, prefix, names) for reply in client_lists]
        workers, error = {name: max((node[name] for node in per_node), default=0) for name in names}, None
    return QueueState(_readings(names, replies), workers, error, redis_memory(info))


def _cluster_extras(client: Any, slot_key: str) -> tuple[list[Any] | Exception, Any]:
    """``CLIENT LIST`` of every primary and ``INFO memory`` of the node serving ``slot_key`` (an error each
    when refused)."""
    try:
        replies = client.execute_command("CLIENT", "LIST", target_nodes="primaries")
        client_lists: list[Any] | Exception = list(replies.values()) if isinstance(replies, dict) else [replies]
    except redis.ResponseError as exc:
        client_lists = exc
    try:
        info: Any = client.execute_command("INFO", "memory", target_nodes=client.get_node_from_key(slot_key))
    except redis.ResponseError as exc:
        info = exc
    return client_lists, info
