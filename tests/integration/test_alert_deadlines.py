"""One alert attempt never outlives its deadline: a webhook that drips its answer one byte per second (a real
HTTP server on 127.0.0.1), and deliveries still queued or in flight when the fan-out returns."""

from __future__ import annotations

import contextvars
import json
import re
import socketserver
import threading
import time
import uuid
from dataclasses import replace

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from parel_monitoring import correlation
from parel_monitoring.notify.delivery import ATTEMPT_DEADLINE, Channel, DeliverySettings, fan_out, send
from parel_monitoring.notify.formatting import slack_payload
from parel_monitoring.notify.model import Alert

SETTINGS = DeliverySettings(connect_timeout_s=1.0, read_timeout_s=2.0, max_attempts=1, backoff_base_s=0.05)
ALERT = Alert(severity="CRITICAL", title="Queue stalled", message="high-priority lag 120", metadata={},
              timestamp="2026-11-29T21:00:00.000Z", correlation_id="corr-drip", source="test")  # fmt: skip
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
DRIP_BYTES = 15  # then the server hangs up: a client without an attempt deadline waits all of it


class DripServer(socketserver.ThreadingTCPServer):
    """Reads a request, then answers one byte per second; records when the client has gone."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), DripHandler)
        self.requests = 0
        self.gone = threading.Event()


class DripHandler(socketserver.BaseRequestHandler):
    server: DripServer

    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.request.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)[1])
        while len(body) < length:
            body += self.request.recv(65536)
        self.server.requests += 1
        try:
            for byte in RESPONSE[:DRIP_BYTES]:
                self.request.sendall(bytes([byte]))
                time.sleep(1)
            self.request.sendall(b"")
        except OSError:  # the client shut its socket
            pass
        finally:
            self.server.gone.set()


@pytest.fixture
def drip():
    server = DripServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, Channel("slack", f"http://127.0.0.1:{server.server_address[1]}/services/T1/B1/DripSecret")
    server.shutdown()
    server.server_close()


def test_a_dripping_answer_ends_at_the_attempt_deadline(drip):
    """The read timeout (2 s) is per recv and each byte comes within 1 s: only an overall deadline per attempt
    (connect + read timeout = 3 s) ends it."""
    server, channel = drip
    started = time.monotonic()
    result = send(channel, slack_payload(ALERT), started + 60, SETTINGS)
    took = time.monotonic() - started
    assert (result.delivered, result.attempts, result.error) == (False, 1, ATTEMPT_DEADLINE), result
    assert took < DRIP_BYTES - 5, f"the attempt took {took:.1f} s"
    assert server.gone.wait(10), "the socket was left open"


def test_fan_out_returns_with_the_attempt_ended_not_still_in_flight(drip):
    server, channel = drip
    started = time.monotonic()
    [result] = fan_out(ALERT, [channel], started + 2, replace(SETTINGS, read_timeout_s=5, max_attempts=4))
    assert result.error.startswith(ATTEMPT_DEADLINE) and not result.delivered, result
    assert server.gone.wait(10) and server.requests == 1


@pytest.fixture
def hanging():
    """A webhook that answers only when released (or after 30 s); the requests it holds."""
    server, release, calls = HTTPServer(host="127.0.0.1", threaded=True), threading.Event(), []

    def hang(request: Request) -> Response:
        calls.append(request.path)
        release.wait(30)
        return Response(status=204)

    server.expect_request(re.compile("/hang/.*")).respond_with_handler(hang)
    server.start()
    yield server, release, calls
    release.set()
    server.stop()


def test_a_delivery_still_queued_when_fan_out_returns_is_cancelled_under_its_own_correlation_id(
    hanging, httpserver, capsys
):
    """Stragglers of an earlier fan-out occupy every worker; a new alert's delivery cannot start before its
    deadline. It is reported not delivered, must not be sent later (the SNS retry sends it), and what its worker
    logs carries its own invocation's correlation ID, not the one of the invocation running by then."""
    server, release, calls = hanging
    stragglers = [Channel("slack", server.url_for(f"/hang/{n}")) for n in range(8)]
    correlation.set_current("inv-stragglers")
    background = threading.Thread(
        target=contextvars.copy_context().run,
        args=(fan_out, ALERT, stragglers, time.monotonic() + 6, replace(SETTINGS, read_timeout_s=10)),
    )
    background.start()
    deadline = time.monotonic() + 30
    while len(calls) < 8:  # every worker is inside an attempt
        assert time.monotonic() < deadline, "the stragglers never reached the server"
        time.sleep(0.05)

    httpserver.expect_request("/ok").respond_with_data("ok")
    correlation.set_current("inv-1")
    [result] = fan_out(ALERT, [Channel("slack", httpserver.url_for("/ok"))], time.monotonic() + 1, SETTINGS)
    assert (result.delivered, result.error) == (False, "still in flight at the deadline")
    correlation.set_current("inv-2")  # the next invocation
    release.set()
    background.join(30)

    lines: list[dict] = []
    deadline = time.monotonic() + 30
    while not any(line["message"] == "Cancelled alert delivery ended" for line in lines):
        assert time.monotonic() < deadline, f"the cancelled delivery's worker never ended: {lines}"
        lines += [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        time.sleep(0.05)
    [ended] = [line for line in lines if line["message"] == "Cancelled alert delivery ended"]
    assert ended["correlation_id"] == "inv-1" and ended["attempts"] == 0, ended
    assert httpserver.log == []  # never sent


def test_a_late_success_is_not_resent_by_the_retry_and_is_remembered_in_redis(webhooks, monkeypatch, redis_client):
    """What a cancelled worker records when its last attempt succeeded after all (its fan-out had returned):
    the SNS retry of that message, here or (through Redis) in another environment, skips that channel."""
    from parel_monitoring.bullmq import RedisSettings
    from parel_monitoring.notify import dedup, delivery
    from parel_monitoring.notify.service import AlertSettings, dispatch

    monkeypatch.setattr(dedup, "PREFIX", f"parel-test-late-{uuid.uuid4().hex[:8]}")
    slack, discord = webhooks
    for server in webhooks:
        server.expect_request("", method="POST").respond_with_data("ok")
    settings = AlertSettings(
        stage="prod", slack_url=slack.url_for("/services/T1/B1/s"), discord_url=discord.url_for("/api/webhooks/1/d"),
        redis=RedisSettings("redis://127.0.0.1:6379/0", 0.5, 1.0), dedup_window_s=0, delivery=SETTINGS, margin_ms=0,
    )  # fmt: skip
    message = f"m-late-{uuid.uuid4().hex[:8]}"
    delivery._record_late(message, "slack")  # the worker's record of its late success

    report = dispatch(ALERT, message, settings, time.monotonic() + 10)
    assert report["channels"]["slack"]["alreadyDelivered"] is True and report["delivered"] is True
    assert slack.log == [] and len(discord.log) == 1
    assert redis_client.exists(f"{dedup.PREFIX}:delivered:{message}:slack")
    redis_client.delete(*redis_client.keys(f"{dedup.PREFIX}:*"))
