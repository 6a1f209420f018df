"""check_queue_health() on real BullMQ queue states (made by bullmq 5 and by bullmq 6 through scenario.mjs).

Lag = the high-priority queue's waiting + paused + prioritized jobs (warning 50, critical 100;
one rule for both majors: a paused queue's ready jobs are `paused` under 5, `waiting` under 6);
failure rate = failed / (completed + failed) over every watched queue (warning 5 %,
critical 10 %); a watched queue that does not exist makes a healthy result degraded.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from bullmq_scenario import node_counts, prefix_keys, run_scenario
from parel_monitoring.bullmq import COUNT_TYPES, get_redis
from parel_monitoring.health.queue import QueueHealthSettings, check_queue_health
from parel_monitoring.settings import ConfigurationError
from polling import LOADED_MARGIN_S

HP = "high-priority"


def check(settings: QueueHealthSettings) -> dict:
    return check_queue_health(settings, get_redis(settings.redis))


# --------------------------------------------------------------------------- healthy, and the response


def test_healthy_with_every_field(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, completed=54, failed=1, waiting=10, delayed=3, prioritized=5)
    run_scenario("populate", prefix, "default", completed=500, waiting=200)  # lag counts only on high-priority
    result = check(queue_config(prefix, QUEUE_NAMES=f"{HP},default"))

    assert result["status"] == "healthy"
    assert [queue["name"] for queue in result["queues"]] == [HP, "default"]
    for queue in result["queues"]:
        assert {key: queue[key] for key in COUNT_TYPES} == node_counts(prefix, queue["name"])
        assert queue["exists"] is True and queue["isPaused"] is False and queue["bullmqLayout"] == bullmq_major
    high = result["queues"][0]
    assert (high["waiting"], high["prioritized"], high["delayed"], high["completed"], high["failed"]) == (
        10,
        5,
        3,
        54,
        1,
    )
    # 1 failed of 555 finished jobs = 0.18 %; 54+1+10+3+5 + 500+200 jobs in all
    assert result["summary"] == {"totalJobs": 773, "failureRate": "0.18%", "failed": 1, "completed": 554}
    age = result["thresholds"]["oldestWaitingAge"].pop("current")
    assert 0 <= age < 60 and age == high["oldestWaitingAgeSeconds"]  # just added, no worker yet: within the grace
    assert result["thresholds"] == {
        "highPriorityLag": {"warning": 50, "critical": 100, "current": 15},
        "failureRate": {"warning": 5, "critical": 10, "current": 0.18},
        "oldestWaitingAge": {"warning": 60, "critical": 300},
        "redisMemory": {"warning": 80, "critical": 90, "current": None},  # the shared Redis has no maxmemory
        "noWorkerGraceSeconds": 60,
    }
    assert [queue["workers"] for queue in result["queues"]] == [0, 0] and result["reasons"] == []
    assert result["redis"]["maxmemoryPolicy"] == "noeviction" and result["redis"]["maxmemoryBytes"] == 0
    assert "missingQueues" not in result and "reason" not in result


def test_idle_queue_is_healthy_with_zero_rate(queue_config, prefix, bullmq_major):
    run_scenario("pause", prefix, HP)
    run_scenario("resume", prefix, HP)  # exists (meta hash) but has never had a job
    result = check(queue_config(prefix))
    assert result["status"] == "healthy"
    assert result["summary"] == {"totalJobs": 0, "failureRate": "0.00%", "failed": 0, "completed": 0}
    assert result["thresholds"]["failureRate"]["current"] == 0


# --------------------------------------------------------------------------- lag


@pytest.mark.parametrize(
    ("waiting", "prioritized", "status"),
    [
        (49, 0, "healthy"),
        (30, 20, "degraded"),  # 50: waiting and prioritized both count
        (60, 39, "degraded"),  # 99
        (100, 0, "unhealthy"),
        (0, 120, "unhealthy"),
    ],
)
def test_high_priority_lag(queue_config, prefix, waiting, prioritized, status, bullmq_major):
    run_scenario("populate", prefix, HP, waiting=waiting, prioritized=prioritized)
    result = check(queue_config(prefix))
    assert result["status"] == status
    assert result["thresholds"]["highPriorityLag"]["current"] == waiting + prioritized
    assert result["summary"]["failureRate"] == "0.00%"


def test_delayed_jobs_and_other_queues_are_not_lag(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, delayed=150)
    run_scenario("populate", prefix, "default", waiting=150)
    run_scenario("populate", prefix, "bulk", waiting=120)
    run_scenario("pause", prefix, "bulk")
    result = check(queue_config(prefix, QUEUE_NAMES=f"{HP},default,bulk"))
    assert result["status"] == "healthy"
    assert result["thresholds"]["highPriorityLag"]["current"] == 0
    assert result["summary"]["totalJobs"] == 420
    bulk = result["queues"][2]
    # Where a paused queue's jobs are counted is the major's: `paused` under 5, `waiting` under 6.
    expected = (120, 0) if bullmq_major == 5 else (0, 120)
    assert (bulk["name"], bulk["paused"], bulk["waiting"], bulk["isPaused"]) == ("bulk", *expected, True)
    assert {key: bulk[key] for key in COUNT_TYPES} == node_counts(prefix, "bulk")
    assert bulk["bullmqLayout"] == bullmq_major


# --------------------------------------------------------------------------- failure rate


@pytest.mark.parametrize(
    ("finished", "status", "rate"),
    [
        ({HP: (96, 4)}, "healthy", "4.00%"),
        ({HP: (95, 5)}, "degraded", "5.00%"),
        ({HP: (50, 0), "default": (44, 6)}, "degraded", "6.00%"),  # summed over the watched queues
        ({HP: (90, 10)}, "unhealthy", "10.00%"),
        ({HP: (40, 2), "default": (48, 10)}, "unhealthy", "12.00%"),
    ],
)
def test_failure_rate(queue_config, prefix, finished, status, rate, bullmq_major):
    for queue, (completed, failed) in finished.items():
        run_scenario("populate", prefix, queue, completed=completed, failed=failed)
    result = check(queue_config(prefix, QUEUE_NAMES=",".join(finished)))
    assert result["status"] == status
    assert result["summary"]["failureRate"] == rate
    assert result["thresholds"]["failureRate"]["current"] == float(rate.rstrip("%"))
    assert result["summary"]["failed"] == sum(failed for _, failed in finished.values())
    assert result["summary"]["totalJobs"] == 100


def test_failure_rate_rounds_to_two_decimals(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, completed=599, failed=1)  # 1/600 = 0.1666... %
    result = check(queue_config(prefix))
    assert result["summary"]["failureRate"] == "0.17%"
    assert result["thresholds"]["failureRate"]["current"] == 0.17
    assert result["status"] == "healthy"


# --------------------------------------------------------------------------- missing queues


def test_missing_queue_degrades_a_healthy_result(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, completed=3, waiting=2)
    run_scenario("populate", prefix, "default", waiting=1)
    keys_before = prefix_keys(prefix)
    result = check(queue_config(prefix, QUEUE_NAMES=f"{HP},default,ghost"))
    assert result["status"] == "degraded"
    assert result["missingQueues"] == ["ghost"]
    ghost = result["queues"][2]
    assert ghost["name"] == "ghost" and ghost["exists"] is False
    assert all(ghost[key] == 0 for key in COUNT_TYPES)
    assert prefix_keys(prefix) == keys_before, "the health check created keys"


def test_unreadable_queue_degrades_a_healthy_result(queue_config, prefix, bullmq_major, redis_client):
    run_scenario("populate", prefix, HP, waiting=2)
    run_scenario("populate", prefix, "odd", waiting=1)
    redis_client.delete(f"{prefix}:odd:wait")
    redis_client.hset(f"{prefix}:odd:wait", "not", "a list")
    result = check(queue_config(prefix, QUEUE_NAMES=f"{HP},odd"))
    assert result["status"] == "degraded" and result["unreadableQueues"] == ["odd"]
    assert result["queues"][0]["waiting"] == 2 and result["queues"][1]["readable"] is False
    assert "missingQueues" not in result


def test_missing_high_priority_queue_is_listed(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, "default", waiting=1)
    result = check(queue_config(prefix, QUEUE_NAMES="default", HIGH_PRIORITY_QUEUE="hp-typo"))
    assert result["status"] == "degraded"
    assert [queue["name"] for queue in result["queues"]] == ["default", "hp-typo"]
    assert result["missingQueues"] == ["hp-typo"]


def test_missing_queue_does_not_soften_an_unhealthy_result(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, waiting=100)
    result = check(queue_config(prefix, QUEUE_NAMES=f"{HP},ghost"))
    assert result["status"] == "unhealthy"
    assert result["missingQueues"] == ["ghost"]


def test_wrong_prefix_makes_every_queue_missing(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, waiting=1)
    result = check(queue_config(prefix + "-typo"))
    assert result["status"] == "degraded"
    assert result["missingQueues"] == [HP]


# --------------------------------------------------------------------------- thresholds from the environment


def test_lag_thresholds_from_the_environment(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, waiting=4, prioritized=2)
    env = {"QUEUE_LAG_WARNING": "5", "QUEUE_LAG_CRITICAL": "8"}
    result = check(queue_config(prefix, **env))
    assert result["status"] == "degraded"
    assert result["thresholds"]["highPriorityLag"] == {"warning": 5, "critical": 8, "current": 6}

    run_scenario("populate", prefix, HP, waiting=2)
    assert check(queue_config(prefix, **env))["status"] == "unhealthy"  # 8
    assert check(queue_config(prefix, QUEUE_LAG_WARNING="20", QUEUE_LAG_CRITICAL="30"))["status"] == "healthy"


def test_failure_thresholds_from_the_environment(queue_config, prefix, bullmq_major):
    run_scenario("populate", prefix, HP, completed=197, failed=3)  # 1.5 %
    env = {"QUEUE_FAILURE_WARNING_PCT": "1", "QUEUE_FAILURE_CRITICAL_PCT": "2.5"}
    result = check(queue_config(prefix, **env))
    assert result["status"] == "degraded"
    assert result["summary"]["failureRate"] == "1.50%"
    assert result["thresholds"]["failureRate"] == {"warning": 1, "critical": 2.5, "current": 1.5}
    assert (
        check(queue_config(prefix, QUEUE_FAILURE_WARNING_PCT="0.5", QUEUE_FAILURE_CRITICAL_PCT="1.5"))["status"]
        == "unhealthy"
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"QUEUE_LAG_WARNING": "60", "QUEUE_LAG_CRITICAL": "40"}, "QUEUE_LAG_CRITICAL"),
        ({"QUEUE_LAG_WARNING": "many"}, "QUEUE_LAG_WARNING"),
        ({"QUEUE_LAG_CRITICAL": "-1"}, "QUEUE_LAG_CRITICAL"),
        ({"QUEUE_FAILURE_WARNING_PCT": "101"}, "QUEUE_FAILURE_WARNING_PCT"),
        ({"QUEUE_FAILURE_WARNING_PCT": "8", "QUEUE_FAILURE_CRITICAL_PCT": "6"}, "QUEUE_FAILURE_CRITICAL_PCT"),
        ({"QUEUE_NAMES": " , "}, "QUEUE_NAMES"),
        ({"REDIS_URL": ""}, "REDIS_URL"),
    ],
)
def test_bad_threshold_settings_name_the_variable(queue_config, env, variable):
    with pytest.raises(ConfigurationError) as caught:
        queue_config("bt-unused", **env)
    assert caught.value.variable == variable


# --------------------------------------------------------------------------- Redis down


def test_redis_down_is_unhealthy_quickly_without_the_url(queue_config):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    url = f"redis://:s3cret-pass@127.0.0.1:{closed}/0"
    settings = queue_config("bt-down", REDIS_URL=url, QUEUE_NAMES=f"{HP},default")

    started = time.perf_counter()
    result = check_queue_health(settings, get_redis(settings.redis))
    elapsed = time.perf_counter() - started

    # refused at once, retried once: bounded by two connect timeouts
    assert elapsed < 2 * settings.redis.connect_timeout_s + LOADED_MARGIN_S, f"answered after {elapsed:.2f} s"
    assert result["status"] == "unhealthy"
    reason = result["reason"]
    assert reason and reason.startswith("ConnectionError")
    assert "://" not in reason and "s3cret-pass" not in reason and url not in reason
    assert result["reasonCategory"] == "connection refused"
    assert result["queues"] == [] and result["summary"] is None
    assert result["thresholds"]["highPriorityLag"] == {"warning": 50, "critical": 100, "current": None}


def test_redis_that_accepts_but_never_answers_is_unhealthy_within_the_socket_timeout(queue_config):
    """A hung Redis is not retried: one connection, one socket timeout (2 s), then the answer."""
    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.1)

        def accept_and_hang() -> None:  # reads nothing, answers nothing; counts the connections
            while listener.fileno() != -1:
                try:
                    accepted.append(listener.accept()[0])
                except TimeoutError:
                    continue
                except OSError:
                    return

        server = threading.Thread(target=accept_and_hang, daemon=True)
        server.start()
        settings = queue_config("bt-hang", REDIS_URL=f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
        started = time.perf_counter()
        result = check_queue_health(settings, get_redis(settings.redis))
        elapsed = time.perf_counter() - started
        connections = len(accepted)
    server.join(5)
    for conn in accepted:
        conn.close()
    assert result["status"] == "unhealthy" and result["reason"].startswith("TimeoutError")
    assert result["reasonCategory"] == "timeout"
    assert connections == 1, f"{connections} connections: a hung Redis was retried"
    timeout = settings.redis.socket_timeout_s
    assert timeout <= elapsed < timeout + LOADED_MARGIN_S, f"answered after {elapsed:.2f} s"


@pytest.mark.parametrize(
    ("url", "category", "named"),
    [
        ("redis://:pw@redis.internal.example:6379/0", "DNS lookup failed", "redis.internal.example:6379"),
        ("redis://127.0.0.1:6379/99", "query failed", "DB index is out of range"),
    ],
)
def test_a_failure_is_one_category_that_names_nothing(queue_config, url, category, named):
    result = check_queue_health(settings := queue_config("bt-category", REDIS_URL=url), get_redis(settings.redis))
    assert result["status"] == "unhealthy" and named in result["reason"]
    assert result["reasonCategory"] == category


def test_wrong_password_and_a_full_server_are_their_own_categories(queue_config, password_protected_redis):
    wrong = queue_config("bt-auth", REDIS_URL=password_protected_redis.replace("right-Pa55word", "wrong-Pa55word"))
    result = check_queue_health(wrong, get_redis(wrong.redis))
    assert result["reasonCategory"] == "authentication failed" and "wrong-Pa55word" not in result["reason"]

    admin = redis.Redis.from_url(password_protected_redis, socket_timeout=2)
    maxclients = admin.config_get("maxclients")["maxclients"]
    try:
        connected = int(admin.info("clients")["connected_clients"])
        admin.config_set("maxclients", connected)  # no slot left for anybody else
        full = queue_config("bt-full", REDIS_URL=password_protected_redis, REDIS_SOCKET_TIMEOUT_S="1")
        result = check_queue_health(full, get_redis(full.redis))
        assert result["status"] == "unhealthy" and result["reasonCategory"] == "too many connections", result
    finally:
        admin.config_set("maxclients", maxclients)
        admin.close()


@pytest.mark.parametrize(("backlog", "status"), [(0, "degraded"), (5, "degraded"), (120, "unhealthy")])
def test_a_paused_high_priority_queue_is_the_same_incident_on_both_majors(
    queue_config, prefix, bullmq_major, backlog, status
):
    run_scenario("populate", prefix, HP, waiting=backlog, prioritized=1)
    run_scenario("pause", prefix, HP)
    result = check(queue_config(prefix))
    assert result["status"] == status  # paused: never healthy; its backlog is lag like any other
    assert result["pausedQueues"] == [HP]
    assert result["thresholds"]["highPriorityLag"]["current"] == backlog + 1
    high = result["queues"][0]
    assert high["paused" if bullmq_major == 5 else "waiting"] == backlog
    assert {key: high[key] for key in COUNT_TYPES} == node_counts(prefix, HP)
