"""dispatch(): stage policy, deduplication, fan-out and delivery memory, with real HTTP servers and Redis."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace

import boto3
import pytest
from pytest_httpserver import HTTPServer

from events_loader import load_event
from parel_monitoring.bullmq import RedisSettings
from parel_monitoring.notify import dedup
from parel_monitoring.notify.delivery import DeliverySettings
from parel_monitoring.notify.intake import alert_from_sns
from parel_monitoring.notify.model import Alert
from parel_monitoring.notify.service import AlertSettings, dispatch


@pytest.fixture
def settings(webhooks, monkeypatch):
    monkeypatch.setattr(dedup, "PREFIX", f"parel-test-alerts-{uuid.uuid4().hex[:8]}")
    slack, discord = webhooks
    return AlertSettings(
        stage="prod",
        slack_url=slack.url_for("/services/T1/B1/slack-secret-part"),
        discord_url=discord.url_for("/api/webhooks/1/discord-secret-part"),
        redis=RedisSettings("redis://127.0.0.1:6379/0", 0.5, 1.0),
        dedup_window_s=60,
        delivery=DeliverySettings(connect_timeout_s=1, read_timeout_s=2, max_attempts=2, backoff_base_s=0.05),
        margin_ms=0,
    )


def accept(*servers: HTTPServer) -> None:
    for server in servers:
        server.expect_request("", method="POST").respond_with_data("ok")


def received(server: HTTPServer) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in server.log]


def deadline(seconds: float = 10) -> float:
    return time.monotonic() + seconds


def test_delivers_to_both_channels_and_reports_each(webhooks, settings):
    accept(*webhooks)
    alert = Alert("CRITICAL", "Self-healing failed", "Redis unreachable", {"routine": "jobs"}, correlation_id="c-1")
    report = dispatch(alert, "m-1", settings, deadline())
    assert report["delivered"] is True
    assert {name: (c["delivered"], c["attempts"], c["status"]) for name, c in report["channels"].items()} == {
        "slack": (True, 1, 200),
        "discord": (True, 1, 200),
    }
    slack, discord = (received(server) for server in webhooks)
    assert "Self-healing failed" in json.dumps(slack) and discord[0]["embeds"][0]["color"] == 0xFF0000


def test_info_is_dropped_outside_dev_but_a_resolved_alarm_is_not(webhooks, settings):
    accept(*webhooks)
    report = dispatch(Alert("INFO", "Deployed", "v1.2"), "m-info", settings, deadline())
    assert report["delivered"] is False and "dev" in report["dropped"]
    assert all(server.log == [] for server in webhooks)
    _, resolved = alert_from_sns(load_event("sns-cloudwatch-ok")["Records"][0])
    assert dispatch(resolved, "m-ok", settings, deadline())["delivered"] is True
    assert dispatch(Alert("INFO", "Deployed", "v1.2"), "m-dev", replace(settings, stage="dev"), deadline())["delivered"]


def test_duplicates_are_suppressed_and_the_next_one_says_how_many(webhooks, settings):
    accept(*webhooks)
    settings = replace(settings, dedup_window_s=1)
    alert = Alert("WARNING", "Queue lag high", "lag 60")
    assert dispatch(alert, "a", settings, deadline())["delivered"] is True
    assert dispatch(alert, "b", settings, deadline()) == {"delivered": False, "suppressed": True, "channels": {}}
    assert dispatch(alert, "c", settings, deadline())["suppressed"] is True
    time.sleep(1.1)
    report = dispatch(alert, "d", settings, deadline())
    assert report["delivered"] is True and report["suppressedBefore"] == 2
    slack_texts = json.dumps(received(webhooks[0])[-1])
    assert "2 similar" in slack_texts
    assert len(received(webhooks[0])) == 2


def test_redis_down_still_delivers(webhooks, settings, closed_port):
    accept(*webhooks)
    settings = replace(settings, redis=RedisSettings(f"redis://127.0.0.1:{closed_port}/0", 0.3, 0.5))
    for message_id in ("x", "y"):  # no deduplication without Redis: both go out
        assert dispatch(Alert("WARNING", "Same", "again"), message_id, settings, deadline())["delivered"] is True
    assert len(webhooks[0].log) == 2


def test_a_retried_message_is_not_resent_to_the_channel_that_accepted_it(webhooks, settings):
    slack, discord = webhooks
    accept(slack)
    discord.expect_request("", method="POST").respond_with_data("busy", status=500)
    alert = Alert("CRITICAL", "Disk full", "100%")
    first = dispatch(alert, "sns-42", settings, deadline())
    assert first["delivered"] is False and first["channels"]["slack"]["delivered"] is True
    assert first["channels"]["discord"]["attempts"] == 2 and first["channels"]["discord"]["status"] == 500
    discord.clear()
    accept(discord)
    retry = dispatch(alert, "sns-42", settings, deadline())  # Lambda's retry of the same SNS message
    assert retry["delivered"] is True and retry["channels"]["slack"]["alreadyDelivered"] is True
    assert len(slack.log) == 1 and len(discord.log) == 1


def test_no_channel_configured_is_a_warning_not_a_crash(settings, capsys):
    report = dispatch(Alert("CRITICAL", "t", "m"), "m", replace(settings, slack_url=None, discord_url=None), deadline())
    assert report == {"delivered": False, "channels": {}, "warning": "no channel configured"}
    assert "No alert channel configured" in capsys.readouterr().out


def test_webhook_urls_come_from_secrets_manager(monkeypatch, fake_aws):
    secrets = boto3.client("secretsmanager")
    slack = secrets.create_secret(Name="slack", SecretString="https://hooks.slack.com/services/T/B/X")["ARN"]
    discord = secrets.create_secret(Name="discord", SecretString="https://discord.com/api/webhooks/1/Y")["ARN"]
    for name in ("SLACK_WEBHOOK_URL", "DISCORD_WEBHOOK_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_WEBHOOK_URL_SECRET_ARN", slack)
    monkeypatch.setenv("DISCORD_WEBHOOK_URL_SECRET_ARN", discord)
    settings = AlertSettings.from_env()
    assert [channel.name for channel in settings.channels()] == ["slack", "discord"]
    assert settings.slack_url.endswith("/X") and settings.redis is None
    assert "hooks.slack.com" not in repr(settings.channels())
