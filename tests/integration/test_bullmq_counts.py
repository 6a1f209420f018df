"""job_counts() against what bullmq 5 and 6 themselves report, on real queue states made by real BullMQ (Node).

Every state is built with tests/bullmq/scenario.mjs on the shared Redis under a prefix of
its own (deleted afterwards), once per major (the ``bullmq_major`` fixture); each check
compares our reading with Node's ``queue.getJobCounts()`` (plus ``getJobCounts('paused')``,
which bullmq 6 leaves out of the default) / ``isPaused()`` / ``getWaitingCount()`` on the
same keys, and with the numbers the scenario was asked to produce (so a scenario that did
nothing cannot pass). Mixed deployments (a queue paused under 5 and then used by 6, a v5 and
a v6 ``Queue`` on one queue) are compared with both majors' Node.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

import services
from bullmq_scenario import (
    REDIS_URL,
    all_counts,
    cleanup,
    node_state,
    prefix_keys,
    run_scenario,
    unique_prefix,
    wait_locks_expired,
)
from parel_monitoring.bullmq import COUNT_TYPES, QueueSettings, job_counts, queue_state
from parel_monitoring.settings import ConfigurationError

ZERO = dict.fromkeys(COUNT_TYPES, 0)
SAME_AS_MAJOR = object()


@pytest.fixture
def client(redis_client):
    return redis_client


def counts_only(reading: dict[str, Any]) -> dict[str, int]:
    return {key: reading[key] for key in COUNT_TYPES}


def ready(major: int, count: int) -> dict[str, int]:
    """A paused queue's ``count`` ready jobs as its major counts them: ``paused`` under 5, ``waiting`` under 6."""
    return {"paused" if major == 5 else "waiting": count}


def assert_same_as_node(
    client: redis.Redis,
    prefix: str,
    queue: str,
    expected: dict[str, int],
    redis_url: str = REDIS_URL,
    *,
    major: int,
    layout: object = SAME_AS_MAJOR,
) -> dict[str, Any]:
    """job_counts() == Node's (``major``) getJobCounts() of all 8 types, isPaused(), getWaitingCount();
    == ``expected``; and the queue's layout is ``layout`` (default: ``major``)."""
    ours = job_counts(client, prefix, [queue])[queue]
    node = node_state(prefix, queue, redis_url, major=major)
    default_types = set(COUNT_TYPES) - ({"paused"} if major == 6 else set())
    assert set(node["jobCounts"]) == default_types, f"bullmq {major} reports other types: {sorted(node['jobCounts'])}"
    assert counts_only(ours) == all_counts(node), f"{prefix}:{queue}: job_counts differs from bullmq {major}"
    assert ours["isPaused"] is node["isPaused"], f"{prefix}:{queue}: isPaused differs from bullmq isPaused()"
    waiting_count = ours["waiting"] + (ours["paused"] if major == 5 else 0)  # 6 counts only `wait`
    assert waiting_count == node["waitingCount"], "differs from getWaitingCount()"
    assert counts_only(ours) == {**ZERO, **expected}, "the scenario did not produce the requested state"
    assert ours["bullmqLayout"] == (major if layout is SAME_AS_MAJOR else layout)
    return ours


# --------------------------------------------------------------------------- states (each major)


def test_a_completed_and_failed_by_a_worker_plus_waiting_delayed_prioritized(client, prefix, bullmq_major):
    made = run_scenario("populate", prefix, "mixed", completed=4, failed=3, waiting=5, delayed=2, prioritized=3)
    assert len(made["ids"]["completed"]) == 4 and len(made["ids"]["failed"]) == 3
    ours = assert_same_as_node(
        client,
        prefix,
        "mixed",
        {"completed": 4, "failed": 3, "waiting": 5, "delayed": 2, "prioritized": 3},
        major=bullmq_major,
    )
    assert ours["exists"] is True and ours["isPaused"] is False


def test_b_worker_killed_with_jobs_still_active(client, prefix, bullmq_major):
    run_scenario("populate", prefix, "crashy", completed=2)
    crashed = run_scenario(
        "crash-active", prefix, "crashy", count=3, lock_duration=300, kill="SIGKILL", allowed_returncodes=(-9,)
    )
    assert sorted(crashed["active"]) == sorted(crashed["ids"]) and len(crashed["ids"]) == 3
    assert_same_as_node(client, prefix, "crashy", {"active": 3, "completed": 2}, major=bullmq_major)

    # Once the dead worker's locks have expired the jobs are still "active" for bullmq (until a
    # stalled check moves them); the reading must not change either.
    wait_locks_expired(client, prefix, "crashy", crashed["ids"])
    assert_same_as_node(client, prefix, "crashy", {"active": 3, "completed": 2}, major=bullmq_major)


def test_c_delayed_only(client, prefix, bullmq_major):
    run_scenario("populate", prefix, "later", delayed=4, delay_ms=3_600_000)
    ours = assert_same_as_node(client, prefix, "later", {"delayed": 4}, major=bullmq_major)
    assert ours["exists"] is True


def test_d_prioritized_and_waiting(client, prefix, bullmq_major):
    run_scenario("populate", prefix, "prio", waiting=2, prioritized=6)
    assert_same_as_node(client, prefix, "prio", {"waiting": 2, "prioritized": 6}, major=bullmq_major)


def test_e_paused_queue_with_jobs_added_while_paused_then_resumed(client, prefix, bullmq_major):
    major = bullmq_major
    run_scenario("populate", prefix, "pp", completed=1, waiting=3, delayed=1, prioritized=2)
    assert_same_as_node(
        client, prefix, "pp", {"completed": 1, "waiting": 3, "delayed": 1, "prioritized": 2}, major=major
    )

    assert run_scenario("pause", prefix, "pp")["isPaused"] is True
    paused = assert_same_as_node(
        client, prefix, "pp", {"completed": 1, **ready(major, 3), "delayed": 1, "prioritized": 2}, major=major
    )
    assert paused["isPaused"] is True

    run_scenario("populate", prefix, "pp", waiting=4, prioritized=1)  # added while paused
    assert_same_as_node(
        client, prefix, "pp", {"completed": 1, **ready(major, 7), "delayed": 1, "prioritized": 3}, major=major
    )

    assert run_scenario("resume", prefix, "pp")["isPaused"] is False
    resumed = assert_same_as_node(
        client, prefix, "pp", {"completed": 1, "waiting": 7, "delayed": 1, "prioritized": 3}, major=major
    )
    assert resumed["isPaused"] is False


def test_e_paused_queue_without_jobs_exists(client, prefix, bullmq_major):
    run_scenario("pause", prefix, "idle")
    ours = assert_same_as_node(client, prefix, "idle", {}, major=bullmq_major)
    assert ours["isPaused"] is True and ours["exists"] is True  # only the meta hash exists


def test_f_waiting_children(client, prefix, bullmq_major):
    flow = run_scenario("waiting-children", prefix, "parents", count=2, children=3, child_queue="kids")
    assert len(flow["parents"]) == 2
    # A FlowProducer writes no meta version: its queues cannot be classified (their counts still can).
    assert_same_as_node(client, prefix, "parents", {"waiting-children": 2}, major=bullmq_major, layout=None)
    assert_same_as_node(client, prefix, "kids", {"waiting": 6}, major=bullmq_major, layout=None)

    run_scenario("waiting-children", prefix, "family", count=1, children=2)  # children in the parent's queue
    assert_same_as_node(
        client, prefix, "family", {"waiting-children": 1, "waiting": 2}, major=bullmq_major, layout=None
    )


def test_g_queue_that_does_not_exist_reads_zero_and_creates_nothing(client, prefix, bullmq_major):
    run_scenario("populate", prefix, "real", waiting=1)
    keys_before = prefix_keys(prefix)
    assert keys_before and all(key.startswith(f"{prefix}:real:") for key in keys_before)

    readings = job_counts(client, prefix, ["ghost", "real"])
    assert counts_only(readings["ghost"]) == ZERO
    assert readings["ghost"]["exists"] is False and readings["ghost"]["isPaused"] is False
    assert readings["ghost"]["bullmqLayout"] is None
    assert readings["real"]["exists"] is True and readings["real"]["waiting"] == 1
    assert readings["real"]["bullmqLayout"] == bullmq_major
    assert prefix_keys(prefix) == keys_before, "job_counts created keys"

    ghost = node_state(prefix, "ghost")
    assert all_counts(ghost) == ZERO and (ghost["isPaused"], ghost["waitingCount"]) == (False, 0)
    assert prefix_keys(prefix) == keys_before


def test_hash_tag_prefix(client, bullmq_major):
    prefix = "{" + unique_prefix() + "}"
    try:
        run_scenario("populate", prefix, "tagged", completed=2, failed=1, waiting=2, delayed=1, prioritized=2)
        keys = prefix_keys(prefix)
        assert keys and all(key.startswith(prefix + ":tagged:") for key in keys)
        assert_same_as_node(
            client,
            prefix,
            "tagged",
            {"completed": 2, "failed": 1, "waiting": 2, "delayed": 1, "prioritized": 2},
            major=bullmq_major,
        )
        run_scenario("pause", prefix, "tagged")
        paused = assert_same_as_node(
            client,
            prefix,
            "tagged",
            {"completed": 2, "failed": 1, **ready(bullmq_major, 2), "delayed": 1, "prioritized": 2},
            major=bullmq_major,
        )
        assert paused["isPaused"] is True
    finally:
        cleanup(prefix)
    assert prefix_keys(prefix) == []


# --------------------------------------------------------------------------- bullmq 5 and 6 on one queue


def test_queue_paused_under_5_then_used_by_6(client, prefix):
    run_scenario("populate", prefix, "legacy", waiting=3, major=5)
    run_scenario("pause", prefix, "legacy", major=5)  # bullmq 5 renames `wait` to `paused`
    run_scenario("populate", prefix, "legacy", waiting=2, prioritized=1, major=6)  # 6 adds to `wait` while paused
    assert client.llen(f"{prefix}:legacy:paused") == 3 and client.llen(f"{prefix}:legacy:wait") == 2
    assert client.hget(f"{prefix}:legacy:meta", "version").decode().startswith("bullmq:6.")

    # The `paused` list decides the layout (jobs paused by 5 wait there), not the version 6 wrote last.
    expected = {"paused": 3, "waiting": 2, "prioritized": 1}
    for major in (6, 5):
        assert_same_as_node(client, prefix, "legacy", expected, major=major, layout=5)

    assert run_scenario("resume", prefix, "legacy", major=6)["isPaused"] is False  # drains the old list
    for major in (6, 5):
        assert_same_as_node(client, prefix, "legacy", {"waiting": 5, "prioritized": 1}, major=major, layout=6)
    worked = run_scenario("work", prefix, "legacy", seconds=1, major=6)
    assert len(worked["completed"]) == 6 == len(set(worked["completed"])) and worked["failed"] == []
    assert_same_as_node(client, prefix, "legacy", {"completed": 6}, major=6)


def test_v5_and_v6_queue_opened_on_the_same_queue(client, prefix):
    # Paused by 6: its jobs stay in `wait`. A v5 Queue opened afterwards flips the version to 5.
    run_scenario("populate", prefix, "shared", waiting=3, major=6)
    run_scenario("pause", prefix, "shared", major=6)
    run_scenario("populate", prefix, "shared", waiting=1, major=6)
    assert run_scenario("open", prefix, "shared", major=5)["version"] == "bullmq:5.81.5"
    for major in (5, 6):  # both count the jobs in `wait` as waiting: the layout is still 6's
        assert_same_as_node(client, prefix, "shared", {"waiting": 4}, major=major, layout=6)
    assert run_scenario("open", prefix, "shared", major=6)["version"] == "bullmq:6.7.0"
    assert_same_as_node(client, prefix, "shared", {"waiting": 4}, major=6, layout=6)

    # Running, the layouts are the same and the version decides; a pause by 5 then makes it 5's.
    run_scenario("resume", prefix, "shared", major=6)
    assert run_scenario("open", prefix, "shared", major=5)["version"] == "bullmq:5.81.5"
    assert_same_as_node(client, prefix, "shared", {"waiting": 4}, major=5, layout=5)
    run_scenario("pause", prefix, "shared", major=5)
    assert run_scenario("open", prefix, "shared", major=6)["version"] == "bullmq:6.7.0"
    for major in (5, 6):
        assert_same_as_node(client, prefix, "shared", {"paused": 4}, major=major, layout=5)


def test_unknown_major_is_counted_but_not_classified(client, prefix, bullmq_major):
    run_scenario("populate", prefix, "future", waiting=2)
    client.hset(f"{prefix}:future:meta", "version", "bullmq:7.0.0")
    ours = assert_same_as_node(client, prefix, "future", {"waiting": 2}, major=bullmq_major, layout=None)
    assert ours["readable"] is True


def test_a_key_of_another_type_makes_only_its_queue_unreadable(client, prefix, bullmq_major):
    run_scenario("populate", prefix, "fine", waiting=2)
    run_scenario("populate", prefix, "odd", waiting=1, delayed=1)
    client.delete(f"{prefix}:odd:delayed")
    client.set(f"{prefix}:odd:delayed", "not a sorted set")

    readings = job_counts(client, prefix, ["odd", "fine"])

    odd = readings["odd"]
    assert counts_only(odd) == ZERO and (odd["readable"], odd["exists"], odd["bullmqLayout"]) == (False, True, None)
    assert readings["fine"]["readable"] is True and readings["fine"]["waiting"] == 2
    assert readings["fine"]["bullmqLayout"] == bullmq_major


# --------------------------------------------------------------------------- one round trip


@pytest.fixture(scope="module")
def private_redis():
    """A Redis server of our own: INFO commandstats is server-wide, and the shared one has other clients."""
    url, _ = services.start_throwaway_redis()
    return url


def _client_commands(url: str, action) -> list[list[str]]:
    """The commands clients (not scripts) sent to the server while ``action()`` ran, seen by MONITOR."""
    seen: list[dict] = []
    marker = f"end-{uuid.uuid4().hex}"
    watcher = redis.Redis.from_url(url, socket_timeout=10)
    signaller = redis.Redis.from_url(url, socket_timeout=5)
    signaller.ping()  # its connection handshake happens before MONITOR starts
    with watcher.monitor() as monitor:
        ready = threading.Event()

        def listen():
            ready.set()
            for command in monitor.listen():
                seen.append(command)
                if marker in command["command"]:
                    return

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        ready.wait(5)
        time.sleep(0.2)  # MONITOR is active once the server has answered OK
        action()
        signaller.echo(marker)
        thread.join(10)
    return [c["command"].split() for c in seen if c.get("client_type") != "lua" and marker not in c["command"]]


def connection_stats(url: str) -> dict[str, int]:
    """``INFO commandstats`` calls per command of the server (``client|list``, ``evalsha``, ...)."""
    reader = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return {
            name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in reader.info("commandstats").items()
        }
    finally:
        reader.close()


def test_twenty_queues_in_one_round_trip(private_redis, bullmq_major):
    prefix = unique_prefix()
    queues = [f"q{index:02d}" for index in range(20)]
    populated = {"q00": {"waiting": 3}, "q03": {"delayed": 2, "prioritized": 1}, "q07": {"completed": 2, "failed": 1}}
    for queue, options in populated.items():
        run_scenario("populate", prefix, queue, private_redis, **options)
    run_scenario("pause", prefix, "q11", private_redis)

    connection = redis.Redis.from_url(private_redis, socket_timeout=5)
    try:
        job_counts(connection, prefix, ["warm-up"])  # the first call loads the script once per server
        readings: dict = {}
        commands = _client_commands(private_redis, lambda: readings.update(job_counts(connection, prefix, queues)))
    finally:
        connection.close()

    assert [command[0].strip('"').upper() for command in commands] == ["EVALSHA"], commands
    assert commands[0][2].strip('"') == str(20 * 9)  # every queue's keys, declared in that one call
    assert list(readings) == queues

    for queue in queues:
        expected = populated.get(queue, {})
        assert counts_only(readings[queue]) == {**ZERO, **expected}, queue
        assert readings[queue]["exists"] is (queue in populated or queue == "q11"), queue
        assert readings[queue]["isPaused"] is (queue == "q11"), queue

    # Issue 15's figures (workers, oldest ages, Redis memory): the same script call for the counts and ages of
    # all 20 queues, plus CLIENT LIST and INFO memory, pipelined: 2 more commands, no more round trips.
    sends: list[int] = []

    class CountingConnection(redis.Connection):
        def send_packed_command(self, command, check_health=True):
            sends.append(1)
            return super().send_packed_command(command, check_health)

    counted = redis.Redis.from_url(private_redis, socket_timeout=5, connection_class=CountingConnection)
    try:
        queue_state(counted, prefix, ["warm-up"])  # connects (handshake) and loads nothing new
        state: list = []
        sends.clear()
        before = connection_stats(private_redis)
        commands = _client_commands(private_redis, lambda: state.append(queue_state(counted, prefix, queues)))
        after = connection_stats(private_redis)
    finally:
        counted.close()
    words = [[word.strip('"').upper() for word in command[:2]] for command in commands]
    # MONITOR leaves out admin commands such as CLIENT LIST: the server's own command statistics count it.
    assert [words[0][0], *map(" ".join, words[1:])] == ["EVALSHA", "INFO MEMORY"], commands
    assert after.get("client|list", 0) - before.get("client|list", 0) == 1
    assert commands[0][2].strip('"') == str(20 * 9)
    assert len(sends) == 1, f"{len(sends)} writes to the socket: the three commands were not one pipeline"
    assert {queue: counts_only(state[0].queues[queue]) for queue in queues} == {
        queue: counts_only(readings[queue]) for queue in queues
    }
    assert state[0].workers == dict.fromkeys(queues, 0) and state[0].redis["maxmemoryPolicy"] == "noeviction"
    assert state[0].queues["q00"]["oldestWaitingAgeSeconds"] is not None
    assert state[0].queues["q19"]["oldestWaitingAgeSeconds"] is None

    def node_reading(queue):
        return queue, node_state(prefix, queue, private_redis)

    compared = [*populated, "q11", "q19"]  # the other empty queues read like q19
    with ThreadPoolExecutor(max_workers=3) as pool:
        nodes = dict(pool.map(node_reading, compared))
    for queue in compared:
        assert counts_only(readings[queue]) == all_counts(nodes[queue]), queue
        assert readings[queue]["isPaused"] is nodes[queue]["isPaused"], queue


# --------------------------------------------------------------------------- configuration


def _queue_env(monkeypatch, **env: str) -> None:
    for name in ("BULLMQ_PREFIX", "QUEUE_NAMES", "HIGH_PRIORITY_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("names", ["a:b", "{x}", "has space", "default,a:b", "default,x{y", "tab\tname", "x}"])
def test_queue_names_that_could_leave_their_keys_are_rejected(monkeypatch, names):
    _queue_env(monkeypatch, QUEUE_NAMES=names)
    with pytest.raises(ConfigurationError) as caught:
        QueueSettings.from_env()
    assert caught.value.variable == "QUEUE_NAMES"
    assert names not in str(caught.value)


@pytest.mark.parametrize("prefix", ["a:b", "bull:", "a b", "{x}:y", "{a}{b}", "*"])
def test_prefixes_that_could_leave_their_keys_are_rejected(monkeypatch, prefix):
    _queue_env(monkeypatch, BULLMQ_PREFIX=prefix, QUEUE_NAMES="default")
    with pytest.raises(ConfigurationError) as caught:
        QueueSettings.from_env()
    assert caught.value.variable == "BULLMQ_PREFIX"


def test_high_priority_queue_name_is_checked_too(monkeypatch):
    _queue_env(monkeypatch, QUEUE_NAMES="default", HIGH_PRIORITY_QUEUE="hp:x")
    with pytest.raises(ConfigurationError) as caught:
        QueueSettings.from_env()
    assert caught.value.variable == "HIGH_PRIORITY_QUEUE"


def test_valid_settings_including_a_hash_tag_prefix(monkeypatch):
    _queue_env(monkeypatch, BULLMQ_PREFIX="{bt-1234}", QUEUE_NAMES=" high-priority, default ,default,low-priority,")
    settings = QueueSettings.from_env()
    assert settings.prefix == "{bt-1234}"
    assert settings.queue_names == ("high-priority", "default", "low-priority")
    assert settings.high_priority_queue == "high-priority"
