"""AlertsFunction through the Lambda emulator: API route and SNS (layer alerts, CloudWatch alarms)."""

import json
import uuid

import pytest

from events_loader import load_event


@pytest.fixture
def alerts_function(start_function, webhooks):
    slack, discord = webhooks

    def start(**env):
        values = {
            "SLACK_WEBHOOK_URL": slack.url_for("/services/T0/B0/e2e-slack-secret"),
            "DISCORD_WEBHOOK_URL": discord.url_for("/api/webhooks/0/e2e-discord-secret"),
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "ALERT_DEDUP_WINDOW_S": "0",
            "ALERT_MAX_ATTEMPTS": "2",
            "STAGE": "prod",
            **env,
        }
        return start_function("AlertsFunction", **values)

    return start


def fresh(name):
    """The event with a new SNS message id (delivery memory would otherwise skip a replay)."""
    event = load_event(name)
    event["Records"][0]["Sns"]["MessageId"] = str(uuid.uuid4())
    return event


def accept(*servers):
    for server in servers:
        server.expect_request("", method="POST").respond_with_data("ok")


def test_api_alert_reaches_both_channels(alerts_function, webhooks):
    accept(*webhooks)
    result = alerts_function().invoke(load_event("alerts-api"))
    assert result.payload["statusCode"] == 200
    report = json.loads(result.payload["body"])
    assert report["delivered"] is True and set(report["channels"]) == {"slack", "discord"}
    slack, discord = (json.loads(server.log[0][0].get_data()) for server in webhooks)
    assert "Disk almost full on worker-3" in json.dumps(slack)
    assert discord["embeds"][0]["color"] == 0xFFA500
    assert "demo-alert-0001" in json.dumps(slack)  # the correlation ID travels with the alert
    assert "e2e-slack-secret" not in "\n".join(result.logs)


@pytest.mark.parametrize(
    ("body", "status"),
    [("{oops", 400), (json.dumps({"severity": "LOUD", "title": "t", "message": "m"}), 400), ("x" * 70_000, 413)],
)
def test_rejected_requests_send_nothing(alerts_function, webhooks, body, status):
    accept(*webhooks)
    result = alerts_function().invoke(load_event("alerts-api", body=body))
    assert result.payload["statusCode"] == status
    assert json.loads(result.payload["body"])["correlationId"] == "demo-alert-0001"
    assert all(server.log == [] for server in webhooks)


def test_cloudwatch_alarm_and_recovery_from_sns(alerts_function, webhooks):
    accept(*webhooks)
    function = alerts_function()
    alarm = function.invoke(fresh("sns-cloudwatch-alarm"))
    recovery = function.invoke(fresh("sns-cloudwatch-ok"))
    assert alarm.payload == recovery.payload == {"processed": 1}
    embeds = [json.loads(request.get_data())["embeds"][0] for request, _ in webhooks[1].log]
    assert [embed["color"] for embed in embeds] == [0xFF0000, 0x00FF00]
    assert embeds[1]["title"].endswith("Resolved: parel-monitoring-high-priority-lag-critical")


def test_failed_sns_delivery_raises_for_a_retry_that_skips_the_channel_that_accepted(alerts_function, webhooks):
    slack, discord = webhooks
    accept(slack)
    discord.expect_request("", method="POST").respond_with_data("down", status=503)
    event = fresh("sns-alert")
    function = alerts_function()
    failed = function.invoke(event)
    assert failed.payload["errorType"] == "RuntimeError"  # Lambda retries it (EventInvokeConfig)
    discord.clear()
    accept(discord)
    assert function.invoke(event).payload == {"processed": 1}
    assert len(slack.log) == 1 and len(discord.log) == 1
