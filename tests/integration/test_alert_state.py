"""Alert deduplication and delivery memory on a real Redis."""

import time
import uuid

import pytest
import redis

import services
from parel_monitoring.bullmq import RedisSettings, get_redis
from parel_monitoring.notify import dedup
from parel_monitoring.notify.dedup import AlertState
from parel_monitoring.notify.model import Alert


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setattr(dedup, "PREFIX", f"parel-test-alerts-{uuid.uuid4().hex[:8]}")
    connection = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
    yield connection
    for key in connection.scan_iter(f"{dedup.PREFIX}:*"):
        connection.delete(key)


def alert(title="DB slow", severity="WARNING"):
    return Alert(severity, title, "query took 1500 ms")


def test_same_severity_and_title_within_the_window_is_suppressed_and_counted(client):
    state = AlertState(client, window_s=1)
    assert state.admit(alert(), "m1") == (True, 0)
    assert state.admit(alert(), "m2") == (False, 0)
    assert state.admit(alert(), "m3") == (False, 0)
    assert state.admit(alert(severity="CRITICAL"), "m4") == (True, 0)  # another severity is another alert
    assert state.admit(alert(title="Queue lag"), "m5") == (True, 0)
    time.sleep(1.1)
    assert state.admit(alert(), "m6") == (True, 2)  # the next one through says how many were suppressed
    assert state.admit(alert(), "m7") == (False, 0)


def test_a_retry_of_the_message_that_opened_the_window_is_not_a_duplicate(client):
    state = AlertState(client, window_s=60)
    assert state.admit(alert(), "sns-1") == (True, 0)
    assert state.admit(alert(), "sns-1") == (True, 0)
    assert state.admit(alert(), "sns-2") == (False, 0)


def test_delivery_memory_per_message_and_channel(client):
    state = AlertState(client, window_s=60)
    assert not state.already_delivered("sns-1", "slack")
    state.remember_delivered("sns-1", "slack")
    assert state.already_delivered("sns-1", "slack")
    assert not state.already_delivered("sns-1", "discord") and not state.already_delivered("sns-2", "slack")


def test_redis_down_fails_open(closed_port, capsys):
    client = get_redis(RedisSettings(f"redis://127.0.0.1:{closed_port}/0", 0.5, 1.0))  # as AlertsFunction builds it
    state = AlertState(client, window_s=60)
    assert state.admit(alert(), "m1") == (True, 0)
    assert state.admit(alert(), "m2") == (True, 0)
    assert not state.already_delivered("m1", "slack")
    state.remember_delivered("m1", "slack")
    assert "delivering anyway" in capsys.readouterr().out


def test_window_zero_disables_deduplication(client):
    state = AlertState(client, window_s=0)
    assert [state.admit(alert(), f"m{i}") for i in range(3)] == [(True, 0)] * 3


def test_each_decision_is_one_atomic_script_call():
    """Deliver-or-suppress is one server-side step (no window can close or be counted between round trips):
    after the script is loaded, every decision is exactly one EVALSHA."""
    url, _ = services.start_throwaway_redis()  # its own server: no other test's commands in the counts
    connection = redis.Redis.from_url(url, socket_timeout=2)
    state = AlertState(connection, window_s=60)
    assert state.admit(alert(), "warm-up") == (True, 0)  # loads the script
    connection.config_resetstat()
    decisions = [state.admit(alert(), f"m{n}") for n in range(5)] + [state.admit(alert(), "warm-up")]
    assert decisions == [(False, 0)] * 5 + [(True, 0)]
    calls = {
        name.removeprefix("cmdstat_"): figures["calls"] for name, figures in connection.info("commandstats").items()
    }
    # Redis counts the script's own commands too; what the client sent is the EVALSHAs alone.
    assert calls.get("evalsha") == 6 and "getdel" not in calls, calls
