"""Redis Cluster (``REDIS_CLUSTER=true``) on a real 3-master cluster, with queues written by real bullmq 5 and 6.

The session's cluster (the ``redis_cluster`` fixture, ``services.start_redis_cluster``: three
``redis-server --cluster-enabled yes`` on free loopback ports, joined by ``redis-cli --cluster
create``, stopped at the end); a missing ``redis-server`` or ``redis-cli`` fails with what to install.
Node writes the queues through an ioredis ``Cluster`` connection (``scenario.mjs --cluster``).
Each test's ``{hash-tag}`` prefix hashes to a slot the seed node (the one in ``REDIS_URL``) does
not serve, so a client that does not follow the cluster's routing fails (``MOVED``), and so
would any script key outside the declared keys' slot (another node's key in a script is an error).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

import services
from bullmq_scenario import all_counts, run_scenario, unique_prefix, wait_locks_expired
from events_loader import load_event
from parel_monitoring.bullmq import (
    COUNT_TYPES,
    ClusterUnavailable,
    QueueSettings,
    RedisSettings,
    get_redis,
    job_counts,
    redis_cluster_enabled,
)
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.jobs import StuckJobSettings, heal_stuck_jobs
from parel_monitoring.health.queue import QueueHealthSettings, check_queue_health
from parel_monitoring.notify import dedup
from parel_monitoring.notify.dedup import AlertState
from parel_monitoring.notify.model import Alert
from parel_monitoring.notify.service import AlertSettings, alert_state, dispatch
from parel_monitoring.settings import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
ZERO = dict.fromkeys(COUNT_TYPES, 0)
SHORT_LOCK_MS = 500
_SETTINGS = ("REDIS_URL", "REDIS_CLUSTER", "BULLMQ_PREFIX", "QUEUE_NAMES", "HIGH_PRIORITY_QUEUE",
             "STUCK_JOB_THRESHOLD_MS", "BULLMQ_MAX_STALLED_COUNT", "STUCK_JOB_BATCH_SIZE", "ALERT_DEDUP_WINDOW_S",
             "SLACK_WEBHOOK_URL", "DISCORD_WEBHOOK_URL", "STAGE")  # fmt: skip


@pytest.fixture(scope="module")
def cluster(redis_cluster):
    return redis_cluster


@pytest.fixture(scope="module")
def inspector(cluster):
    """A test-side cluster client (reads keys, finds slots, cleans up)."""
    client = RedisCluster.from_url(cluster.url, socket_timeout=5, decode_responses=True)
    assert len(client.get_primaries()) == 3, client.get_primaries()
    yield client
    client.close()


@pytest.fixture
def env(monkeypatch, cluster):
    """``env(**variables)``: the cluster's URL and REDIS_CLUSTER=true, plus these (the others unset)."""

    def apply(**variables: Any) -> None:
        for name in _SETTINGS:
            monkeypatch.delenv(name, raising=False)
        for name, value in {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", **variables}.items():
            if value is not None:
                monkeypatch.setenv(name, str(value))

    apply()
    return apply


def off_seed(inspector: RedisCluster, cluster, key: str) -> bool:
    """True when ``key``'s slot is served by another node than the seed node of ``cluster.url``."""
    return inspector.get_node_from_key(key).port != cluster.ports[0]


@pytest.fixture
def prefix(inspector, cluster):
    """A ``{hash-tag}`` prefix of this test's own on a slot the seed node does not serve; its keys deleted after."""
    while not off_seed(inspector, cluster, tag := "{" + unique_prefix("cl") + "}"):
        pass
    yield tag
    keys = list(inspector.scan_iter(match=tag.replace("{", "\\{").replace("}", "\\}") + ":*", count=1000))
    for start in range(0, len(keys), 500):
        inspector.unlink(*keys[start : start + 500])  # one slot: one multi-key command per batch


@pytest.fixture
def client(cluster):
    """Our client, as the functions build it (REDIS_CLUSTER=true)."""
    return get_redis(RedisSettings(cluster.url, 1.0, 5.0, cluster=True))


def scenario(cluster, command: str, prefix: str, queue: str, **options: Any) -> dict[str, Any]:
    """scenario.mjs through an ioredis Cluster connection seeded with the cluster's first node."""
    return run_scenario(command, prefix, queue, cluster.url, cluster=True, **options)


def node_counts(cluster, prefix: str, queue: str) -> dict[str, Any]:
    return scenario(cluster, "counts", prefix, queue)


def assert_counts(client, cluster, prefix: str, queues: dict[str, dict[str, int]], major: int) -> None:
    """job_counts() of all ``queues`` in one call == Node's getJobCounts() of each == the expected numbers."""
    ours = job_counts(client, prefix, list(queues))
    for queue, expected in queues.items():
        node = node_counts(cluster, prefix, queue)
        assert {key: ours[queue][key] for key in COUNT_TYPES} == all_counts(node), queue
        assert all_counts(node) == {**ZERO, **expected}, f"{queue}: the scenario did not make the requested state"
        assert ours[queue]["isPaused"] is node["isPaused"], queue
        assert ours[queue]["bullmqLayout"] == major and ours[queue]["readable"] is True, queue


# --------------------------------------------------------------------------- the cluster and its routing


def test_the_cluster_has_three_masters_and_a_plain_client_is_redirected(cluster, inspector, prefix):
    nodes = {node.port for node in inspector.get_primaries()}
    assert nodes == set(cluster.ports)
    for port in cluster.ports:
        info = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).cluster("info")
        assert info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 3
    # What get_redis built before Cluster support: every command on another node's slot is MOVED.
    plain = redis.Redis.from_url(cluster.url, socket_timeout=5)
    with pytest.raises(redis.exceptions.MovedError):
        job_counts(plain, prefix, ["default"])
    plain.close()


def test_a_missing_redis_binary_fails_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither binary
    with pytest.raises(services.ServiceUnavailable, match=r"redis-server and redis-cli not found"):
        services.start_redis_cluster()
    (tmp_path / "redis-server").symlink_to(shutil.which("redis-server", path="/usr/local/bin:/usr/bin:/bin"))
    with pytest.raises(services.ServiceUnavailable, match=r"Redis Cluster: redis-cli not found .*apt-get install"):
        services.start_redis_cluster()


# --------------------------------------------------------------------------- counts


def test_counts_of_every_queue_equal_node_in_one_call(cluster, inspector, prefix, client, bullmq_major):
    scenario(cluster, "populate", prefix, "mixed", completed=3, failed=2, waiting=4, delayed=1, prioritized=2)
    scenario(cluster, "populate", prefix, "held", waiting=2, prioritized=1)
    scenario(cluster, "pause", prefix, "held")
    crashed = scenario(
        cluster, "crash-active", prefix, "crashy", count=2, lock_duration=30_000, kill="SIGKILL",
        allowed_returncodes=(-9,),
    )  # fmt: skip
    assert sorted(crashed["active"]) == sorted(crashed["ids"])
    flow = scenario(cluster, "waiting-children", prefix, "parents", count=1, children=2, child_queue="kids")
    assert len(flow["parents"]) == 1

    paused_ready = {"paused" if bullmq_major == 5 else "waiting": 2}
    assert_counts(
        client,
        cluster,
        prefix,
        {
            "mixed": {"completed": 3, "failed": 2, "waiting": 4, "delayed": 1, "prioritized": 2},
            "held": {**paused_ready, "prioritized": 1},
            "crashy": {"active": 2},
        },
        bullmq_major,
    )
    # A FlowProducer writes no meta version: counted, not classified (as on a single node).
    readings = job_counts(client, prefix, ["parents", "kids", "ghost"])
    for queue, expected in {"parents": {"waiting-children": 1}, "kids": {"waiting": 2}, "ghost": {}}.items():
        assert {key: readings[queue][key] for key in COUNT_TYPES} == {**ZERO, **expected}, queue
        assert {key: readings[queue][key] for key in COUNT_TYPES} == all_counts(node_counts(cluster, prefix, queue))
    assert readings["ghost"]["exists"] is False
    assert off_seed(inspector, cluster, f"{prefix}:mixed:wait")  # the keys really are on another node


def test_queue_health_on_the_cluster_from_the_environment(cluster, env, prefix, bullmq_major):
    scenario(cluster, "populate", prefix, "high-priority", completed=4, waiting=3)
    env(BULLMQ_PREFIX=prefix, QUEUE_NAMES="high-priority,default", HIGH_PRIORITY_QUEUE="high-priority")
    settings = QueueHealthSettings.from_env()
    assert settings.redis.cluster is True

    result = check_queue_health(settings, get_redis(settings.redis))

    queues = {queue["name"]: queue for queue in result["queues"]}
    assert result["status"] == "degraded", result  # "default" does not exist: at least degraded
    assert result["missingQueues"] == ["default"], result
    assert result["thresholds"]["highPriorityLag"]["current"] == 3
    assert (queues["high-priority"]["completed"], queues["high-priority"]["waiting"]) == (4, 3)
    assert queues["high-priority"]["bullmqLayout"] == bullmq_major


# --------------------------------------------------------------------------- stuck jobs


def test_stuck_jobs_are_requeued_and_completed_exactly_once(cluster, inspector, env, prefix, client, bullmq_major):
    scenario(cluster, "populate", prefix, "crashy", completed=1)
    crashed = scenario(
        cluster, "crash-active", prefix, "crashy", count=5, lock_duration=SHORT_LOCK_MS, kill="SIGKILL",
        allowed_returncodes=(-9,),
    )["ids"]  # fmt: skip
    wait_locks_expired(inspector, prefix, "crashy", crashed)
    env(BULLMQ_PREFIX=prefix, QUEUE_NAMES="crashy", HIGH_PRIORITY_QUEUE="crashy", STUCK_JOB_THRESHOLD_MS=0,
        STUCK_JOB_BATCH_SIZE=2)  # fmt: skip
    settings = StuckJobSettings.from_env()

    dry = heal_stuck_jobs(client, settings, Budget(), dry_run=True)
    assert dry["count"] == 5 and dry["skipped"] == []
    result = heal_stuck_jobs(client, settings, Budget())

    assert (result["count"], result["partial"], result["skipped"]) == (5, False, [])
    assert result["queues"]["crashy"]["bullmqLayout"] == bullmq_major
    assert sorted(result["requeuedJobs"]) == sorted(f"crashy:{job_id}" for job_id in crashed)
    assert_counts(client, cluster, prefix, {"crashy": {"waiting": 5, "completed": 1}}, bullmq_major)
    for job_id in crashed:
        assert inspector.hget(f"{prefix}:crashy:{job_id}", "stc") == "1"
    assert heal_stuck_jobs(client, settings, Budget())["count"] == 0

    worked = scenario(cluster, "work", prefix, "crashy", seconds=3)
    assert sorted(worked["completed"], key=int) == sorted(crashed, key=int)  # each exactly once
    assert worked["failed"] == [] and worked["stalled"] == []
    assert_counts(client, cluster, prefix, {"crashy": {"completed": 6}}, bullmq_major)


def test_stuck_jobs_of_a_paused_queue_go_where_the_major_keeps_them(cluster, inspector, prefix, client, bullmq_major):
    crashed = scenario(
        cluster, "crash-active", prefix, "held", count=2, lock_duration=SHORT_LOCK_MS, kill="SIGKILL",
        allowed_returncodes=(-9,),
    )["ids"]  # fmt: skip
    scenario(cluster, "pause", prefix, "held")
    wait_locks_expired(inspector, prefix, "held", crashed)
    settings = StuckJobSettings(QueueSettings(prefix, ("held",), "held"), 0, 1, 500)

    assert heal_stuck_jobs(client, settings, Budget())["count"] == 2

    assert_counts(client, cluster, prefix, {"held": {"paused" if bullmq_major == 5 else "waiting": 2}}, bullmq_major)
    assert inspector.exists(f"{prefix}:held:marker") == 0
    scenario(cluster, "resume", prefix, "held")
    worked = scenario(cluster, "work", prefix, "held", seconds=3)
    assert sorted(worked["completed"], key=int) == sorted(crashed, key=int) and worked["failed"] == []


# --------------------------------------------------------------------------- alert deduplication


def _alert(title: str) -> Alert:
    return Alert("WARNING", title, "queue lag 120")


def _titles_off_seed(inspector, cluster, count: int) -> list[str]:
    """Alert titles whose deduplication keys live on nodes other than the seed node."""
    titles: list[str] = []
    while len(titles) < count:
        title = f"Queue lag {uuid.uuid4().hex[:8]}"
        fingerprint = "{" + dedup._fingerprint(_alert(title)) + "}"
        if off_seed(inspector, cluster, f"{dedup.PREFIX}:window:{fingerprint}"):
            titles.append(title)
    return titles


def test_alert_deduplication_on_the_cluster(cluster, inspector, env, capsys):
    env()
    settings = AlertSettings.from_env()
    assert settings.redis is not None and settings.redis.cluster is True
    state = alert_state(settings)
    first, second = _titles_off_seed(inspector, cluster, 2)

    assert state.admit(_alert(first), "m1") == (True, 0)
    assert state.admit(_alert(first), "m1") == (True, 0)  # a retry of the message that opened the window
    assert state.admit(_alert(first), "m2") == (False, 0)
    assert state.admit(_alert(first), "m3") == (False, 0)
    assert state.admit(_alert(second), "m4") == (True, 0)
    assert not state.already_delivered("m1", "slack")
    state.remember_delivered("m1", "slack")
    assert state.already_delivered("m1", "slack") and not state.already_delivered("m1", "discord")
    fingerprint = "{" + dedup._fingerprint(_alert(first)) + "}"
    assert inspector.get(f"{dedup.PREFIX}:suppressed:{fingerprint}") == "2"
    assert "Redis unavailable" not in capsys.readouterr().out  # no failing open: the cluster answered


def test_alerts_function_suppresses_a_duplicate_through_the_cluster(cluster, inspector, env, webhooks):
    slack, _ = webhooks
    slack.expect_request("/hook", method="POST").respond_with_data("ok")
    env(SLACK_WEBHOOK_URL=slack.url_for("/hook"), ALERT_DEDUP_WINDOW_S=300)
    settings = AlertSettings.from_env()
    title = _titles_off_seed(inspector, cluster, 1)[0]

    delivered = dispatch(_alert(title), f"msg-{uuid.uuid4().hex}", settings, time.monotonic() + 20)
    duplicate = dispatch(_alert(title), f"msg-{uuid.uuid4().hex}", settings, time.monotonic() + 20)

    assert delivered["delivered"] is True and delivered["channels"]["slack"]["delivered"] is True
    assert duplicate == {"delivered": False, "suppressed": True, "channels": {}}
    assert len(slack.log) == 1


# --------------------------------------------------------------------------- cluster down, misconfiguration


def test_unreachable_cluster_is_a_redis_error_the_callers_handle(monkeypatch, closed_port, capsys):
    settings = RedisSettings(f"redis://127.0.0.1:{closed_port}", 0.5, 1.0, cluster=True)
    client = get_redis(settings)  # lazy: no connection yet, so building it cannot fail a handler

    with pytest.raises(ClusterUnavailable) as caught:
        job_counts(client, "{bull}", ["default"])
    assert isinstance(caught.value, redis.RedisError)

    state = AlertState(client, window_s=60)
    assert state.admit(_alert("Queue lag"), "m1") == (True, 0)  # fails open
    assert "Redis unavailable for deduplication" in capsys.readouterr().out

    monkeypatch.setenv("BULLMQ_PREFIX", "{bull}")
    monkeypatch.setenv("QUEUE_NAMES", "default")
    monkeypatch.setenv("REDIS_URL", settings.url)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    result = check_queue_health(QueueHealthSettings.from_env(), client)
    assert result["status"] == "unhealthy" and result["reason"].startswith("ClusterUnavailable"), result


@pytest.mark.parametrize("prefix", ["bull", "bt-plain"])
def test_cluster_with_a_plain_prefix_is_a_configuration_error_naming_the_variable(env, prefix):
    env(BULLMQ_PREFIX=prefix, QUEUE_NAMES="default")
    for load in (QueueSettings.from_env, StuckJobSettings.from_env, QueueHealthSettings.from_env):
        with pytest.raises(ConfigurationError) as caught:
            load()
        assert caught.value.variable == "BULLMQ_PREFIX"
        assert "REDIS_CLUSTER" in str(caught.value)
    env(BULLMQ_PREFIX=prefix, QUEUE_NAMES="default", REDIS_CLUSTER="false")  # the same prefix is fine off Cluster
    assert QueueSettings.from_env().prefix == prefix


def test_redis_cluster_values(env):
    for value, expected in (("true", True), ("TRUE", True), ("false", False), ("", False), (None, False)):
        env(REDIS_CLUSTER=value)
        assert redis_cluster_enabled() is expected, value
    env(REDIS_CLUSTER="yes")
    with pytest.raises(ConfigurationError) as caught:
        redis_cluster_enabled()
    assert caught.value.variable == "REDIS_CLUSTER"


def _handler(logical_id: str, directory: str):
    """``functions/<directory>/app.py``'s handler under a module name of its own (every file is ``app``)."""
    spec = importlib.util.spec_from_file_location(f"cluster_{logical_id}", ROOT / "functions" / directory / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.handler


class _Context:
    function_name = "RedisClusterTest"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:RedisClusterTest"
    aws_request_id = "req-cluster"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.mark.parametrize(
    ("logical_id", "directory", "event"),
    [("HealthQueueFunction", "health_queue", "health-queue"), ("HealFunction", "heal", "heal-api")],
)
def test_a_function_answers_the_configuration_error_naming_bullmq_prefix(env, logical_id, directory, event):
    env(BULLMQ_PREFIX="bull", QUEUE_NAMES="default", ADMIN_API_TOKEN="t0ken-for-the-test",
        DATABASE_URL="postgresql://127.0.0.1:9/none")  # fmt: skip
    response = _handler(logical_id, directory)(load_event(event), _Context())
    assert response["statusCode"] == 500, response
    body = json.loads(response["body"])
    assert body["error"] == "configuration" and body["variable"] == "BULLMQ_PREFIX", body
