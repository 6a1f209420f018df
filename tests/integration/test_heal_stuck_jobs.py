"""heal_stuck_jobs() against real bullmq 5 and 6 workers (Node) that died mid-job.

Each state is made by the real bullmq (tests/bullmq/scenario.mjs, or a few lines of inline
Node for what it cannot make) on the shared Redis under a prefix of its own, deleted
afterwards, once per major (the ``bullmq_major`` fixture). A killed worker leaves its jobs in
``active``; the heal must put them back so a fresh Node worker of the same major completes
(or, over maxStalledCount, fails) each exactly once, and Node's own getJobCounts() agrees
with what we read.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from bullmq_scenario import SCENARIO, all_counts, node_state, prefix_keys, run_scenario, wait_locks_expired
from parel_monitoring.bullmq import COUNT_TYPES, job_counts
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.jobs import STALLED_REASON, StuckJobSettings, heal_stuck_jobs
from parel_monitoring.settings import ConfigurationError

SHORT_LOCK_MS = 500
PRIORITY_SCORE_UNIT = 0x100000000  # getPriorityScore: priority * 2^32 + counter

# Adds one prioritized job, lets a Worker take it (its processor never settles), then dies.
PRIORITIZED_CRASH_MJS = """
import fs from 'node:fs';
const { Queue, Worker } = await import(process.env.BULLMQ_MAJOR === '6' ? 'bullmq6' : 'bullmq5');
const { HEAL_PREFIX: prefix, HEAL_QUEUE: name, HEAL_PRIORITY: priority, HEAL_LOCK_MS: lockDuration } = process.env;
const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null };
const job = await new Queue(name, { connection, prefix }).add('prioritized-crash', {}, { priority: Number(priority) });
new Worker(name, () => new Promise(() => {}), { connection, prefix, lockDuration: Number(lockDuration) });
for (const deadline = Date.now() + 10000; (await job.getState()) !== 'active'; ) {
  if (Date.now() > deadline) throw new Error('the job did not become active');
  await new Promise(resolve => setTimeout(resolve, 20));
}
fs.writeSync(1, JSON.stringify({ id: job.id }) + '\\n');
process.kill(process.pid, 'SIGKILL');
"""


@pytest.fixture
def client(redis_client):
    return redis_client


@pytest.fixture
def configure(monkeypatch):
    """``configure(prefix, queues, **env)``: StuckJobSettings.from_env() with these variables (threshold 0 default)."""

    def settings(prefix: str, queues: list[str], **env: Any) -> StuckJobSettings:
        variables = {"STUCK_JOB_THRESHOLD_MS": 0, **env}
        for name in ("STUCK_JOB_THRESHOLD_MS", "BULLMQ_MAX_STALLED_COUNT", "STUCK_JOB_BATCH_SIZE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("BULLMQ_PREFIX", prefix)
        monkeypatch.setenv("QUEUE_NAMES", ",".join(queues))
        monkeypatch.setenv("HIGH_PRIORITY_QUEUE", queues[0])
        for name, value in variables.items():
            if value is not None:
                monkeypatch.setenv(name, str(value))
        return StuckJobSettings.from_env()

    return settings


# --------------------------------------------------------------------------- helpers


def crash(prefix: str, queue: str, count: int = 1, lock_ms: int = SHORT_LOCK_MS, **options: Any) -> list[str]:
    """Job ids a SIGKILLed bullmq worker left in ``active`` (locks of ``lock_ms``)."""
    crashed = run_scenario(
        "crash-active",
        prefix,
        queue,
        count=count,
        lock_duration=lock_ms,
        kill="SIGKILL",
        allowed_returncodes=(-9,),
        **options,
    )
    assert sorted(crashed["active"]) == sorted(crashed["ids"]) and len(crashed["ids"]) == count
    return crashed["ids"]


def crash_prioritized(prefix: str, queue: str, priority: int) -> str:
    """The id of a job added with ``priority`` and left active by a SIGKILLed worker."""
    env = {
        "HEAL_PREFIX": prefix,
        "HEAL_QUEUE": queue,
        "HEAL_PRIORITY": str(priority),
        "HEAL_LOCK_MS": str(SHORT_LOCK_MS),
    }
    result = subprocess.run(
        ["node", "--input-type=module", "-e", PRIORITIZED_CRASH_MJS],
        cwd=SCENARIO.parent,  # so that bullmq5/bullmq6 resolve from tests/bullmq/node_modules
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == -9, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["id"]


def work(prefix: str, queue: str, seconds: float = 1.0, **options: Any) -> dict[str, Any]:
    """What a fresh bullmq Worker completed, failed and reported stalled in ``seconds``."""
    return run_scenario("work", prefix, queue, seconds=seconds, **options)


def in_parallel(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def dump(client: redis.Redis, prefix: str, queue: str | None = None) -> dict[str, bytes | None]:
    """Every key under the prefix (or one queue's) with its DUMP: any change shows."""
    keys = prefix_keys(prefix)
    if queue is not None:
        keys = [key for key in keys if key.startswith(f"{prefix}:{queue}:")]
    return {key: client.dump(key) for key in keys}


def job_field(client: redis.Redis, prefix: str, queue: str, job_id: str, field: str) -> str | None:
    value = client.hget(f"{prefix}:{queue}:{job_id}", field)
    return value.decode() if value is not None else None


def assert_counts(client: redis.Redis, prefix: str, queue: str, expected: dict[str, int]) -> dict[str, Any]:
    """Our job_counts() == bullmq's getJobCounts() (8 types) == ``expected`` (other types 0); Node's state returned."""
    node = node_state(prefix, queue)
    ours = job_counts(client, prefix, [queue])[queue]
    assert {key: ours[key] for key in COUNT_TYPES} == all_counts(node)
    assert all_counts(node) == {**dict.fromkeys(COUNT_TYPES, 0), **expected}
    return node


def events_of(client: redis.Redis, prefix: str, queue: str, job_id: str) -> list[dict[str, str]]:
    entries = client.xrange(f"{prefix}:{queue}:events")
    decoded = [{key.decode(): value.decode() for key, value in fields.items()} for _, fields in entries]
    return [entry for entry in decoded if entry.get("jobId") == job_id]


def no_change_report(
    queues: list[str], skipped: dict[str, str | None] | None = None, layout: int | None = None
) -> dict[str, Any]:
    reports = {
        name: {"requeued": 0, "longRunning": 0, "failedNext": 0, "skipped": None, "bullmqLayout": layout}
        for name in queues
    }
    for name, reason in (skipped or {}).items():
        reports[name]["skipped"] = reason
    return reports


def report(requeued: int, layout: int, **other: int) -> dict[str, Any]:
    """One queue's report after a heal that got to it."""
    return {"requeued": requeued, "longRunning": 0, "failedNext": 0, "skipped": None, "bullmqLayout": layout, **other}


# --------------------------------------------------------------------------- requeue


def test_jobs_of_a_killed_worker_are_requeued_and_completed_once(client, prefix, configure, bullmq_major):
    run_scenario("populate", prefix, "crashy", completed=2)
    crashed = crash(prefix, "crashy", count=6)
    wait_locks_expired(client, prefix, "crashy", crashed)
    settings = configure(prefix, ["crashy"], STUCK_JOB_BATCH_SIZE=4)  # two slices

    result = heal_stuck_jobs(client, settings, Budget())

    assert result["count"] == 6 and result["partial"] is False
    assert result["longRunning"] == 0 and result["failedNext"] == 0
    assert result["queues"] == {"crashy": report(6, bullmq_major)} and result["skipped"] == []
    assert sorted(result["requeuedJobs"]) == sorted(f"crashy:{job_id}" for job_id in crashed)
    assert_counts(client, prefix, "crashy", {"waiting": 6, "completed": 2})
    assert client.zscore(f"{prefix}:crashy:marker", "0") == 0  # blocked workers are woken
    for job_id in crashed:
        assert job_field(client, prefix, "crashy", job_id, "stc") == "1"
        assert job_field(client, prefix, "crashy", job_id, "defa") is None  # 1 stall is within maxStalledCount 1
        assert not client.sismember(f"{prefix}:crashy:stalled", job_id)
        events = [entry["event"] for entry in events_of(client, prefix, "crashy", job_id)]
        assert events[-2:] == ["waiting", "stalled"]
        assert {"event": "waiting", "jobId": job_id, "prev": "active"} in events_of(client, prefix, "crashy", job_id)

    # A second run finds nothing to do and changes nothing.
    before = dump(client, prefix)
    again = heal_stuck_jobs(client, settings, Budget())
    assert again["count"] == 0 and again["requeuedJobs"] == [] and again["partial"] is False
    assert dump(client, prefix) == before

    worked = work(prefix, "crashy")
    assert sorted(worked["completed"]) == sorted(crashed) and len(worked["completed"]) == len(set(worked["completed"]))
    assert worked["failed"] == [] and worked["stalled"] == []
    assert_counts(client, prefix, "crashy", {"completed": 8})


def test_live_lock_is_long_running_and_only_force_requeues_it(client, prefix, configure, bullmq_major):
    live = crash(prefix, "busy", count=1, lock_ms=30_000)  # the lock outlives the test's first heal
    settings = configure(prefix, ["busy"])
    before = dump(client, prefix)

    result = heal_stuck_jobs(client, settings, Budget())
    assert (result["count"], result["longRunning"], result["partial"]) == (0, 1, False)
    assert result["queues"]["busy"] == report(0, bullmq_major, longRunning=1)
    assert dump(client, prefix) == before

    forced = heal_stuck_jobs(client, settings, Budget(), force=True)
    assert forced["count"] == 1 and forced["requeuedJobs"] == [f"busy:{live[0]}"] and forced["longRunning"] == 0
    assert client.exists(f"{prefix}:busy:{live[0]}:lock") == 0
    assert_counts(client, prefix, "busy", {"waiting": 1})
    assert work(prefix, "busy")["completed"] == live


def test_job_younger_than_the_threshold_is_left_alone(client, prefix, configure, bullmq_major):
    crashed = crash(prefix, "recent", count=2)
    wait_locks_expired(client, prefix, "recent", crashed)
    settings = configure(prefix, ["recent"], STUCK_JOB_THRESHOLD_MS=None)  # default 300000
    assert settings.threshold_ms == 300_000
    before = dump(client, prefix)

    result = heal_stuck_jobs(client, settings, Budget())

    assert (result["count"], result["longRunning"]) == (0, 0)
    assert result["queues"] == no_change_report(["recent"], layout=bullmq_major)
    assert dump(client, prefix) == before
    assert_counts(client, prefix, "recent", {"active": 2})


def test_paused_queue_gets_the_job_where_its_major_keeps_them_without_a_marker(client, prefix, configure, bullmq_major):
    crashed = crash(prefix, "held", count=2)
    run_scenario("pause", prefix, "held")
    wait_locks_expired(client, prefix, "held", crashed)

    result = heal_stuck_jobs(client, configure(prefix, ["held"]), Budget())

    assert result["count"] == 2 and result["queues"]["held"] == report(2, bullmq_major)
    # bullmq 5 keeps a paused queue's jobs in `paused`; bullmq 6 in `wait`, even while paused.
    node = assert_counts(client, prefix, "held", {"paused" if bullmq_major == 5 else "waiting": 2})
    assert node["isPaused"] is True and node["waitingCount"] == 2
    assert client.exists(f"{prefix}:held:marker") == 0  # paused: no worker is woken
    assert work(prefix, "held", seconds=0.5)["completed"] == []  # still paused
    run_scenario("resume", prefix, "held")
    worked = work(prefix, "held")
    assert sorted(worked["completed"]) == sorted(crashed) and len(set(worked["completed"])) == 2
    assert worked["failed"] == [] and worked["stalled"] == []
    assert_counts(client, prefix, "held", {"completed": 2})


def test_prioritized_job_goes_back_to_prioritized_with_bullmqs_score(client, prefix, configure, bullmq_major):
    job_id = crash_prioritized(prefix, "ranked", priority=7)
    wait_locks_expired(client, prefix, "ranked", [job_id])
    assert_counts(client, prefix, "ranked", {"active": 1})

    result = heal_stuck_jobs(client, configure(prefix, ["ranked"]), Budget())

    assert result["count"] == 1 and result["requeuedJobs"] == [f"ranked:{job_id}"]
    assert_counts(client, prefix, "ranked", {"prioritized": 1})
    counter = int(client.get(f"{prefix}:ranked:pc"))
    assert client.zscore(f"{prefix}:ranked:prioritized", job_id) == 7 * PRIORITY_SCORE_UNIT + counter
    assert client.llen(f"{prefix}:ranked:wait") == 0
    assert client.zscore(f"{prefix}:ranked:marker", "0") == 0
    assert work(prefix, "ranked")["completed"] == [job_id]
    assert_counts(client, prefix, "ranked", {"completed": 1})


def test_job_over_max_stalled_count_is_failed_by_the_next_worker_with_bullmqs_reason(
    client, prefix, configure, bullmq_major
):
    crashed = crash(prefix, "fragile", count=1)
    wait_locks_expired(client, prefix, "fragile", crashed)
    settings = configure(prefix, ["fragile"], BULLMQ_MAX_STALLED_COUNT=0)

    result = heal_stuck_jobs(client, settings, Budget())

    assert result["count"] == 1 and result["failedNext"] == 1
    assert result["queues"]["fragile"] == report(1, bullmq_major, failedNext=1)
    assert job_field(client, prefix, "fragile", crashed[0], "defa") == STALLED_REASON
    worked = work(prefix, "fragile")
    assert worked["completed"] == [] and worked["failed"] == crashed
    assert worked["failedReasons"] == {crashed[0]: STALLED_REASON}
    state = run_scenario("job-state", prefix, "fragile", id=crashed[0])
    assert state["state"] == "failed" and state["job"]["failedReason"] == STALLED_REASON
    assert state["job"]["stalledCounter"] == 1 and state["job"]["deferredFailure"] is None
    assert_counts(client, prefix, "fragile", {"failed": 1})


# --------------------------------------------------------------------------- no change


def test_dry_run_counts_and_changes_nothing(client, prefix, configure, bullmq_major):
    crashed, live = in_parallel(
        lambda: crash(prefix, "stuck", count=3), lambda: crash(prefix, "alive", count=1, lock_ms=30_000)
    )
    wait_locks_expired(client, prefix, "stuck", crashed)
    settings = configure(prefix, ["stuck", "alive"], BULLMQ_MAX_STALLED_COUNT=0, STUCK_JOB_BATCH_SIZE=2)
    before = dump(client, prefix)

    dry = heal_stuck_jobs(client, settings, Budget(), dry_run=True)
    assert dump(client, prefix) == before
    assert (dry["count"], dry["longRunning"], dry["failedNext"], dry["partial"]) == (3, 1, 3, False)
    assert sorted(dry["requeuedJobs"]) == sorted(f"stuck:{job_id}" for job_id in crashed)
    forced_dry = heal_stuck_jobs(client, settings, Budget(), dry_run=True, force=True)
    assert (forced_dry["count"], forced_dry["longRunning"]) == (4, 0)
    assert dump(client, prefix) == before

    real = heal_stuck_jobs(client, settings, Budget())  # the dry run told the truth
    assert {key: real[key] for key in ("count", "longRunning", "failedNext")} == {
        key: dry[key] for key in ("count", "longRunning", "failedNext")
    }
    assert live and job_field(client, prefix, "alive", live[0], "stc") is None


def test_unknown_version_or_layout_is_skipped_untouched_and_reported(client, prefix, configure, bullmq_major):
    crashed = crash(prefix, "current", count=2)
    wait_locks_expired(client, prefix, "current", crashed)
    originals = prefix_keys(prefix)
    copies = ("legacy", "future", "versionless", "odd")
    for copy in copies:  # the same stuck jobs under other queue names (test-side copies)
        for key in originals:
            client.copy(key, key.replace(":current:", f":{copy}:", 1))
    client.hset(f"{prefix}:legacy:meta", "version", "bullmq:4.17.0")
    client.hset(f"{prefix}:future:meta", "version", "bullmq:7.0.0")
    client.hdel(f"{prefix}:versionless:meta", "version")
    client.delete(f"{prefix}:odd:marker")
    client.set(f"{prefix}:odd:marker", "not a sorted set")
    untouched = {queue: dump(client, prefix, queue) for queue in copies}

    result = heal_stuck_jobs(client, configure(prefix, ["current", *copies, "ghost"]), Budget())

    reasons = {
        "legacy": "version bullmq:4.17.0 is neither BullMQ 5 nor 6",
        "future": "version bullmq:7.0.0 is neither BullMQ 5 nor 6",
        "versionless": "meta has no version: cannot classify",
        "odd": f"unknown layout: {prefix}:odd:marker is a string, not a zset",
    }
    assert result["count"] == 2 and result["partial"] is False
    assert result["queues"]["current"] == report(2, bullmq_major)
    for queue, reason in reasons.items():
        assert result["queues"][queue] == no_change_report([queue], {queue: reason})[queue]
    assert result["skipped"] == [f"{queue}: {reason}" for queue, reason in reasons.items()]
    assert result["queues"]["ghost"] == no_change_report(["ghost"])["ghost"]  # no keys at all: simply empty
    for queue, keys in untouched.items():
        assert dump(client, prefix, queue) == keys, queue
    assert not [key for key in prefix_keys(prefix) if key.startswith(f"{prefix}:ghost:")]


# --------------------------------------------------------------------------- the same as bullmq's own recovery


def healed_state(client: redis.Redis, prefix: str, queue: str, job_ids: list[str], after: bytes) -> dict[str, Any]:
    """What a requeue changes: the lists and sets, marker, meta, job hashes and the events after ``after``."""
    key = f"{prefix}:{queue}:"
    events = [fields for _, fields in client.xrange(key + "events", min=b"(" + after)]
    return {
        "wait": sorted(client.lrange(key + "wait", 0, -1)),
        "paused": sorted(client.lrange(key + "paused", 0, -1)),
        "active": client.lrange(key + "active", 0, -1),
        "stalled": client.smembers(key + "stalled"),
        "prioritized": client.zrange(key + "prioritized", 0, -1, withscores=True),
        "marker": client.zrange(key + "marker", 0, -1, withscores=True),
        "meta": client.hgetall(key + "meta"),
        "jobs": {job_id: client.hgetall(key + job_id) for job_id in job_ids},
        "events": sorted(sorted(fields.items()) for fields in events),
    }


@pytest.mark.parametrize(("paused", "max_stalled"), [(False, 1), (True, 0)], ids=["running", "paused-over-limit"])
def test_requeue_leaves_what_bullmqs_own_stalled_recovery_leaves(
    client, prefix, configure, bullmq_major, paused, max_stalled
):
    crashed = crash(prefix, "ours", count=3, stalled_interval=100)  # its stalled-check key expires fast
    if paused:
        run_scenario("pause", prefix, "ours")
    wait_locks_expired(client, prefix, "ours", crashed)
    for key in prefix_keys(prefix):  # the same state under a second name, for bullmq itself to recover
        client.copy(key, key.replace(":ours:", ":theirs:", 1))
    last_event = {queue: client.xrevrange(f"{prefix}:{queue}:events", count=1)[0][0] for queue in ("ours", "theirs")}

    result = heal_stuck_jobs(client, configure(prefix, ["ours"], BULLMQ_MAX_STALLED_COUNT=max_stalled), Budget())
    bullmq = run_scenario("stalled-check", prefix, "theirs", max_stalled_count=max_stalled)

    assert sorted(result["requeuedJobs"]) == sorted(f"ours:{job_id}" for job_id in crashed)
    assert sorted(bullmq["stalled"]) == sorted(crashed)
    ours = healed_state(client, prefix, "ours", crashed, last_event["ours"])
    theirs = healed_state(client, prefix, "theirs", crashed, last_event["theirs"])
    assert ours == theirs
    assert ours["paused" if paused and bullmq_major == 5 else "wait"] == sorted(job.encode() for job in crashed)
    assert {job[b"stc"] for job in ours["jobs"].values()} == {b"1"}
    assert all((b"defa" in job) is (max_stalled == 0) for job in ours["jobs"].values())


# --------------------------------------------------------------------------- bullmq 5 and 6 on one queue


def test_crashed_6_worker_on_a_queue_paused_under_5_goes_to_paused_and_6_completes_it(client, prefix, configure):
    crashed = crash(prefix, "mixed", count=2, major=6)
    waiting = run_scenario("populate", prefix, "mixed", waiting=1, major=5)["ids"]["waiting"]
    run_scenario("pause", prefix, "mixed", major=5)  # bullmq 5 renames `wait` to `paused`
    assert run_scenario("open", prefix, "mixed", major=6)["version"] == "bullmq:6.7.0"  # the version says 6
    wait_locks_expired(client, prefix, "mixed", crashed)

    result = heal_stuck_jobs(client, configure(prefix, ["mixed"]), Budget())

    # The `paused` list makes it bullmq 5's layout: the jobs join it, where a resume by either major finds them.
    assert result["queues"]["mixed"] == report(2, 5)
    assert sorted(client.lrange(f"{prefix}:mixed:paused", 0, -1)[-2:]) == sorted(job_id.encode() for job_id in crashed)
    assert client.llen(f"{prefix}:mixed:wait") == 0
    run_scenario("resume", prefix, "mixed", major=6)
    worked = work(prefix, "mixed", major=6)
    assert sorted(worked["completed"], key=int) == sorted([*crashed, *waiting], key=int)  # each exactly once
    assert worked["failed"] == []
    assert_counts(client, prefix, "mixed", {"completed": 3})


def test_crashed_6_worker_on_a_paused_queue_opened_by_5_too_stays_in_wait(client, prefix, configure):
    crashed = crash(prefix, "flip", count=2, major=6)
    run_scenario("pause", prefix, "flip", major=6)
    waiting = run_scenario("populate", prefix, "flip", waiting=1, major=6)["ids"]["waiting"]  # in `wait`, paused
    assert run_scenario("open", prefix, "flip", major=5)["version"] == "bullmq:5.81.5"  # the version says 5
    wait_locks_expired(client, prefix, "flip", crashed)

    result = heal_stuck_jobs(client, configure(prefix, ["flip"]), Budget())

    # Jobs in `wait` while paused and no `paused` list: bullmq 6's layout, whatever the version says.
    assert result["queues"]["flip"] == report(2, 6)
    assert client.llen(f"{prefix}:flip:wait") == 3 and not client.exists(f"{prefix}:flip:paused")
    run_scenario("resume", prefix, "flip", major=6)
    worked = work(prefix, "flip", major=6)
    assert sorted(worked["completed"], key=int) == sorted([*crashed, *waiting], key=int)  # each exactly once
    assert worked["failed"] == []
    assert_counts(client, prefix, "flip", {"completed": 3})


class CountdownBudget(Budget):
    """Exhausted after ``checks`` calls of exhausted()."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def exhausted(self) -> bool:
        self.checks -= 1
        return self.checks < 0


def test_budget_runs_out_partial_and_a_later_run_finishes(client, prefix, configure, bullmq_major):
    first, second = in_parallel(lambda: crash(prefix, "one", count=5), lambda: crash(prefix, "two", count=1))
    wait_locks_expired(client, prefix, "one", first)
    wait_locks_expired(client, prefix, "two", second)
    settings = configure(prefix, ["one", "two"], STUCK_JOB_BATCH_SIZE=2)
    before = dump(client, prefix)

    nothing = heal_stuck_jobs(client, settings, Budget(reserve_ms=10_000, total_ms=1_000))
    assert nothing["partial"] is True and nothing["count"] == 0
    assert nothing["queues"] == no_change_report(["one", "two"], {"one": "budget exhausted", "two": "budget exhausted"})
    assert nothing["skipped"] == []  # out of time is partial, not incomplete
    assert dump(client, prefix) == before

    part = heal_stuck_jobs(client, settings, CountdownBudget(checks=2))  # queue "one": one slice of 2
    assert part["partial"] is True and part["count"] == 2
    assert part["queues"]["one"]["requeued"] == 2 and part["queues"]["two"]["skipped"] == "budget exhausted"

    rest = heal_stuck_jobs(client, settings, Budget())
    assert rest["partial"] is False and rest["count"] == 4
    assert (rest["queues"]["one"]["requeued"], rest["queues"]["two"]["requeued"]) == (3, 1)
    assert_counts(client, prefix, "one", {"waiting": 5})


# --------------------------------------------------------------------------- next to live workers


def test_safe_next_to_a_live_worker_and_its_stalled_checker(client, prefix, configure, bullmq_major):
    # crash-active's stalled-check key lives for --stalled-interval: short, so Node's checker races us.
    crashed = crash(prefix, "shared", count=20, stalled_interval=100)
    wait_locks_expired(client, prefix, "shared", crashed)
    settings = configure(prefix, ["shared"], STUCK_JOB_BATCH_SIZE=2)
    done = threading.Event()
    results: list[dict[str, Any]] = []

    def heal_repeatedly() -> None:  # one slice of 2 per run, slowly: Node's checker gets the rest
        while not done.is_set():
            results.append(heal_stuck_jobs(client, settings, CountdownBudget(checks=2)))
            time.sleep(0.05)

    healer = threading.Thread(target=heal_repeatedly)
    healer.start()
    try:
        worked = work(prefix, "shared", seconds=2.5, concurrency=4, job_ms=50, stalled_interval=100)
    finally:
        done.set()
        healer.join()

    requeued_by_us = sum(result["count"] for result in results)
    assert requeued_by_us > 0 and len(worked["stalled"]) + requeued_by_us == 20
    assert sorted(worked["completed"], key=int) == sorted(crashed, key=int)  # each exactly once
    assert worked["failed"] == []
    assert_counts(client, prefix, "shared", {"completed": 20})


# --------------------------------------------------------------------------- settings


def test_settings_defaults_and_bounds(monkeypatch):
    for name in ("STUCK_JOB_THRESHOLD_MS", "BULLMQ_MAX_STALLED_COUNT", "STUCK_JOB_BATCH_SIZE", "BULLMQ_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUEUE_NAMES", "default,high-priority,emails")
    monkeypatch.setenv("HIGH_PRIORITY_QUEUE", "urgent")
    settings = StuckJobSettings.from_env()
    assert (settings.threshold_ms, settings.max_stalled_count, settings.batch_size) == (300_000, 1, 500)
    assert settings.queue_names == ("default", "high-priority", "emails", "urgent")
    for name, value in [
        ("STUCK_JOB_THRESHOLD_MS", "-1"),
        ("BULLMQ_MAX_STALLED_COUNT", "-1"),
        ("STUCK_JOB_BATCH_SIZE", "0"),
        ("STUCK_JOB_BATCH_SIZE", "5001"),
        ("STUCK_JOB_BATCH_SIZE", "many"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError) as caught:
            StuckJobSettings.from_env()
        assert caught.value.variable == name
        monkeypatch.delenv(name)
