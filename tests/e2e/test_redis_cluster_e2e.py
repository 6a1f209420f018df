"""REDIS_CLUSTER=true in the built functions under the Lambda emulator, on the session's 3-master Redis Cluster.

Queues are written by real bullmq (the test's major) through an ioredis ``Cluster`` connection
(``scenario.mjs --cluster``) under a ``{hash-tag}`` prefix whose slot the seed node (``REDIS_URL``)
does not serve: a function that did not follow the cluster's routing would get ``MOVED``.
"""

from __future__ import annotations

import json
import uuid

import pytest
from redis.cluster import RedisCluster

from bullmq_scenario import all_counts, run_scenario, unique_prefix, wait_locks_expired
from events_loader import load_event

COUNT_TYPES = ("waiting", "active", "completed", "failed", "delayed", "prioritized", "paused", "waiting-children")
HP = "high-priority"


@pytest.fixture(scope="module")
def inspector(redis_cluster):
    client = RedisCluster.from_url(redis_cluster.url, socket_timeout=5, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def tag(redis_cluster, inspector):
    """A ``{hash-tag}`` prefix on a slot the seed node does not serve; its keys deleted afterwards."""
    seed = redis_cluster.ports[0]
    while inspector.get_node_from_key((prefix := "{" + unique_prefix("cle") + "}") + ":x").port == seed:
        pass
    yield prefix
    keys = list(inspector.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + ":*", count=1000))
    for start in range(0, len(keys), 500):
        inspector.unlink(*keys[start : start + 500])


def scenario(redis_cluster, command, prefix, queue, **options):
    return run_scenario(command, prefix, queue, redis_cluster.url, cluster=True, **options)


def body(result):
    return json.loads(result.payload["body"])


def test_queue_health_reads_the_cluster(start_function, redis_cluster, tag, bullmq_major):
    scenario(redis_cluster, "populate", tag, HP, completed=20, failed=1, waiting=2, delayed=1, prioritized=1)
    scenario(redis_cluster, "populate", tag, "default", completed=3)
    queue_fn = start_function(
        "HealthQueueFunction", REDIS_URL=redis_cluster.url, REDIS_CLUSTER="true", QUEUE_NAMES=f"{HP},default",
        BULLMQ_PREFIX=tag, HIGH_PRIORITY_QUEUE=HP, HEALTH_SHOW_DETAILS="always",
    )  # fmt: skip

    result = queue_fn.invoke(load_event("health-queue"))

    assert result.payload["statusCode"] == 200, result.payload
    health = body(result)
    assert health["status"] == "healthy"  # lag 3, 1 failed of 24 finished (4.17 %)
    assert health["summary"]["failureRate"] == "4.17%"
    for queue in health["queues"]:
        node = all_counts(scenario(redis_cluster, "counts", tag, queue["name"]))
        assert {key: queue[key] for key in COUNT_TYPES} == node, queue["name"]
        assert queue["bullmqLayout"] == bullmq_major
    assert health["thresholds"]["highPriorityLag"]["current"] == 3


def test_heal_requeues_stuck_jobs_on_the_cluster_and_a_worker_completes_each_once(
    start_function, redis_cluster, inspector, tag, database_url, bullmq_major
):
    crashed = scenario(
        redis_cluster, "crash-active", tag, "mail", count=3, lock_duration=500, kill="SIGKILL",
        allowed_returncodes=(-9,),
    )["ids"]  # fmt: skip
    wait_locks_expired(inspector, tag, "mail", crashed)
    heal = start_function(
        "HealFunction", DATABASE_URL=database_url, REDIS_URL=redis_cluster.url, REDIS_CLUSTER="true",
        QUEUE_NAMES="mail", HIGH_PRIORITY_QUEUE="mail", BULLMQ_PREFIX=tag, STUCK_JOB_THRESHOLD_MS="0",
        HEAL_LOCK="redis", ALERT_TOPIC_ARN="",
    )  # fmt: skip
    event = load_event("heal-api", queryStringParameters={"routines": "jobs"}, rawQueryString="routines=jobs")

    result = heal.invoke(event)

    assert result.payload["statusCode"] == 200, result.payload
    summary = body(result)
    assert summary["stuckJobs"] == 3, summary
    assert inspector.exists("parel-monitoring:heal:lock") == 0  # the redis run lock, taken and released
    assert all_counts(scenario(redis_cluster, "counts", tag, "mail"))["waiting"] == 3
    worked = scenario(redis_cluster, "work", tag, "mail", seconds=3)
    assert sorted(worked["completed"], key=int) == sorted(crashed, key=int) and worked["failed"] == []
    assert all_counts(scenario(redis_cluster, "counts", tag, "mail"))["completed"] == 3


def test_alerts_function_deduplicates_through_the_cluster(start_function, redis_cluster, webhooks):
    slack, _ = webhooks
    slack.expect_request("/hook", method="POST").respond_with_data("ok")
    alerts = start_function(
        "AlertsFunction", SLACK_WEBHOOK_URL=slack.url_for("/hook"), DISCORD_WEBHOOK_URL="",
        REDIS_URL=redis_cluster.url, REDIS_CLUSTER="true", ALERT_DEDUP_WINDOW_S="300", STAGE="prod",
    )  # fmt: skip
    title = f"Cluster e2e {uuid.uuid4().hex[:8]}"
    request = {"severity": "WARNING", "title": title, "message": "lag 120"}

    first = alerts.invoke(load_event("alerts-api", body=json.dumps(request)))
    second = alerts.invoke(load_event("alerts-api", body=json.dumps(request)))

    assert first.payload["statusCode"] == 200 and body(first)["delivered"] is True, first.payload
    assert body(second)["suppressed"] is True, second.payload
    assert len(slack.log) == 1
    assert not any("Redis unavailable" in line for line in first.logs + second.logs)


def test_cluster_with_a_plain_prefix_answers_the_configuration_error(start_function, redis_cluster):
    queue_fn = start_function(
        "HealthQueueFunction", REDIS_URL=redis_cluster.url, REDIS_CLUSTER="true", QUEUE_NAMES=HP, BULLMQ_PREFIX="bull"
    )
    result = queue_fn.invoke(load_event("health-queue"))
    assert result.payload["statusCode"] == 500, result.payload
    answer = body(result)
    assert (answer["error"], answer["variable"]) == ("configuration", "BULLMQ_PREFIX")
