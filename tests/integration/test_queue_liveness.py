"""Issue 15 on real parts: live workers, the oldest waiting job's age, and the Redis settings that lose jobs.

Workers are real Node bullmq Workers (5 and 6: the ``bullmq_major`` fixture) kept alive by
``scenario.mjs workers`` (``tests/live_workers.py``); each count is compared with Node's own
``queue.getWorkersCount()`` on the same Redis. Jobs with known ages are added by ``scenario.mjs add-aged``
(bullmq's ``timestamp`` job option), so no test waits for a job to grow old. The Redis rules run on
throwaway ``redis-server`` processes started from a config file of the test's own (an evicting policy, a small
``maxmemory``, ``rename-command CLIENT ""``); the Cluster case on the session's real 3-master cluster.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from bullmq_scenario import REDIS_URL, SCENARIO, run_scenario, unique_prefix
from live_workers import live_workers
from parel_monitoring.bullmq import RedisSettings, count_workers, get_redis, queue_state, worker_client_name
from parel_monitoring.health import public_check
from parel_monitoring.health.aggregate import public_result
from parel_monitoring.health.queue import QueueHealthSettings, check_queue_health
from parel_monitoring.health.route import single_view
from parel_monitoring.settings import ConfigurationError

HP = "high-priority"
NEW_FIELDS = ("workers", "workersError", "oldestWaitingAgeSeconds", "redis", "reasons", "queues", "thresholds")


def check(settings: QueueHealthSettings) -> dict:
    return check_queue_health(settings, get_redis(settings.redis))


def by_name(result: dict) -> dict[str, dict]:
    return {queue["name"]: queue for queue in result["queues"]}


def node_workers(prefix: str, queues: list[str], redis_url: str = REDIS_URL, **options) -> dict[str, int]:
    return run_scenario("workers-count", prefix, queues[0], redis_url, queues=",".join(queues), **options)[
        "workersCount"
    ]


# --------------------------------------------------------------------------- workers


def test_worker_counts_equal_nodes_while_alive_and_zero_after_exit(queue_config, prefix, bullmq_major):
    run_scenario("add-aged", prefix, HP, ages="120,30")  # waiting for two minutes
    run_scenario("add-aged", prefix, "default", ages="90")
    settings = queue_config(prefix, QUEUE_NAMES=f"{HP},default,idle")
    with live_workers(prefix, [HP, "default"], count=2, names=["mailer"]) as started:
        alive = check(settings)
        node = node_workers(prefix, [HP, "default", "idle"])
    assert started == {HP: 2, "default": 2}
    queues = by_name(alive)
    assert {name: queue["workers"] for name, queue in queues.items()} == node == {HP: 2, "default": 2, "idle": 0}
    assert all("workersError" not in queue for queue in queues.values())
    # Workers are alive: the jobs are only old (HP 120 s: degraded, below the 300 s critical).
    assert alive["status"] == "degraded", alive["reasons"]
    assert not any("no live worker" in reason for reason in alive["reasons"])

    gone = check(settings)
    queues = by_name(gone)
    assert {name: queue["workers"] for name, queue in queues.items()} == node_workers(prefix, [HP, "default", "idle"])
    assert all(queue["workers"] == 0 for queue in queues.values())
    assert gone["status"] == "unhealthy"  # the high-priority queue's oldest job waited past the grace, no worker
    stranded = [reason for reason in gone["reasons"] if "no live worker" in reason]
    assert len(stranded) == 2 and stranded[0].startswith(f"high-priority queue {HP}: no live worker")
    assert stranded[1].startswith("queue default: no live worker"), stranded  # "idle" has no waiting job


@pytest.mark.parametrize(("age", "status"), [(10, "healthy"), (61, "unhealthy")])
def test_no_worker_grace_on_the_high_priority_queue(queue_config, prefix, bullmq_major, age, status):
    run_scenario("add-aged", prefix, HP, ages=str(age))
    result = check(queue_config(prefix, QUEUE_AGE_WARNING_S="100", QUEUE_AGE_CRITICAL_S="200"))
    assert by_name(result)[HP]["workers"] == 0
    assert result["status"] == status, result["reasons"]


def test_other_queues_without_workers_are_degraded_only(queue_config, prefix, bullmq_major):
    run_scenario("open", prefix, HP)
    run_scenario("add-aged", prefix, "default", ages="400")
    with live_workers(prefix, [HP]):
        result = check(queue_config(prefix, QUEUE_NAMES=f"{HP},default"))
    assert result["status"] == "degraded"
    assert [reason.split(":")[0] for reason in result["reasons"]] == ["queue default", "queue default"]
    assert "no live worker" in result["reasons"][0] and "oldest waiting job 40" in result["reasons"][1]


def test_a_paused_queue_without_workers_is_left_to_the_pause_rule(queue_config, prefix, bullmq_major):
    run_scenario("open", prefix, HP)
    run_scenario("add-aged", prefix, "bulk", ages="30")
    run_scenario("pause", prefix, "bulk")
    with live_workers(prefix, [HP]):
        result = check(queue_config(prefix, QUEUE_NAMES=f"{HP},bulk", QUEUE_NO_WORKER_GRACE_S="5"))
    assert by_name(result)["bulk"]["workers"] == 0 and result["pausedQueues"] == ["bulk"]
    assert result["status"] == "healthy", result["reasons"]


def test_worker_names_are_matched_as_bullmq_matches_them():
    base = worker_client_name("bull", "mail")  # bull:bWFpbA==
    assert base == "bull:bWFpbA=="
    lines = [
        f"id=1 addr=127.0.0.1:1 laddr=x fd=8 name={base} age=1 cmd=bzpopmin lib-name=ioredis",
        f"id=2 addr=127.0.0.1:2 fd=9 name={base}:w:sender:w:x age=1",  # a named worker (":w:" in its name too)
        f"id=3 addr=127.0.0.1:3 fd=9 name={base}:qe age=1",  # QueueEvents: not a worker
        f"id=4 addr=127.0.0.1:4 fd=9 name={base}x age=1",  # another queue whose base64 starts alike
        "id=5 addr=127.0.0.1:5 fd=9 name= age=1 lib-name=bull:bWFpbA==",  # an unnamed one
        f"id=6 addr=127.0.0.1:6 fd=9 name={worker_client_name('other', 'mail')} age=1",  # another prefix
    ]
    assert count_workers("\n".join(lines) + "\n", "bull", ["mail", "bWFpbA"]) == {"mail": 2, "bWFpbA": 0}


# --------------------------------------------------------------------------- the oldest waiting job


def assert_age(reading: float | None, truth: float) -> None:
    assert reading is not None and abs(reading - truth) <= 1.0, f"age {reading} s, truth {truth} s"


def oldest_added(prefix: str, queue: str, **options) -> int:
    """``add-aged`` and the oldest ``timestamp`` (ms) it gave a job."""
    return min(job["timestamp"] for job in run_scenario("add-aged", prefix, queue, **options)["jobs"])


def test_oldest_age_of_waiting_prioritized_and_paused_jobs(queue_config, prefix, bullmq_major, redis_client):
    oldest = {"plain": oldest_added(prefix, "plain", ages="5,200,40")}  # not in timestamp order: oldest mid-list
    prio = [oldest_added(prefix, "prio", ages="50", priority=1), oldest_added(prefix, "prio", ages="150", priority=7)]
    prio.append(oldest_added(prefix, "prio", ages="10", priority=3))
    oldest["prio"] = min(prio)  # the oldest at a less urgent level
    run_scenario("pause", prefix, "held")
    oldest["held"] = oldest_added(prefix, "held", ages="80,20")  # bullmq 5: the `paused` list; 6: `wait`
    run_scenario("populate", prefix, "later", delayed=2)  # delayed jobs are not waiting
    run_scenario("open", prefix, "empty")
    names = ["plain", "prio", "held", "later", "empty"]
    layout = {"paused": 2} if bullmq_major == 5 else {"waiting": 2}
    state = queue_state(redis_client, prefix, names)
    now_ms = time.time() * 1000
    for name, added in oldest.items():
        assert_age(state.queues[name]["oldestWaitingAgeSeconds"], (now_ms - added) / 1000)
    assert state.queues["later"]["oldestWaitingAgeSeconds"] is None and state.queues["later"]["delayed"] == 2
    assert state.queues["empty"]["oldestWaitingAgeSeconds"] is None
    assert {key: state.queues["held"][key] for key in layout} == layout

    result = check(queue_config(prefix, QUEUE_NAMES=",".join(names), HIGH_PRIORITY_QUEUE="prio"))
    assert_age(result["thresholds"]["oldestWaitingAge"]["current"], time.time() - oldest["prio"] / 1000)
    assert result["status"] == "unhealthy"  # prio (the high-priority queue here): no worker past the grace


@pytest.mark.parametrize(("age", "status"), [(30, "healthy"), (90, "degraded"), (400, "unhealthy")])
def test_age_thresholds_on_the_high_priority_queue_with_a_live_worker(queue_config, prefix, bullmq_major, age, status):
    added = oldest_added(prefix, HP, ages=str(age))
    with live_workers(prefix, [HP]):
        result = check(queue_config(prefix))
        read_at = time.time()
    assert_age(by_name(result)[HP]["oldestWaitingAgeSeconds"], read_at - added / 1000)
    assert result["status"] == status, result["reasons"]
    if status != "healthy":
        shown = by_name(result)[HP]["oldestWaitingAgeSeconds"]
        limits = "QUEUE_AGE_WARNING_S 60 s, QUEUE_AGE_CRITICAL_S 300 s"
        assert result["reasons"] == [f"high-priority queue {HP}: oldest waiting job {shown:g} s old ({limits})"]


def test_a_retried_job_waits_since_its_last_start(queue_config, prefix, bullmq_major, redis_client):
    ids = [job["id"] for job in run_scenario("add-aged", prefix, HP, ages="600")["jobs"]]
    started_ms = int(redis_client.time()[0] * 1000) - 20_000  # as if it had been started 20 s ago, then retried
    redis_client.hset(f"{prefix}:{HP}:{ids[0]}", "processedOn", started_ms)
    assert_age(queue_state(redis_client, prefix, [HP]).queues[HP]["oldestWaitingAgeSeconds"], 20)


# --------------------------------------------------------------------------- Redis memory and policy


def test_an_evicting_policy_is_degraded_naming_it(queue_config, throwaway_redis, bullmq_major):
    url = throwaway_redis("maxmemory-policy allkeys-lru")
    prefix = unique_prefix("lru")
    run_scenario("populate", prefix, HP, url, completed=2)
    result = check(queue_config(prefix, REDIS_URL=url))
    assert result["status"] == "degraded"
    assert result["redis"]["maxmemoryPolicy"] == "allkeys-lru"
    assert result["reasons"] == [
        "Redis maxmemory-policy is allkeys-lru: BullMQ requires noeviction; under memory pressure Redis may delete "
        "job keys and locks (jobs lost or processed twice)"
    ]


def test_memory_past_the_thresholds(queue_config, throwaway_redis):
    url = throwaway_redis("maxmemory 8mb", "maxmemory-policy noeviction")
    prefix = unique_prefix("mem")
    run_scenario("open", prefix, HP, url)
    filler = redis.Redis.from_url(url)
    limit = int(filler.info("memory")["maxmemory"])
    seen: dict[str, dict] = {}
    try:
        for index in range(10_000):
            usage = int(filler.info("memory")["used_memory"]) / limit * 100
            if usage >= 93:
                break
            filler.set(f"filler:{index}", b"x" * 20_000)
            if 83 <= usage < 88 and "degraded" not in seen:
                seen["degraded"] = check(queue_config(prefix, REDIS_URL=url))
        seen["unhealthy"] = check(queue_config(prefix, REDIS_URL=url))
    finally:
        filler.close()
    for status, result in seen.items():
        memory = result["redis"]
        assert result["status"] == status, (status, memory)
        assert memory["maxmemoryBytes"] == limit == 8 * 1024 * 1024 and memory["maxmemoryPolicy"] == "noeviction"
        assert memory["usagePercent"] == round(memory["usedMemoryBytes"] / limit * 100, 1)
        assert result["thresholds"]["redisMemory"] == {"warning": 80, "critical": 90, "current": memory["usagePercent"]}
        assert result["reasons"][0].startswith(f"Redis memory {memory['usagePercent']}% of maxmemory")
    assert set(seen) == {"degraded", "unhealthy"}


def test_a_redis_refusing_client_list_leaves_workers_unknown(queue_config, throwaway_redis, bullmq_major):
    url = throwaway_redis('rename-command CLIENT ""')
    prefix = unique_prefix("nocl")
    run_scenario("add-aged", prefix, HP, url, ages="90")  # bullmq cannot name its connections here either
    result = check(queue_config(prefix, REDIS_URL=url, QUEUE_NAMES=f"{HP},default"))
    for queue in result["queues"]:
        assert queue["workers"] is None
        assert queue["workersError"].startswith("CLIENT LIST refused by the server (unknown command 'CLIENT'"), queue
    # Unknown workers do not make it unhealthy: the 90 s age alone decides (degraded, below 300 s).
    assert result["status"] == "degraded"
    assert [reason.split(":")[0] for reason in result["reasons"]] == ["missing queues", f"high-priority queue {HP}"]
    assert "oldest waiting job 9" in result["reasons"][1]
    assert result["redis"]["maxmemoryPolicy"] == "noeviction"


# --------------------------------------------------------------------------- who sees what


def test_anonymous_views_carry_none_of_the_new_figures(queue_config, prefix, bullmq_major):
    run_scenario("add-aged", prefix, HP, ages="120")
    result = check(queue_config(prefix))
    assert result["status"] == "unhealthy" and result["reasons"] and by_name(result)[HP]["workers"] == 0
    public, _ = single_view(result, False, False)
    assert public == {"status": "unhealthy"} == public_check(result)
    assert public_result({"status": "unhealthy", "checks": {"queue": result}}) == {
        "status": "unhealthy",
        "checks": {"queue": {"status": "unhealthy"}},
    }
    full, _ = single_view(result, True, False)
    assert all(field in full for field in ("redis", "reasons", "queues", "thresholds"))
    assert {"workers", "oldestWaitingAgeSeconds"} <= set(full["queues"][0])
    assert not any(field in public for field in NEW_FIELDS)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"QUEUE_NO_WORKER_GRACE_S": "-1"}, "QUEUE_NO_WORKER_GRACE_S"),
        ({"QUEUE_NO_WORKER_GRACE_S": "soon"}, "QUEUE_NO_WORKER_GRACE_S"),
        ({"QUEUE_AGE_WARNING_S": "600000000"}, "QUEUE_AGE_WARNING_S"),  # milliseconds typed as seconds
        ({"QUEUE_AGE_WARNING_S": "120", "QUEUE_AGE_CRITICAL_S": "60"}, "QUEUE_AGE_CRITICAL_S"),
        ({"REDIS_MEMORY_WARNING_PCT": "101"}, "REDIS_MEMORY_WARNING_PCT"),
        ({"REDIS_MEMORY_WARNING_PCT": "95", "REDIS_MEMORY_CRITICAL_PCT": "90"}, "REDIS_MEMORY_CRITICAL_PCT"),
    ],
)
def test_bad_settings_name_the_variable(queue_config, env, variable):
    with pytest.raises(ConfigurationError) as caught:
        queue_config("bt-unused", **env)
    assert caught.value.variable == variable


def test_settings_reach_the_thresholds(queue_config, prefix):
    env = {"QUEUE_NO_WORKER_GRACE_S": "5", "QUEUE_AGE_WARNING_S": "10", "QUEUE_AGE_CRITICAL_S": "20",
           "REDIS_MEMORY_WARNING_PCT": "50", "REDIS_MEMORY_CRITICAL_PCT": "70.5"}  # fmt: skip
    run_scenario("add-aged", prefix, HP, ages="15", major=6)
    with live_workers(prefix, [HP], major=6):
        result = check(queue_config(prefix, **env))
    thresholds = result["thresholds"]
    assert thresholds["noWorkerGraceSeconds"] == 5
    assert thresholds["oldestWaitingAge"]["warning"] == 10 and thresholds["oldestWaitingAge"]["critical"] == 20
    assert thresholds["redisMemory"] == {"warning": 50, "critical": 70.5, "current": None}
    assert result["status"] == "degraded"  # 15 s: past the 10 s warning


# --------------------------------------------------------------------------- Redis Cluster


@contextlib.contextmanager
def cluster_workers(url: str, prefix: str, queues: list[str], count: int, names: str) -> Iterator[dict[str, int]]:
    """``scenario.mjs workers --cluster`` (tests/live_workers.py speaks to a single node): Node's counts once
    they are up; the workers close when the block ends."""
    argv = ["node", str(SCENARIO), "workers", "--cluster", "--redis", url, "--prefix", prefix, "--queue", queues[0],
            "--queues", ",".join(queues), "--count", str(count), "--names", names]  # fmt: skip
    process = subprocess.Popen(argv, cwd=SCENARIO.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("{"), f"scenario.mjs workers --cluster printed {line!r}"
        yield json.loads(line)["workersCount"]
    finally:
        process.communicate(timeout=60)  # stdin closed: the workers close, the process exits


def test_workers_across_the_cluster_equal_nodes(redis_cluster, bullmq_major):
    inspector = RedisCluster.from_url(redis_cluster.url, socket_timeout=5)
    prefix = "{" + unique_prefix("clw") + "}"
    queues = [HP, "default"]
    try:
        added = min(
            job["timestamp"]
            for job in run_scenario("add-aged", prefix, HP, redis_cluster.url, cluster=True, ages="100")["jobs"]
        )
        client = get_redis(RedisSettings(redis_cluster.url, 1.0, 5.0, cluster=True))
        with cluster_workers(redis_cluster.url, prefix, queues, count=2, names="a") as started:
            alive = queue_state(client, prefix, queues, cluster=True)
            read_at = time.time()
            node = node_workers(prefix, queues, redis_cluster.url, cluster=True)
        # bullmq counts a Cluster's workers on the node holding the most of their connections: what it answers,
        # at least one per queue (2 were started on each), is what we read.
        assert alive.workers == node == started and all(count >= 1 for count in node.values()), (alive, node)
        assert_age(alive.queues[HP]["oldestWaitingAgeSeconds"], read_at - added / 1000)
        assert alive.redis["maxmemoryPolicy"] == "noeviction" and alive.redis["usedMemoryBytes"] > 0
        gone = queue_state(client, prefix, queues, cluster=True)
        assert gone.workers == node_workers(prefix, queues, redis_cluster.url, cluster=True) == {HP: 0, "default": 0}
    finally:
        keys = list(inspector.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + ":*", count=1000))
        if keys:
            inspector.unlink(*keys)
        inspector.close()
