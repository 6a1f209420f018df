"""tools/smoke.py against a fake API on 127.0.0.1 (pytest-httpserver) shaped like the bundle's routes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import smoke
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

TOKEN = "SmokeAdminToken-7f3c9d1e5b"
SMOKE = Path(__file__).resolve().parents[2] / "tools" / "smoke.py"
HEALTH_ROUTES = smoke.HEALTH_ROUTES
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")

HEALTHY = {
    "/api/health/app": {"status": "healthy", "memory": {"system": {"usagePercent": "7.50", "total": "0.25 GB"}}},
    "/api/health/db": {"status": "healthy", "query": {"responseTime": "3ms"}, "pool": {"usagePercent": "4.00"}},
    "/api/health/queue": {
        "status": "healthy",
        "summary": {"failureRate": "0.18%"},
        "thresholds": {"highPriorityLag": {"current": 12}},
    },
    "/api/health": {
        "status": "healthy",
        "timestamp": "2026-11-29T21:00:00.000Z",
        "checks": {"app": {"status": "healthy"}, "db": {"status": "healthy"}, "queue": {"status": "healthy"}},
    },
}
DELIVERED = {
    "delivered": True,
    "channels": {
        "slack": {"channel": "slack", "delivered": True, "attempts": 1, "status": 200, "error": None, "elapsedMs": 80},
        "discord": {"channel": "discord", "delivered": True, "attempts": 1, "status": 204, "error": None},
    },
    "suppressedBefore": 0,
}
DRY_RUN = {"staleSessions": 4, "stuckJobs": 0, "orphanedRecords": 1, "duration": 42, "status": "ok", "dryRun": True}


def _json(status: int, body, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


def public_view(body: dict) -> dict:
    """What a health route shows without the token (HEALTH_SHOW_DETAILS=when-authorized)."""
    view = {key: body[key] for key in ("status", "reason") if key in body}
    if isinstance(body.get("checks"), dict):
        view["checks"] = {name: {"status": check.get("status")} for name, check in body["checks"].items()}
    return view


class FakeApi:
    """The bundle's routes: health routes (figures for the token only), admin routes behind a bearer-token check."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.health = {route: (200 if body["status"] != "unhealthy" else 503, body) for route, body in HEALTHY.items()}
        self.alert_answer = (200, DELIVERED)
        self.heal_answer = (200, DRY_RUN)
        self.open_routes: set[str] = set()  # admin routes that (wrongly) accept any request
        self.wrong_token_status = 403
        self.echo = True
        self.health_token = TOKEN  # the token the health routes show their figures to
        for route in HEALTH_ROUTES:
            server.expect_request(route, method="GET").respond_with_handler(self._health(route))
        for route in ("/api/admin/heal", "/api/admin/alerts"):
            server.expect_request(route, method="POST").respond_with_handler(self._admin(route))

    def _health(self, route: str):
        def handle(request: Request) -> Response:
            status, body = self.health[route]
            if request.headers.get("Authorization") != f"Bearer {self.health_token}":
                body = public_view(body)
            headers = {}
            if self.echo and request.headers.get("x-correlation-id"):
                headers["x-correlation-id"] = request.headers["x-correlation-id"]
            return _json(status, body, headers)

        return handle

    def _admin(self, route: str):
        def handle(request: Request) -> Response:
            if route not in self.open_routes:
                authorization = request.headers.get("Authorization")
                if authorization is None:
                    return _json(401, {"message": "Unauthorized"})
                if authorization != f"Bearer {TOKEN}":
                    return _json(self.wrong_token_status, {"message": "Forbidden"})
            status, body = self.heal_answer if route.endswith("/heal") else self.alert_answer
            return _json(status, body)

        return handle

    def requests(self, path: str) -> list[Request]:
        return [request for request, _ in self.server.log if request.path == path]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in (*PROXY_VARIABLES, "ADMIN_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def shared_server():
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(shared_server):
    yield shared_server
    shared_server.clear()  # handlers and request log


@pytest.fixture
def api(server) -> FakeApi:
    return FakeApi(server)


def run(server: HTTPServer, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = smoke.main(["--url", server.url_for("/"), *args], out=out)
    return code, out.getvalue()


CORRELATION_SUFFIX = re.compile(r" \[correlation ID (smoke-[0-9a-f]{16})\]$")


def rows(output: str) -> dict[str, tuple[str, str]]:
    """``{check name: (PASS|FAIL, detail)}`` from the printed table, the correlation-ID suffix removed."""
    table: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        for verdict in ("  PASS    ", "  FAIL    "):
            if verdict in line:
                name, _, detail = line.partition(verdict)
                table[name.strip()] = (verdict.strip(), CORRELATION_SUFFIX.sub("", detail))
    return table


def test_passing_run_with_token(api, server):
    code, output = run(server, "--token", TOKEN)
    table = rows(output)
    assert code == 0, output
    assert all(verdict == "PASS" for verdict, _ in table.values()), output
    assert set(table) == {
        *(f"GET {route}" for route in HEALTH_ROUTES),
        "x-correlation-id echoed",
        "POST /api/admin/heal without a token",
        "POST /api/admin/heal with a wrong token",
        "POST /api/admin/alerts without a token",
        "POST /api/admin/alerts with a wrong token",
        "POST /api/admin/alerts (test alert)",
        "channel slack",
        "channel discord",
        "POST /api/admin/heal?dryRun=true",
    }
    assert table["GET /api/health/app"][1] == "200 healthy; memory 7.50% of 0.25 GB"
    assert table["GET /api/health"][1] == "200 healthy; app=healthy db=healthy queue=healthy"
    assert table["POST /api/admin/heal without a token"][1] == "401 refused"
    assert table["POST /api/admin/alerts with a wrong token"][1] == "403 refused"
    assert table["channel slack"][1] == "delivered, attempts 1, HTTP 200, 80 ms"
    assert "would heal 4 sessions, 0 stuck jobs, 1 orphaned rows" in table["POST /api/admin/heal?dryRun=true"][1]
    assert output.rstrip().endswith("13 checks, 0 failed: PASS")
    assert TOKEN not in output

    # The test alert is the documented one; every heal request, with or without a token, is a dry run.
    alerts = [json.loads(request.data) for request in api.requests("/api/admin/alerts")]
    sent = [alert for alert in alerts if alert]
    assert len(sent) == 1 and sent[0]["severity"] == "WARNING" and sent[0]["title"] == "Smoke test"
    assert sent[0]["message"]
    assert all(
        parse_qs(request.query_string.decode()) == {"dryRun": ["true"]} for request in api.requests("/api/admin/heal")
    )


def test_passing_run_without_token_skips_the_admin_checks(api, server):
    code, output = run(server)
    assert code == 0, output
    assert "admin token: not given" in output and "test alert and heal dry run skipped" in output
    assert "health routes read anonymously (statuses only)" in output
    assert rows(output)["GET /api/health/app"] == ("PASS", "200 healthy")
    assert not any(request.headers.get("Authorization") for route in HEALTH_ROUTES for request in api.requests(route))
    assert "(test alert)" not in output
    assert output.rstrip().endswith("9 checks, 0 failed: PASS")
    assert all(request.data in (b"{}", b"") for request in api.requests("/api/admin/alerts"))


def test_with_a_token_the_health_routes_are_sent_it_and_show_their_figures(api, server):
    code, output = run(server, "--token", TOKEN)
    assert code == 0, output
    for route in HEALTH_ROUTES:
        assert [request.headers.get("Authorization") for request in api.requests(route)] == [f"Bearer {TOKEN}"]
    assert rows(output)["GET /api/health/db"] == ("PASS", "200 healthy; query 3ms, connections 4.00%")
    assert "answered statuses only" not in output and TOKEN not in output


def test_a_token_the_health_routes_do_not_accept_is_noted(api, server):
    api.health_token = "another-token"  # or HEALTH_SHOW_DETAILS=never: statuses only, still 200
    code, output = run(server, "--token", TOKEN)
    assert code == 0, output
    assert rows(output)["GET /api/health/queue"] == ("PASS", "200 healthy")
    assert f"With the token, {', '.join(HEALTH_ROUTES)} answered statuses only" in output


def test_an_unhealthy_route_fails_with_its_status_and_reason(api, server):
    api.health["/api/health/db"] = (503, {"status": "unhealthy", "reason": "connection refused", "pool": None})
    api.health["/api/health"] = (503, {"status": "unhealthy", "checks": {"app": {"status": "healthy"}}})
    code, output = run(server, "--token", TOKEN)
    table = rows(output)
    assert code == 1
    assert table["GET /api/health/db"] == ("FAIL", "503 unhealthy; connection refused")
    assert table["GET /api/health"][0] == "FAIL" and table["GET /api/health"][1].startswith("503 unhealthy")
    assert table["GET /api/health/app"][0] == "PASS"
    assert output.rstrip().endswith("13 checks, 2 failed: FAIL")
    assert TOKEN not in output


def test_a_failed_check_names_the_correlation_id_it_sent(api, server):
    api.health["/api/health/queue"] = (503, {"status": "unhealthy", "reason": "Timeout connecting to server"})
    api.heal_answer = (409, {"error": "conflict", "message": "A heal run is already in progress"})
    code, output = run(server, "--token", TOKEN)
    assert code == 1
    failed = {
        line.split("  ")[0]: CORRELATION_SUFFIX.search(line) for line in output.splitlines() if "  FAIL  " in line
    }
    assert set(failed) == {"GET /api/health/queue", "POST /api/admin/heal?dryRun=true"}
    for path, match in zip(("/api/health/queue", "/api/admin/heal"), failed.values(), strict=True):
        sent = [r.headers.get("x-correlation-id") for r in api.requests(path) if r.headers.get("x-correlation-id")]
        assert match is not None and match[1] in sent
    assert not CORRELATION_SUFFIX.search(output.split("GET /api/health/app", 1)[1].splitlines()[0])


def test_degraded_passes_but_a_mismatched_status_code_fails(api, server):
    api.health["/api/health/queue"] = (
        200,
        {"status": "degraded", "missingQueues": ["mailer"], "thresholds": {"highPriorityLag": {"current": 60}}},
    )
    api.health["/api/health/app"] = (200, {"status": "unhealthy"})
    api.health["/api/health/db"] = (500, {"error": "configuration", "message": "DATABASE_URL is not set"})
    code, output = run(server, "--token", TOKEN)
    table = rows(output)
    assert code == 1
    assert table["GET /api/health/queue"][0] == "PASS"
    assert table["GET /api/health/queue"][1].startswith("200 degraded; high-priority lag 60")
    assert "missingQueues mailer" in table["GET /api/health/queue"][1]
    assert table["GET /api/health/app"] == ("FAIL", "200 with status 'unhealthy'")
    assert table["GET /api/health/db"] == ("FAIL", "HTTP 500: configuration: DATABASE_URL is not set")


@pytest.mark.parametrize("route", ["/api/admin/heal", "/api/admin/alerts"])
def test_an_admin_route_open_without_a_token_fails(api, server, route):
    api.open_routes.add(route)
    code, output = run(server, "--token", TOKEN)
    table = rows(output)
    assert code == 1
    assert table[f"POST {route} without a token"] == ("FAIL", "200: the route is open, it accepted the request")
    assert table[f"POST {route} with a wrong token"][0] == "FAIL"
    assert TOKEN not in output
    # The probes of the open route did nothing: heal probes are dry runs, alert probes are empty.
    unauthenticated = [r for r in api.requests(route) if r.headers.get("Authorization") != f"Bearer {TOKEN}"]
    assert unauthenticated
    for request in unauthenticated:
        if route.endswith("/heal"):
            assert parse_qs(request.query_string.decode()) == {"dryRun": ["true"]}
        else:
            assert json.loads(request.data) == {}


def test_a_wrong_token_must_be_forbidden_not_unauthorized(api, server):
    api.wrong_token_status = 401
    code, output = run(server)
    table = rows(output)
    assert code == 1
    assert table["POST /api/admin/heal with a wrong token"][1].startswith("HTTP 401 (expected 403)")


def test_missing_correlation_echo_fails(api, server):
    api.echo = False
    code, output = run(server)
    verdict, detail = rows(output)["x-correlation-id echoed"]
    assert code == 1 and verdict == "FAIL"
    assert "/api/health/app: missing" in detail


def test_undelivered_alert_fails_and_reports_each_channel(api, server):
    api.alert_answer = (
        502,
        {
            "delivered": False,
            "channels": {
                "slack": {"delivered": False, "attempts": 4, "status": 500, "error": f"HTTP 500 echoing {TOKEN}"},
                "discord": {"delivered": True, "attempts": 1, "status": 204, "error": None},
            },
        },
    )
    code, output = run(server, "--token", TOKEN)
    table = rows(output)
    assert code == 1
    assert table["POST /api/admin/alerts (test alert)"] == ("FAIL", "502, not delivered")
    assert table["channel slack"] == ("FAIL", "NOT delivered, attempts 4, HTTP 500, HTTP 500 echoing ***")
    assert table["channel discord"][0] == "PASS"
    assert TOKEN not in output  # even when an answer repeats it


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"delivered": False, "suppressed": True, "channels": {}}, "suppressed as a duplicate"),
        ({"delivered": False, "channels": {}, "warning": "no channel configured"}, "not delivered: no channel"),
    ],
)
def test_suppressed_or_unconfigured_alert_fails(api, server, answer, expected):
    api.alert_answer = (200, answer)
    code, output = run(server, "--token", TOKEN)
    verdict, detail = rows(output)["POST /api/admin/alerts (test alert)"]
    assert code == 1 and verdict == "FAIL" and detail.startswith(expected)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((409, {"error": "conflict", "message": "A heal run is already in progress"}), "409: another heal run"),
        (
            (503, {**DRY_RUN, "status": "failed", "routines": {"jobs": {"status": "failed", "error": "timeout"}}}),
            "503, routine(s) failed: jobs (timeout)",
        ),
        ((200, {**DRY_RUN, "dryRun": False}), "200, but the answer does not say dryRun: true"),
    ],
)
def test_heal_dry_run_failures(api, server, answer, expected):
    api.heal_answer = answer
    code, output = run(server, "--token", TOKEN)
    verdict, detail = rows(output)["POST /api/admin/heal?dryRun=true"]
    assert code == 1 and verdict == "FAIL" and detail.startswith(expected)


def test_a_refused_token_is_reported(api, server):
    code, output = run(server, "--token", "not-the-token")
    table = rows(output)
    assert code == 1
    assert table["POST /api/admin/heal?dryRun=true"][1].startswith("403: the token was refused")
    assert "not-the-token" not in output


def test_redirects_are_not_followed(server):
    server.expect_request("/elsewhere").respond_with_json({"status": "healthy"})
    for route in HEALTH_ROUTES:
        server.expect_request(route).respond_with_response(Response(status=302, headers={"Location": "/elsewhere"}))
    code, output = run(server)
    assert code == 1
    assert rows(output)["GET /api/health/app"] == ("FAIL", "HTTP 302: redirect to /elsewhere (not followed)")
    assert not [request for request, _ in server.log if request.path == "/elsewhere"]


def test_every_request_is_bounded_by_the_timeout(server):
    def slow(request: Request) -> Response:
        time.sleep(2)
        return _json(200, {"status": "healthy"})

    server.expect_request("/api/health/app").respond_with_handler(slow)
    started = time.monotonic()
    code, output = run(server, "--timeout", "0.3")
    assert code == 1
    assert rows(output)["GET /api/health/app"] == ("FAIL", "no complete answer within 0.3 s")
    # The other routes are not served (500 from the fake), so only the slow one waits.
    assert time.monotonic() - started < 1.8


def test_unreachable_api_fails_fast():
    out = io.StringIO()
    code = smoke.main(["--url", "http://127.0.0.1:9", "--timeout", "2"], out=out)
    table = rows(out.getvalue())
    assert code == 1
    assert table["GET /api/health/app"][0] == "FAIL" and table["GET /api/health/app"][1].startswith("no answer")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", ""], "--url is required"),
        (["--url", "ftp://example.com"], "must be an http(s) URL"),
        (["--url", "http://example.com", "--token", TOKEN], "refusing to send the admin token over plain http"),
        (["--url", "https://example.com", "--timeout", "0"], "--timeout must be between"),
    ],
)
def test_usage_errors_exit_2_without_a_request(capsys, args, message):
    assert smoke.main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err and TOKEN not in captured.err + captured.out


def test_command_line_reads_the_token_from_the_environment(api, server):
    env = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
    env["ADMIN_API_TOKEN"] = TOKEN
    result = subprocess.run(
        [sys.executable, str(SMOKE), "--url", server.url_for("/")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "admin token: given" in result.stdout and "POST /api/admin/heal?dryRun=true" in result.stdout
    assert TOKEN not in result.stdout + result.stderr
