"""Alert fan-out against real HTTP servers on 127.0.0.1 standing in for Slack and Discord."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from parel_monitoring import error_tracker
from parel_monitoring.notify.delivery import (
    Channel,
    DeliveryResult,
    DeliverySettings,
    fan_out,
    send,
)
from parel_monitoring.notify.formatting import TRUNCATED, discord_payload, slack_payload
from parel_monitoring.notify.model import Alert
from parel_monitoring.settings import ConfigurationError
from polling import LOADED_MARGIN_S, wait_until

SLACK_SECRET, DISCORD_SECRET = "SlackSecretPart123", "DiscordSecretToken456"
SLACK_PATH = f"/services/T0001/B0001/{SLACK_SECRET}"
DISCORD_PATH = f"/api/webhooks/1234567890/{DISCORD_SECRET}"
# Short timeouts and backoff so the retry tests take tenths of a second.
FAST = DeliverySettings(connect_timeout_s=1.0, read_timeout_s=1.0, max_attempts=4, backoff_base_s=0.05)
ALERT = Alert(
    severity="CRITICAL",
    title="Database Connection Lost",
    message="PostgreSQL connection failed after 3 retries",
    metadata={"retries": 3, "lastError": "ECONNREFUSED"},
    timestamp="2025-10-13T16:00:00.000Z",
    correlation_id="corr-1234",
    source="parel-monitoring-HealFunction",
    suppressed=2,
)


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def servers():
    pair = HTTPServer(host="127.0.0.1", threaded=True), HTTPServer(host="127.0.0.1", threaded=True)
    for server in pair:
        server.start()
    yield pair
    for server in pair:
        server.stop()


@pytest.fixture
def slack(servers):
    yield servers[0]
    servers[0].clear()


@pytest.fixture
def discord(servers):
    yield servers[1]
    servers[1].clear()


@pytest.fixture
def channels(slack, discord) -> list[Channel]:
    return [Channel("slack", slack.url_for(SLACK_PATH)), Channel("discord", discord.url_for(DISCORD_PATH))]


@pytest.fixture
def hanging_slack(slack):
    """A Slack handler that answers only at teardown, and the times it was called."""
    release, calls = threading.Event(), []

    def hang(request: Request) -> Response:
        calls.append(time.monotonic())
        release.wait(10)
        return Response("late")

    slack.expect_request(SLACK_PATH).respond_with_handler(hang)
    yield calls
    release.set()
    wait_until(lambda: len(slack.log) >= len(calls), "the hanging Slack requests to finish")  # before slack.clear()


def received(server: HTTPServer) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in server.log]


def log_records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def assert_no_webhook_url(output: str, results: list[DeliveryResult], channels: list[Channel]) -> None:
    texts = [output, *(json.dumps(result.to_dict()) for result in results), *map(repr, channels)]
    for text in texts:
        for secret in (SLACK_SECRET, DISCORD_SECRET, *(channel.url for channel in channels)):
            assert secret not in text


def deadline_in(seconds: float) -> float:
    return time.monotonic() + seconds


# --------------------------------------------------------------------------- payloads


def test_both_channels_receive_the_seed_look(slack, discord, channels, capsys):
    slack.expect_request(SLACK_PATH, method="POST").respond_with_data("ok")
    discord.expect_request(DISCORD_PATH, method="POST").respond_with_data("", status=204)

    results = fan_out(ALERT, channels, deadline_in(10), FAST)

    assert [(r.channel, r.delivered, r.attempts, r.status, r.error) for r in results] == [
        ("slack", True, 1, 200, None),
        ("discord", True, 1, 204, None),
    ]
    assert received(slack) == [
        {
            "text": "🚨 CRITICAL: Database Connection Lost",
            "attachments": [
                {
                    "color": "#FF0000",
                    "blocks": [
                        {
                            "type": "header",
                            "text": {"type": "plain_text", "text": "🚨 CRITICAL: Database Connection Lost"},
                        },
                        {"type": "section", "text": {"type": "mrkdwn", "text": ALERT.message}},
                        {
                            "type": "section",
                            "text": {
                                "type": "mrkdwn",
                                "text": "*Severity:* CRITICAL\n*Timestamp:* 2025-10-13T16:00:00.000Z\n"
                                "*Correlation ID:* `corr-1234`\n*Source:* parel-monitoring-HealFunction",
                            },
                        },
                        {
                            "type": "section",
                            "text": {
                                "type": "mrkdwn",
                                "text": '*Metadata:*\n```\n{\n  "retries": 3,\n  "lastError": "ECONNREFUSED"\n}\n```',
                            },
                        },
                        {
                            "type": "context",
                            "elements": [
                                {"type": "mrkdwn", "text": "_2 similar alerts suppressed since the last one_"}
                            ],
                        },
                    ],
                }
            ],
        }
    ]
    assert received(discord) == [
        {
            "embeds": [
                {
                    "title": "🚨 CRITICAL: Database Connection Lost",
                    "color": 0xFF0000,
                    "timestamp": "2025-10-13T16:00:00.000Z",
                    "description": ALERT.message,
                    "footer": {"text": "parel-monitoring-HealFunction"},
                    "fields": [
                        {"name": "Severity", "value": "CRITICAL", "inline": True},
                        {"name": "Correlation ID", "value": "`corr-1234`", "inline": True},
                        {
                            "name": "Suppressed",
                            "value": "2 similar alerts suppressed since the last one",
                            "inline": False,
                        },
                        {"name": "retries", "value": "3", "inline": True},
                        {"name": "lastError", "value": "ECONNREFUSED", "inline": True},
                    ],
                }
            ],
            "allowed_mentions": {"parse": []},
        }
    ]
    assert [record["message"] for record in log_records(capsys.readouterr().out)] == ["Alert delivered"] * 2


@pytest.mark.parametrize(
    ("severity", "emoji", "slack_colour", "discord_colour"),
    [
        ("CRITICAL", "🚨", "#FF0000", 0xFF0000),
        ("WARNING", "⚠️", "#FFA500", 0xFFA500),
        ("INFO", "ℹ️", "#00FF00", 0x00FF00),  # noqa: RUF001
    ],
)
def test_colour_and_emoji_per_severity(slack, discord, channels, severity, emoji, slack_colour, discord_colour):
    slack.expect_request(SLACK_PATH).respond_with_data("ok")
    discord.expect_request(DISCORD_PATH).respond_with_data("", status=204)
    alert = replace(ALERT, severity=severity, metadata={}, suppressed=0, correlation_id="", source=None)

    assert all(result.delivered for result in fan_out(alert, channels, deadline_in(10), FAST))

    [slack_message], [discord_message] = received(slack), received(discord)
    assert slack_message["text"] == f"{emoji} {severity}: Database Connection Lost"
    assert slack_message["attachments"][0]["color"] == slack_colour
    assert [block["type"] for block in slack_message["attachments"][0]["blocks"]] == ["header", "section", "section"]
    embed = discord_message["embeds"][0]
    assert (embed["title"], embed["color"]) == (f"{emoji} {severity}: Database Connection Lost", discord_colour)
    assert embed["fields"] == [{"name": "Severity", "value": severity, "inline": True}]
    assert "footer" not in embed


def test_alert_text_cannot_ping_everyone_or_leak_secrets():
    alert = replace(
        ALERT,
        message="<!channel> @everyone failed",
        metadata={"databaseUrl": "postgres://app:Db-Pa55word@db:5432/app", "apiToken": "tok-abcdef123456"},
    )
    slack_text = json.dumps(slack_payload(alert))
    discord_message = discord_payload(alert)

    assert "&lt;!channel&gt; @everyone failed" in slack_text and "<!channel>" not in slack_text
    assert discord_message["allowed_mentions"] == {"parse": []}
    for text in (slack_text, json.dumps(discord_message)):
        assert "Db-Pa55word" not in text and "tok-abcdef123456" not in text


def assert_slack_within_limits(message: dict) -> list[str]:
    """Every text of ``message`` after checking its limit."""
    assert len(message["text"]) <= 40_000
    blocks = message["attachments"][0]["blocks"]
    assert len(blocks) <= 50
    texts = [message["text"]]
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
            texts.append(block["text"]["text"])
        elif block["type"] == "section":
            assert len(block["text"]["text"]) <= 3_000
            texts.append(block["text"]["text"])
        else:
            elements = [element["text"] for element in block["elements"]]
            assert all(len(text) <= 3_000 for text in elements)
            texts += elements
    return texts


def assert_discord_within_limits(message: dict) -> dict:
    embed = message["embeds"][0]
    fields = embed["fields"]
    assert len(embed["title"]) <= 256
    assert len(embed.get("description", "")) <= 4_096
    assert len(fields) <= 25
    assert all(len(field["name"]) <= 256 and len(field["value"]) <= 1_024 for field in fields)
    total = len(embed["title"]) + len(embed.get("description", "")) + len(embed.get("footer", {}).get("text", ""))
    assert total + sum(len(field["name"]) + len(field["value"]) for field in fields) <= 6_000
    return embed


LONG_SOURCE = "parel-monitoring-HealFunction " * 100  # 3,000 characters
LONG_METADATA = {f"{'a long metadata key ' * 15}{index}": "a long value " * 160 for index in range(40)}


def embed_chars(embed: dict) -> int:
    fields = sum(len(field["name"]) + len(field["value"]) for field in embed["fields"])
    return len(embed["title"]) + len(embed.get("description", "")) + len(embed["footer"]["text"]) + fields


def test_long_alerts_are_cut_at_every_limit_with_a_marker(slack, discord, channels):
    slack.expect_request(SLACK_PATH).respond_with_data("ok")
    discord.expect_request(DISCORD_PATH).respond_with_data("", status=204)
    alert = replace(
        ALERT,
        title="Disk full on worker " * 2_500,  # 50,000 characters
        message="The backup job wrote past the quota. " * 300,  # 11,100
        metadata=LONG_METADATA,
        source=LONG_SOURCE,
    )

    assert all(result.delivered for result in fan_out(alert, channels, deadline_in(10), FAST))

    [slack_message], [discord_message] = received(slack), received(discord)
    text, header, message, details, metadata, suppressed = assert_slack_within_limits(slack_message)
    assert len(text) == 40_000 and text.endswith(TRUNCATED)
    assert len(header) == 150 and header.endswith(TRUNCATED)
    assert len(message) == 3_000 and message.endswith(TRUNCATED)
    assert len(details) == 3_000 and details.endswith(TRUNCATED)  # the 3,000-character source
    assert len(metadata) == 3_000 and metadata.endswith(TRUNCATED + "\n```")  # the code block stays closed
    assert suppressed.startswith("_2 similar")

    embed = assert_discord_within_limits(discord_message)
    assert len(embed["title"]) == 256 and embed["title"].endswith(TRUNCATED)
    assert len(embed["description"]) == 4_096 and embed["description"].endswith(TRUNCATED)
    # Title, fixed fields and message come first; the source gets what is left, the metadata a count.
    assert embed["footer"]["text"].endswith(TRUNCATED)
    assert embed["fields"][-1] == {"name": TRUNCATED, "value": "40 more metadata entries not shown", "inline": False}
    assert embed_chars(embed) == 6_000


def test_long_metadata_fills_the_embed_up_to_6000_characters(discord, channels):
    discord.expect_request(DISCORD_PATH).respond_with_data("", status=204)
    alert = replace(ALERT, metadata=LONG_METADATA, source=LONG_SOURCE)

    assert send(channels[1], discord_payload(alert), deadline_in(10), FAST).delivered

    embed = assert_discord_within_limits(received(discord)[0])
    assert len(embed["footer"]["text"]) == 2_048 and embed["footer"]["text"].endswith(TRUNCATED)
    fixed, entries, omitted = embed["fields"][:3], embed["fields"][3:-1], embed["fields"][-1]
    assert [field["name"] for field in fixed] == ["Severity", "Correlation ID", "Suppressed"]
    assert len(entries) == 2  # 1,280 characters each: a third would pass 6,000
    for entry in entries:
        assert len(entry["name"]) == 256 and entry["name"].endswith(TRUNCATED)
        assert len(entry["value"]) == 1_024 and entry["value"].endswith(TRUNCATED)
    assert omitted["value"] == "38 more metadata entries not shown"
    assert 6_000 - 1_280 < embed_chars(embed) <= 6_000


def test_many_small_metadata_entries_stop_at_25_fields():
    alert = replace(ALERT, metadata={f"key{index}": index for index in range(40)})

    embed = assert_discord_within_limits(discord_payload(alert))

    assert len(embed["fields"]) == 25
    assert embed["fields"][-2] == {"name": "key20", "value": "20", "inline": True}  # 3 fixed fields before
    assert embed["fields"][-1]["value"] == "19 more metadata entries not shown"
    slack_texts = assert_slack_within_limits(slack_payload(alert))
    assert '"key39": 39' in slack_texts[-2]  # 40 short entries fit Slack's code block whole


# --------------------------------------------------------------------------- delivery rules


def test_slack_429_waits_for_retry_after_then_delivers(slack, channels):
    slack.expect_oneshot_request(SLACK_PATH).respond_with_data("rate_limited", status=429, headers={"Retry-After": "1"})
    slack.expect_request(SLACK_PATH).respond_with_data("ok")

    result = send(channels[0], slack_payload(ALERT), deadline_in(10), FAST)

    assert (result.delivered, result.attempts, result.status, result.error) == (True, 2, 200, None)
    assert result.elapsed_ms >= 1_000


def test_discord_429_waits_for_retry_after_in_the_body(discord, channels):
    limited = {"message": "You are being rate limited.", "retry_after": 0.5, "global": False}
    discord.expect_oneshot_request(DISCORD_PATH).respond_with_json(limited, status=429)
    discord.expect_request(DISCORD_PATH).respond_with_data("", status=204)

    result = send(channels[1], discord_payload(ALERT), deadline_in(10), FAST)

    assert (result.delivered, result.attempts, result.status) == (True, 2, 204)
    assert 500 <= result.elapsed_ms < 500 + LOADED_MARGIN_S * 1000  # waited the body's 0.5 s


def test_5xx_is_retried_then_delivered(slack, channels):
    slack.expect_oneshot_request(SLACK_PATH).respond_with_data("oops", status=500)
    slack.expect_oneshot_request(SLACK_PATH).respond_with_data("oops", status=503)
    slack.expect_request(SLACK_PATH).respond_with_data("ok")

    result = send(channels[0], slack_payload(ALERT), deadline_in(10), FAST)

    assert (result.delivered, result.attempts, result.status) == (True, 3, 200)
    assert len(slack.log) == 3


def test_a_hanging_channel_does_not_delay_the_other(hanging_slack, discord, channels, capsys):
    discord_received_at: list[float] = []

    def answer(request: Request) -> Response:
        discord_received_at.append(time.monotonic())
        return Response(status=204)

    discord.expect_request(DISCORD_PATH).respond_with_handler(answer)
    # Slack's first attempt hangs for a read timeout a loaded machine cannot mistake for sending at once.
    settings = replace(FAST, read_timeout_s=LOADED_MARGIN_S, max_attempts=2)
    started = time.monotonic()

    slack_result, discord_result = fan_out(ALERT, channels, started + 4 * LOADED_MARGIN_S, settings)

    # sent while Slack's first attempt still hung, not after Slack's timeouts
    assert discord_result.delivered and discord_result.elapsed_ms < LOADED_MARGIN_S * 1000
    assert discord_received_at[0] - started < LOADED_MARGIN_S
    assert len(hanging_slack) == 2
    assert (slack_result.delivered, slack_result.attempts, slack_result.error) == (False, 2, "read timeout")
    assert slack_result.elapsed_ms >= 2 * LOADED_MARGIN_S * 1000  # two read timeouts
    assert_no_webhook_url(capsys.readouterr().out, [slack_result, discord_result], channels)


def test_404_is_final_logged_and_captured_without_the_url(slack, channels, capsys, monkeypatch):
    captured = []
    monkeypatch.setattr(
        error_tracker, "capture_message", lambda message, context, severity: captured.append((message, severity))
    )
    slack.expect_request(SLACK_PATH).respond_with_data("no_service", status=404)

    result = send(channels[0], slack_payload(ALERT), deadline_in(10), FAST)

    assert (result.delivered, result.attempts, result.status) == (False, 1, 404)
    assert result.error == "HTTP 404 webhook not found (deleted?)"
    assert len(slack.log) == 1
    output = capsys.readouterr().out
    [record] = log_records(output)
    assert (record["level"], record["message"], record["channel"], record["status"]) == (
        "ERROR",
        "Alert webhook rejected the alert",
        "slack",
        404,
    )
    assert captured == [("Alert webhook (slack) answered HTTP 404", error_tracker.ErrorSeverity.ERROR)]
    assert_no_webhook_url(output + repr(captured), [result], channels)


def test_other_4xx_is_final_with_the_platform_reason(discord, channels):
    invalid = '{"message": "Invalid Webhook Token", "code": 50027}'
    discord.expect_request(DISCORD_PATH).respond_with_data(invalid, status=401, content_type="application/json")

    result = send(channels[1], discord_payload(ALERT), deadline_in(10), FAST)

    assert (result.delivered, result.attempts, result.status) == (False, 1, 401)
    assert result.error == f"HTTP 401: {invalid}"


def test_connection_refused_is_retried_then_not_delivered(closed_port, capsys):
    channel = Channel("slack", f"http://127.0.0.1:{closed_port}{SLACK_PATH}")

    result = send(channel, slack_payload(ALERT), deadline_in(10), FAST)

    assert (result.delivered, result.attempts, result.status, result.error) == (False, 4, None, "connection refused")
    output = capsys.readouterr().out
    assert [record["level"] for record in log_records(output)] == ["WARNING"]
    assert_no_webhook_url(output, [result], [channel])


def test_a_long_retry_after_is_not_awaited_past_the_deadline(slack, channels):
    slack.expect_request(SLACK_PATH).respond_with_data("rate_limited", status=429, headers={"Retry-After": "30"})
    started = time.monotonic()

    result = send(channels[0], slack_payload(ALERT), started + 2, FAST)

    assert time.monotonic() - started < 2 + LOADED_MARGIN_S  # by the deadline, not after the 30 s
    assert (result.delivered, result.attempts, result.status) == (False, 1, 429)
    assert result.error == "HTTP 429 rate limited; retry in 30 s would pass the deadline"


def test_timeouts_are_clipped_to_the_deadline(hanging_slack, channels):
    started = time.monotonic()

    [result] = fan_out(ALERT, channels[:1], started + 1, replace(FAST, read_timeout_s=30))

    assert 0.9 < time.monotonic() - started < 1 + LOADED_MARGIN_S  # the 1 s deadline, not the 30 s read timeout
    assert not result.delivered and result.error.startswith("read timeout")


# --------------------------------------------------------------------------- configuration


def test_only_the_given_channels_are_used(slack, discord, channels):
    discord.expect_request(DISCORD_PATH).respond_with_data("", status=204)

    results = fan_out(ALERT, channels[1:], deadline_in(10), FAST)

    assert [(r.channel, r.delivered) for r in results] == [("discord", True)]
    assert slack.log == [] and len(discord.log) == 1
    assert fan_out(ALERT, [], deadline_in(10), FAST) == []


def test_settings_from_env(monkeypatch):
    for name in ("ALERT_CONNECT_TIMEOUT_S", "ALERT_READ_TIMEOUT_S", "ALERT_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    defaults = DeliverySettings.from_env()
    assert (defaults.connect_timeout_s, defaults.read_timeout_s, defaults.max_attempts) == (3.0, 5.0, 4)

    monkeypatch.setenv("ALERT_CONNECT_TIMEOUT_S", "1.5")
    monkeypatch.setenv("ALERT_READ_TIMEOUT_S", "2")
    monkeypatch.setenv("ALERT_MAX_ATTEMPTS", "2")
    configured = DeliverySettings.from_env()
    assert (configured.connect_timeout_s, configured.read_timeout_s, configured.max_attempts) == (1.5, 2.0, 2)

    monkeypatch.setenv("ALERT_MAX_ATTEMPTS", "lots")
    with pytest.raises(ConfigurationError, match="ALERT_MAX_ATTEMPTS"):
        DeliverySettings.from_env()
    with pytest.raises(ValueError, match="channel name"):
        Channel("teams", "https://example.invalid/hook")
