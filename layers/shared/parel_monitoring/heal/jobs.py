"""healStuckJobs: BullMQ 5 and 6 jobs left in ``active`` by a dead worker go back to waiting.

A job is stuck when it has been active for at least ``threshold_ms`` (from the job
hash's ``processedOn``, against Redis ``TIME``) and its ``<id>:lock`` has expired. It
is moved the way BullMQ's own stalled-job recovery (``moveStalledJobsToWait-9.lua``, the
same in 5.81.5 and 6.7.0 but for where a paused queue's jobs go) moves it, so live Node
workers stay correct: out of ``active``, lock and ``stalled`` entry dropped, ``stc``
incremented (over ``max_stalled_count`` and not repeatable: ``defa`` is set, and the next
worker fails the job with BullMQ's own reason), into ``wait`` or, with a priority,
``prioritized`` (scored as bullmq scores a new prioritized job); the marker wakes blocked
workers unless the queue is paused or at its global concurrency, and the
``waiting``/``stalled`` events are appended.

Paused queues follow the queue's layout (``parel_monitoring.bullmq``'s layout rule, checked
in the same script call): bullmq 6's layout requeues into ``wait`` even while paused (as
bullmq 6 does); bullmq 5's requeues into ``paused``, which a resume of either major moves to
``wait`` (bullmq 5's resume renames ``paused`` over ``wait``, so a job pushed to ``wait``
next to a ``paused`` list could be lost). A queue that is neither (no version, bullmq 7,
another library, or a key of an unexpected type) is skipped with the reason, and the
routine lists it in ``skipped`` (the heal run's status is then ``incomplete``).

BullMQ's ``stalled-check`` key is neither set nor honoured: this is a separate,
explicit heal. It is safe next to live workers and their stalled checker because
every condition is re-checked atomically per job inside the script.

A job whose lock is still alive is only reported (``longRunning``); ``force=True``
requeues it too, deleting its lock: the job may then run twice (its first worker's
lock renewal and completion fail, and another worker runs it again).

The active list is read in slices from the tail (the oldest jobs), and each slice is
handled by one script call, so Redis is never blocked for long.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from parel_monitoring.bullmq import LAYOUT_LUA, QueueSettings, queue_key
from parel_monitoring.heal.budget import Budget
from parel_monitoring.settings import env_int

STALLED_REASON = "job stalled more than allowable limit"  # BullMQ's deferred failure (defa)
BUDGET_EXHAUSTED = "budget exhausted"
REPORTED_JOBS = 100

# The keys the script reads or writes, with the type BullMQ 5 and 6 give each one.
_KEY_TYPES = {
    "active": "list",
    "wait": "list",
    "paused": "list",
    "prioritized": "zset",
    "pc": "string",
    "marker": "zset",
    "events": "stream",
    "stalled": "set",
    "meta": "hash",
    "repeat": "zset",
}

# KEYS: the _KEY_TYPES keys, in that order.
# ARGV: threshold ms, max stalled count, dry run (0/1), force (0/1), job ids...
# Replies {"empty"}, {"skip", reason} or {"ok", longRunning, failedNext, layout (5|6), requeued id...}.
# The other keys it touches (job hash "<prefix>:<queue>:<id>", its ":lock", "repeat:<scheduler id>") are
# derived from the declared `active` key, as BullMQ's own scripts build them: under a {hash-tag} prefix
# (Redis Cluster) every one of them is in the slot of the declared keys, whatever the job id.
_HEAL_LUA = (
    LAYOUT_LUA + "local EXPECTED = {" + ", ".join(f"'{kind}'" for kind in _KEY_TYPES.values()) + "}\n"
    "local STALLED_REASON = '" + STALLED_REASON + "'\n"
    """
local rcall = redis.call
local activeKey, waitKey, pausedKey, prioritizedKey, counterKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local markerKey, eventsKey, stalledKey, metaKey, repeatKey = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]

local anyKey = false
for i, key in ipairs(KEYS) do
  local kind = rcall('TYPE', key)['ok']
  if kind ~= 'none' then
    anyKey = true
    if kind ~= EXPECTED[i] then
      return {'skip', 'unknown layout: ' .. key .. ' is a ' .. kind .. ', not a ' .. EXPECTED[i]}
    end
  end
end
if not anyKey then return {'empty'} end
local layout, unknown = queue_layout(waitKey, pausedKey, metaKey)
if not layout then return {'skip', unknown} end

local jobPrefix = string.sub(activeKey, 1, #activeKey - #'active')  -- "<prefix>:<queue>:"
local threshold, maxStalled = tonumber(ARGV[1]), tonumber(ARGV[2])
local dryRun, force = ARGV[3] == '1', ARGV[4] == '1'
local time = rcall('TIME')  -- Redis' clock, not Lambda's (writes after TIME: Redis >= 5, effects replication)
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local maxEvents = rcall('HGET', metaKey, 'opts.maxLenEvents') or 10000
local meta = rcall('HMGET', metaKey, 'paused', 'concurrency')
local paused, concurrency = meta[1], tonumber(meta[2])
-- Where a paused queue's jobs go: bullmq 5 keeps them in `paused`, bullmq 6 in `wait`.
local readyKey = (paused and layout == 5) and pausedKey or waitKey

-- Repeatable jobs are never failed for stalling (as in moveStalledJobsToWait, legacy check included).
local function isRepeatable(schedulerId)
  return schedulerId and (rcall('EXISTS', repeatKey .. ':' .. schedulerId) == 1
    or rcall('ZSCORE', repeatKey, schedulerId) ~= false)
end

local longRunning, failedNext, wake = 0, 0, false
local reply = {'ok', 0, 0, layout}
for i = 5, #ARGV do
  local jobId = ARGV[i]
  local jobKey = jobPrefix .. jobId
  local job = rcall('HMGET', jobKey, 'processedOn', 'priority', 'rjk', 'stc')
  local processedOn = tonumber(job[1])
  if processedOn and now - processedOn >= threshold then
    local locked = rcall('EXISTS', jobKey .. ':lock') == 1
    if locked and not force then
      longRunning = longRunning + 1
    elseif dryRun then
      if (tonumber(job[4]) or 0) + 1 > maxStalled and not isRepeatable(job[3]) then failedNext = failedNext + 1 end
      reply[#reply + 1] = jobId
    elseif rcall('LREM', activeKey, -1, jobId) > 0 then  -- still active (a worker may have finished it)
      if locked then rcall('DEL', jobKey .. ':lock') end
      rcall('SREM', stalledKey, jobId)
      if rcall('HINCRBY', jobKey, 'stc', 1) > maxStalled and not isRepeatable(job[3]) then
        rcall('HSET', jobKey, 'defa', STALLED_REASON)
        failedNext = failedNext + 1
      end
      -- BullMQ's stalled script (5.81.5 and 6.7.0) RPUSHes every job to wait; a prioritized job goes
      -- back to `prioritized` here, scored as addJobWithPriority/getPriorityScore do, so it keeps its priority.
      local priority = tonumber(job[2]) or 0
      if priority > 0 then
        rcall('ZADD', prioritizedKey, priority * 0x100000000 + rcall('INCR', counterKey) % 0x100000000, jobId)
      else
        rcall('RPUSH', readyKey, jobId)
      end
      -- addBaseMarkerIfNeeded: no marker while paused or maxed by global concurrency
      if not paused and not (concurrency and rcall('LLEN', activeKey) >= concurrency) then wake = true end
      rcall('XADD', eventsKey, 'MAXLEN', '~', maxEvents, '*', 'event', 'waiting', 'jobId', jobId, 'prev', 'active')
      rcall('XADD', eventsKey, 'MAXLEN', '~', maxEvents, '*', 'event', 'stalled', 'jobId', jobId)
      reply[#reply + 1] = jobId
    end
  end
end
if wake then rcall('ZADD', markerKey, 0, '0') end
reply[2], reply[3] = longRunning, failedNext
return reply
"""
)
_script: list[Any] = []  # the registered Script, created on first use


@dataclass(frozen=True)
class StuckJobSettings:
    queues: QueueSettings
    threshold_ms: int
    max_stalled_count: int
    batch_size: int

    @classmethod
    def from_env(cls) -> StuckJobSettings:
        return cls(
            queues=QueueSettings.from_env(),
            threshold_ms=env_int("STUCK_JOB_THRESHOLD_MS", 300_000, minimum=0),
            # BullMQ's Worker default: the first stall requeues, the second fails the job.
            max_stalled_count=env_int("BULLMQ_MAX_STALLED_COUNT", 1, minimum=0),
            batch_size=env_int("STUCK_JOB_BATCH_SIZE", 500, 1, 5000),
        )

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.queues.queue_names, self.queues.high_priority_queue)))


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _HealRun:
    client: redis.Redis
    settings: StuckJobSettings
    budget: Budget
    dry_run: bool
    force: bool
    requeued_ids: list[str] = field(default_factory=list)  # "queue:id", the first REPORTED_JOBS

    def heal_queue(self, queue: str, report: dict[str, Any]) -> bool:
        """Heals one queue, a slice of ``active`` per script call; False when the budget ran out first."""
        if not _script:
            _script.append(self.client.register_script(_HEAL_LUA))
        settings = self.settings
        keys = [queue_key(settings.queues.prefix, queue, key_type) for key_type in _KEY_TYPES]
        head = [settings.threshold_ms, settings.max_stalled_count, int(self.dry_run), int(self.force)]

        def run(job_ids: list[str]) -> list[Any] | None:
            """The script's reply for these ids, or None after recording why the queue is left alone."""
            reply = [_text(item) for item in _script[0](keys=keys, args=head + job_ids, client=self.client)]
            if reply[0] == "ok":
                report["bullmqLayout"] = reply[3]
                return reply
            report["skipped"] = reply[1] if reply[0] == "skip" else None  # "empty": no keys at all
            return None

        if run([]) is None:  # layout and version first: LRANGE on a key of another type would fail
            return True
        seen: set[str] = set()
        kept_at_tail = 0  # ids looked at and left in active: the next slice ends left of them
        while True:
            if self.budget.exhausted():
                return False
            start, end = -(kept_at_tail + settings.batch_size), -(kept_at_tail + 1)
            slice_ids = [_text(job_id) for job_id in self.client.lrange(keys[0], start, end)]
            fresh = [job_id for job_id in slice_ids if job_id not in seen]  # workers may shift the list under us
            seen.update(fresh)
            reply = run(fresh)
            if reply is None:
                return True
            healed = reply[4:]
            report["longRunning"] += reply[1]
            report["failedNext"] += reply[2]
            report["requeued"] += len(healed)
            room = REPORTED_JOBS - len(self.requeued_ids)
            self.requeued_ids.extend(f"{queue}:{job_id}" for job_id in healed[:room])
            kept_at_tail += len(slice_ids) - (0 if self.dry_run else len(healed))
            if len(slice_ids) < settings.batch_size:
                return True


def heal_stuck_jobs(
    client: redis.Redis, settings: StuckJobSettings, budget: Budget, dry_run: bool = False, force: bool = False
) -> dict[str, Any]:
    """Requeue stuck active jobs of every configured queue (see the module docstring).

    Dry run: counts what would be requeued (every condition is checked, nothing is written;
    that a job is still active is taken from the slice just read). ``skipped``: the queues left
    alone because their layout is unknown, with the reason (the run then says ``incomplete``).
    """
    heal = _HealRun(client, settings, budget, dry_run, force)
    queues = {
        name: {"requeued": 0, "longRunning": 0, "failedNext": 0, "skipped": None, "bullmqLayout": None}
        for name in settings.queue_names
    }
    partial = False
    for name, report in queues.items():
        if partial or budget.exhausted():
            partial = True
            report["skipped"] = BUDGET_EXHAUSTED
        else:
            partial = not heal.heal_queue(name, report)
    unknown_layouts = [
        f"{name}: {report['skipped']}"
        for name, report in queues.items()
        if report["skipped"] not in (None, BUDGET_EXHAUSTED)
    ]
    return {
        "count": sum(report["requeued"] for report in queues.values()),
        "partial": partial,
        "skipped": unknown_layouts,
        "longRunning": sum(report["longRunning"] for report in queues.values()),
        "failedNext": sum(report["failedNext"] for report in queues.values()),
        "queues": queues,
        "requeuedJobs": heal.requeued_ids,
    }
