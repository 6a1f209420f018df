"""GET /api/health/uptime (issue 13) through the Lambda emulator against real local HTTP and HTTPS servers.

The route probes PROBE_TARGETS live with the probe code ProbeFunction runs: the overall status is the
worst target's (any down: 503 unhealthy; any degraded: degraded), anonymous callers read each target's
name, status and failure category only, the admin token the figures (latency, TTFB, HTTP status,
certificate days, URL, reason); results are cached like the other health routes.
"""

from __future__ import annotations

import datetime
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from events_loader import load_event
from local_api import LocalApi

TOKEN = "e2e-uptime-admin-token-5d1e9a"
BEARER = {"authorization": f"Bearer {TOKEN}"}
SLOW_S = 1.0  # the slow target's delay; its latencyWarnMs is far below it, its timeout far above


class Targets:
    """A real HTTP server on 127.0.0.1: /ok 200, /broken 503, /slow 200 after SLOW_S; counts requests per path."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.hits: Counter[str] = Counter()
        targets = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # as Next.js (and every load balancer in front of it) answers

            def do_GET(self) -> None:
                targets.hits[self.path] += 1
                if self.path == "/slow":
                    time.sleep(SLOW_S)
                status = 503 if self.path == "/broken" else 200
                body = json.dumps({"status": "healthy" if status == 200 else "unhealthy"}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def targets():
    server = Targets()
    yield server
    server.close()


def body(invocation) -> dict:
    return json.loads(invocation.payload["body"])


def get(function, correlation_id: str, **headers: str):
    return function.invoke(load_event("health-uptime", headers={"x-correlation-id": correlation_id, **headers}))


def check_lines(invocation, message: str) -> list[dict]:
    lines = [json.loads(line) for line in invocation.logs if line.startswith("{")]
    return [line for line in lines if line.get("message") == message]


def test_one_down_target_is_a_503_anonymous_callers_read_statuses_the_token_the_figures(
    start_function, targets, closed_port
):
    probe_targets = [
        {"name": "home", "url": targets.url("/ok"), "jsonPath": "$.status", "equals": "healthy"},
        {"name": "api", "url": targets.url("/broken")},
        {"name": "refused", "url": f"http://127.0.0.1:{closed_port}/", "timeoutMs": 3000},
        {"name": "slow", "url": targets.url("/slow"), "latencyWarnMs": 100, "timeoutMs": 8000},
    ]
    uptime = start_function("HealthUptimeFunction", PROBE_TARGETS=json.dumps(probe_targets), ADMIN_API_TOKEN=TOKEN)

    anonymous = get(uptime, "uptime-anonymous")
    assert anonymous.payload["statusCode"] == 503
    assert body(anonymous) == {
        "status": "unhealthy",
        "targets": [
            {"name": "home", "status": "up"},
            {"name": "api", "status": "down", "category": "status"},
            {"name": "refused", "status": "down", "category": "connect"},
            {"name": "slow", "status": "degraded"},
        ],
    }
    for detail in ("127.0.0.1", str(closed_port), "/broken", "503", "latency", "Ms", "refused:"):
        assert detail not in anonymous.payload["body"], f"{detail!r} in the anonymous answer"
    headers = anonymous.payload["headers"]
    assert headers["cache-control"] == "public, max-age=5" and headers["vary"] == "authorization"
    assert headers["x-correlation-id"] == "uptime-anonymous"

    authorized = get(uptime, "uptime-admin", **BEARER)
    assert authorized.payload["statusCode"] == 503
    assert authorized.payload["headers"]["cache-control"] == "private, max-age=5"
    full = body(authorized)
    assert full["status"] == "unhealthy" and full["cached"] is True
    assert full["summary"] == {"targets": 4, "up": 1, "degraded": 1, "down": 2}
    home, api, refused, slow = full["targets"]
    assert home["status"] == "up" and home["httpStatus"] == 200 and home["url"] == targets.url("/ok")
    assert home["latencyMs"] >= home["ttfbMs"] > 0 and home["certificateDaysLeft"] is None
    assert api["status"] == "down" and api["httpStatus"] == 503 and api["category"] == "status"
    assert refused["status"] == "down" and refused["category"] == "connect" and refused["httpStatus"] is None
    assert slow["status"] == "degraded" and slow["latencyMs"] >= SLOW_S * 1000 and slow["httpStatus"] == 200
    assert targets.hits == {"/ok": 1, "/broken": 1, "/slow": 1}, "the second request probed again"

    for invocation, correlation_id in ((anonymous, "uptime-anonymous"), (authorized, "uptime-admin")):
        (line,) = check_lines(invocation, "Health check unhealthy")
        assert line["level"] == "ERROR" and line["correlation_id"] == correlation_id and line["component"] == "uptime"
        assert "api down (status: " in line["reason"] and "refused down (connect" in line["reason"]
        assert "slow degraded" in line["reason"] and "home" not in line["reason"]


def test_all_up_is_healthy_degraded_is_200_and_no_targets_is_healthy(start_function, targets):
    up = start_function("HealthUptimeFunction", PROBE_TARGETS=json.dumps([{"name": "home", "url": targets.url("/ok")}]))
    answer = get(up, "uptime-up")
    assert answer.payload["statusCode"] == 200
    assert body(answer) == {"status": "healthy", "targets": [{"name": "home", "status": "up"}]}

    slow_targets = [{"name": "slow", "url": targets.url("/slow"), "latencyWarnMs": 100}]
    degraded = get(start_function("HealthUptimeFunction", PROBE_TARGETS=json.dumps(slow_targets)), "uptime-slow")
    assert degraded.payload["statusCode"] == 200
    assert body(degraded) == {"status": "degraded", "targets": [{"name": "slow", "status": "degraded"}]}
    (line,) = check_lines(degraded, "Health check degraded")
    assert line["level"] == "WARNING" and line["component"] == "uptime" and line["reason"] == "slow degraded"

    nothing = get(start_function("HealthUptimeFunction", HEALTH_SHOW_DETAILS="always"), "uptime-none")
    assert nothing.payload["statusCode"] == 200
    full = body(nothing)
    assert full["status"] == "healthy" and full["targets"] == [] and full["summary"]["targets"] == 0


def test_the_cache_spares_the_targets_and_ttl_zero_probes_every_request(start_function, targets):
    probe_targets = json.dumps([{"name": "home", "url": targets.url("/ok")}])
    cached = start_function("HealthUptimeFunction", PROBE_TARGETS=probe_targets, HEALTH_CACHE_TTL_S="60")
    for n in range(3):
        assert get(cached, f"uptime-cache-{n}").payload["statusCode"] == 200
    assert targets.hits["/ok"] == 1

    uncached = start_function("HealthUptimeFunction", PROBE_TARGETS=probe_targets, HEALTH_CACHE_TTL_S="0")
    replies = [get(uncached, f"uptime-no-cache-{n}") for n in range(2)]
    assert targets.hits["/ok"] == 3
    assert all(reply.payload["headers"]["cache-control"] == "no-store" for reply in replies)


def test_https_certificate_days_from_a_private_ca_and_an_untrusted_one_is_tls(start_function):
    ca, stranger = trustme.CA(), trustme.CA()
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)
    servers = []
    for issuer in (ca, stranger):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issuer.issue_cert("127.0.0.1", not_after=expires).configure_cert(context)
        servers.append(Targets(tls=context))
    trusted, untrusted = servers
    try:
        probe_targets = [
            {"name": "secure", "url": trusted.url("/ok")},
            {"name": "untrusted", "url": untrusted.url("/ok")},
        ]
        uptime = start_function(
            "HealthUptimeFunction", PROBE_TARGETS=json.dumps(probe_targets),
            PROBE_CA_BUNDLE=ca.cert_pem.bytes().decode(), HEALTH_SHOW_DETAILS="always",
        )  # fmt: skip
        answer = get(uptime, "uptime-tls")
        assert answer.payload["statusCode"] == 503
        secure, bad = body(answer)["targets"]
        assert secure["status"] == "up" and secure["httpStatus"] == 200 and 9 <= secure["certificateDaysLeft"] <= 10
        assert bad["status"] == "down" and bad["category"] == "tls" and bad["httpStatus"] is None
        assert 9 <= bad["certificateDaysLeft"] <= 10, "the days left are read also when verification fails"
        assert untrusted.hits == {}, "a request went over an unverified connection"
    finally:
        for server in servers:
            server.close()


def test_malformed_targets_are_a_configuration_error_naming_the_variable(start_function):
    broken = start_function("HealthUptimeFunction", PROBE_TARGETS='[{"name": "x", "url": "ftp://example.com/"}]')
    answer = get(broken, "uptime-bad")
    assert answer.payload["statusCode"] == 500
    assert body(answer)["variable"] == "PROBE_TARGETS" and "ftp://" not in answer.payload["body"]


def test_availability_route_needs_the_admin_token(built, closed_port):
    """GET /api/admin/uptime is behind the admin authorizer; with the token it reads CloudWatch (here an endpoint
    where nothing listens: a 502 naming the failure, never a crash)."""
    env = {"ADMIN_API_TOKEN": TOKEN, "PROBE_TARGETS": json.dumps([{"name": "home", "url": "https://app.example.com/"}]),
           "AWS_ENDPOINT_URL_CLOUDWATCH": f"http://127.0.0.1:{closed_port}", "AWS_MAX_ATTEMPTS": "1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-4f2a"}  # fmt: skip
    with LocalApi(build_dir=built, extra_env=env) as api:
        for headers in ({}, {"authorization": "Bearer not-the-token"}):
            request = urllib.request.Request(f"{api.url}/api/admin/uptime", headers=headers)  # noqa: S310
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)  # noqa: S310 - our own local URL
            assert refused.value.code in (401, 403), headers
        bearer = {"authorization": f"Bearer {TOKEN}"}
        request = urllib.request.Request(f"{api.url}/api/admin/uptime", headers=bearer)  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310 - our own local URL
        assert failed.value.code == 502
        answer = json.loads(failed.value.read())
        assert answer["error"] == "cloudwatch" and answer["reason"].startswith("EndpointConnectionError")
        assert "testing-secret-4f2a" not in json.dumps(answer)


def test_a_condition_on_a_json_list_or_object_is_answered_and_cached(start_function, targets):
    """``equals`` may be any JSON value: settings holding a list or an object still key the result cache."""
    probe_targets = [
        {"name": "listed", "url": targets.url("/ok"), "jsonPath": "$.status", "equals": ["healthy"]},
        {"name": "object", "url": targets.url("/ok"), "jsonPath": "$.status", "equals": {"is": "healthy"}},
    ]
    uptime = start_function("HealthUptimeFunction", PROBE_TARGETS=json.dumps(probe_targets), HEALTH_CACHE_TTL_S="60")
    first, second = get(uptime, "uptime-json-1"), get(uptime, "uptime-json-2")
    for answer in (first, second):
        assert answer.payload["statusCode"] == 503, answer.payload
        assert body(answer) == {"status": "unhealthy", "targets": [
            {"name": "listed", "status": "down", "category": "condition"},
            {"name": "object", "status": "down", "category": "condition"}]}  # fmt: skip
    assert targets.hits["/ok"] == 2, "the second request probed again: the cache did not hold"
