"""`make smoke URL=https://... [TOKEN=...]`: check a deployed stack (or `make api`) from the outside.

Checks, in order:

- the four health routes answer 200 or 503 with a JSON ``status`` (503 counts as a failure, with
  the status and reason), and echo the ``x-correlation-id`` they were sent; with a token they are
  sent it too (``HEALTH_SHOW_DETAILS=when-authorized`` then shows their figures, printed in the
  summary), without one they show statuses and failure categories only;
- ``POST /api/admin/heal`` and ``POST /api/admin/alerts`` refuse a request without a token
  (401 or 403) and with a wrong token (403);
- with a token (``--token`` or ``ADMIN_API_TOKEN``): a WARNING test alert reaches every configured
  channel and ``POST /api/admin/heal?dryRun=true`` answers 200.

The requests without a valid token are harmless even when a route turns out to be open: the heal
probes are dry runs and the alert probes carry an empty body. Redirects are never followed (the
token must not travel to another host), the token is never sent over plain HTTP to a non-loopback
host and never printed. Standard library only; every request is bounded by ``--timeout`` seconds.
Exit status: 0 all checks passed, 1 a check failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import ipaddress
import json
import os
import secrets
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

TIMEOUT_S = 10.0
MAX_BODY = 256 * 1024
HEALTH_ROUTES = ("/api/health/app", "/api/health/db", "/api/health/queue", "/api/health")
HEAL_ROUTE, ALERTS_ROUTE = "/api/admin/heal", "/api/admin/alerts"
# The status code each health status must come with.
HEALTH_CODES = {"healthy": 200, "degraded": 200, "unhealthy": 503}
CORRELATION_HEADER = "x-correlation-id"
USER_AGENT = "parel-monitoring-smoke/1"


class UsageError(Exception):
    """Bad arguments; exit status 2."""


class RequestFailed(Exception):
    """No HTTP answer at all (connection refused, DNS, TLS, timeout)."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    correlation_id: str | None = None  # sent with the request: find its log lines by it


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, passed: bool, detail: str, correlation_id: str | None = None) -> None:
        self.checks.append(Check(name, passed, detail, correlation_id))

    @property
    def failed(self) -> int:
        return sum(not check.passed for check in self.checks)


# --------------------------------------------------------------------------- HTTP


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as the answer: following it would forward the Authorization header."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_url(url: str, token: str | None) -> str:
    """The base URL without a trailing slash; UsageError when it cannot be used."""
    url = (url or "").strip()
    if not url:
        raise UsageError(
            "--url is required: the stack's ApiBaseUrl output (https://<api-id>.execute-api.<region>.amazonaws.com)"
            " or http://127.0.0.1:3000 for `make api`"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url must be an http(s) URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise UsageError("--url must not have a query string or fragment")
    if token and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(f"refusing to send the admin token over plain http to {parts.hostname}; use https")
    return url.rstrip("/")


class Client:
    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url
        self.timeout = timeout
        handlers: list[Any] = [_NoRedirect]
        if is_loopback(urllib.parse.urlsplit(base_url).hostname):
            handlers.append(urllib.request.ProxyHandler({}))  # a local API is never behind the proxy
        self._opener = urllib.request.build_opener(*handlers)

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None) -> Response:
        """One request, bounded as a whole by ``timeout`` (the socket timeout only bounds each read)."""
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"user-agent": USER_AGENT, "accept": "application/json", **(headers or {})}
        if data is not None:
            all_headers["content-type"] = "application/json"
        # The scheme was checked in normalise_url: only http(s) gets here.
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=all_headers)  # noqa: S310
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["response"] = self._send(req)
            except Exception as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=run, name="smoke-request", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            raise RequestFailed(f"no complete answer within {self.timeout:g} s")
        if "error" in outcome:
            raise RequestFailed(_describe_error(outcome["error"], self.timeout))
        return outcome["response"]

    def _send(self, req: urllib.request.Request) -> Response:
        try:
            with self._opener.open(req, timeout=self.timeout) as answer:
                return Response(answer.status, _headers(answer.headers), answer.read(MAX_BODY))
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, _headers(exc.headers), exc.read(MAX_BODY))


def _headers(message: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in (message.items() if message is not None else ())}


def _describe_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else RuntimeError(str(exc.reason))
    if isinstance(exc, TimeoutError):  # the socket's timeout and the overall one race: one wording for both
        return f"no complete answer within {timeout:g} s"
    if isinstance(exc, http.client.HTTPException):
        return f"invalid HTTP answer ({type(exc).__name__})"
    return f"no answer: {exc}" if str(exc) else f"no answer: {type(exc).__name__}"


# --------------------------------------------------------------------------- checks


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(response: Response) -> str:
    """What went wrong, from the bundle's error shape, API Gateway's ``{"message"}`` or the raw body."""
    body = response.json()
    if isinstance(body, dict):
        parts = [str(body[key]) for key in ("error", "message", "reason") if body.get(key)]
        if parts:
            return _one_line(": ".join(parts))
    if 300 <= response.status < 400:
        return f"redirect to {response.headers.get('location', '?')} (not followed)"
    return _one_line(response.body.decode("utf-8", "replace")) or "empty body"


def _dig(body: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _has_details(body: dict[str, Any]) -> bool:
    """More than the anonymous view (a status and a failure category, per component for the aggregate)?"""
    public = {"status", "reason", "checks"}
    checks = body.get("checks")
    if set(body) - public:
        return True
    return isinstance(checks, dict) and any(
        isinstance(check, dict) and set(check) - {"status", "reason"} for check in checks.values()
    )


def _health_summary(route: str, body: dict[str, Any]) -> str:
    """The few fields an operator reads first on each route."""
    if body.get("reason"):
        return _one_line(str(body["reason"]), 100)
    if route.endswith("/app"):
        usage, total = _dig(body, "memory", "system", "usagePercent"), _dig(body, "memory", "system", "total")
        return f"memory {usage}% of {total}" if usage is not None else ""
    if route.endswith("/db"):
        query, pool = _dig(body, "query", "responseTime"), _dig(body, "pool", "usagePercent")
        return f"query {query}, connections {pool}%" if query is not None else ""
    if route.endswith("/queue"):
        lag, rate = _dig(body, "thresholds", "highPriorityLag", "current"), _dig(body, "summary", "failureRate")
        extra = [
            f"{key} {', '.join(map(str, body[key]))}" for key in ("missingQueues", "pausedQueues") if body.get(key)
        ]
        return ", ".join([f"high-priority lag {lag}, failure rate {rate}", *extra]) if lag is not None else ""
    checks = body.get("checks")
    if isinstance(checks, dict):
        return " ".join(f"{name}={_dig(checks, name, 'status')}" for name in ("app", "db", "queue"))
    return ""


class Smoke:
    def __init__(self, base_url: str, token: str | None, timeout: float = TIMEOUT_S, send_alert: bool = True) -> None:
        self.client = Client(base_url, timeout)
        self.token = token
        self.send_alert = send_alert
        self.report = Report()
        self.statuses_only: list[str] = []  # health routes that showed no details although a token was sent

    @staticmethod
    def _correlation_id() -> str:
        return f"smoke-{uuid.uuid4().hex[:16]}"

    def run(self) -> Report:
        echo_problems = [problem for route in HEALTH_ROUTES if (problem := self.check_health(route))]
        self.report.add(
            f"{CORRELATION_HEADER} echoed",
            not echo_problems,
            "; ".join(echo_problems) or f"by all {len(HEALTH_ROUTES)} health routes",
        )
        if self.statuses_only:
            self.report.notes.append(
                f"With the token, {', '.join(self.statuses_only)} answered statuses only: the token was not "
                "accepted there, or the stack runs with HealthShowDetails=never."
            )
        for route in (HEAL_ROUTE, ALERTS_ROUTE):
            self.check_refused(route, wrong_token=False)
            self.check_refused(route, wrong_token=True)
        if self.token:
            if self.send_alert:
                self.check_alert()
            else:
                self.report.notes.append("Test alert skipped (--skip-alert).")
            self.check_heal_dry_run()
        else:
            self.report.notes.append(
                "No token (TOKEN / ADMIN_API_TOKEN): test alert and heal dry run skipped; "
                "health routes read anonymously (statuses only)."
            )
        return self.report

    def check_health(self, route: str) -> str | None:
        """Add the route's check; return what is wrong with its correlation-ID echo, if anything."""
        cid = self._correlation_id()
        add = functools.partial(self.report.add, f"GET {route}", correlation_id=cid)
        headers = {CORRELATION_HEADER: cid}
        if self.token:  # the figures are for the admin token (HEALTH_SHOW_DETAILS=when-authorized)
            headers["authorization"] = f"Bearer {self.token}"
        try:
            response = self.client.request("GET", route, headers=headers)
        except RequestFailed as exc:
            add(False, str(exc))
            return f"{route}: no answer"
        body = response.json()
        status = body.get("status") if isinstance(body, dict) else None
        if status in HEALTH_CODES and HEALTH_CODES[status] == response.status:
            if self.token and not _has_details(body):
                self.statuses_only.append(route)
            summary = _health_summary(route, body)
            add(response.status == 200, f"{response.status} {status}" + (f"; {summary}" if summary else ""))
        elif response.status in (200, 503):
            add(False, f"{response.status} with " + (f"status {status!r}" if isinstance(body, dict) else "no JSON"))
        else:
            add(False, f"HTTP {response.status}: {_error_text(response)}")
        echoed = response.headers.get(CORRELATION_HEADER)
        if echoed == cid:
            return None
        return f"{route}: " + ("missing" if echoed is None else "a different value came back")

    def check_refused(self, route: str, *, wrong_token: bool) -> None:
        # A dry run and an empty alert: harmless should the route turn out to be open.
        path = f"{route}?dryRun=true" if route == HEAL_ROUTE else route
        headers = {}
        if wrong_token:
            wrong = "smoke-wrong-" + secrets.token_hex(16)
            while self.token and wrong == self.token:
                wrong = "smoke-wrong-" + secrets.token_hex(16)
            headers["authorization"] = f"Bearer {wrong}"
        name = f"POST {route} " + ("with a wrong token" if wrong_token else "without a token")
        expected = {403} if wrong_token else {401, 403}
        try:
            response = self.client.request("POST", path, headers=headers, body={})
        except RequestFailed as exc:
            self.report.add(name, False, str(exc))
            return
        if response.status in expected:
            self.report.add(name, True, f"{response.status} refused")
        elif 200 <= response.status < 300:
            self.report.add(name, False, f"{response.status}: the route is open, it accepted the request")
        else:
            want = " or ".join(map(str, sorted(expected)))
            self.report.add(name, False, f"HTTP {response.status} (expected {want}): {_error_text(response)}")

    def _admin(self, name: str, path: str, body: Any = None) -> tuple[Callable[[bool, str], None], Response | None]:
        """POST with the token: ``(add, response)``; ``None`` when the check already failed (no answer, refused)."""
        cid = self._correlation_id()
        add = functools.partial(self.report.add, name, correlation_id=cid)
        headers = {"authorization": f"Bearer {self.token}", CORRELATION_HEADER: cid}
        try:
            response = self.client.request("POST", path, headers=headers, body=body)
        except RequestFailed as exc:
            add(False, str(exc))
            return add, None
        if response.status in (401, 403):
            add(False, f"{response.status}: the token was refused (check TOKEN / ADMIN_API_TOKEN)")
            return add, None
        return add, response

    def check_alert(self) -> None:
        host = urllib.parse.urlsplit(self.client.base_url).hostname
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        alert = {
            "severity": "WARNING",
            "title": "Smoke test",
            "message": f"Test alert from `make smoke` against {host} at {now}. No action needed.",
            "metadata": {"source": "tools/smoke.py"},
        }
        add, response = self._admin(f"POST {ALERTS_ROUTE} (test alert)", ALERTS_ROUTE, alert)
        if response is None:
            return
        body = response.json()
        if not isinstance(body, dict) or response.status not in (200, 502):
            add(False, f"HTTP {response.status}: {_error_text(response)}")
            return
        channels = body.get("channels") if isinstance(body.get("channels"), dict) else {}
        if body.get("delivered") is True:
            add(True, f"{response.status}, delivered to {', '.join(channels) or 'the channels'}")
        elif body.get("suppressed"):
            add(False, "suppressed as a duplicate: a 'Smoke test' WARNING went out within the dedup window "
                "(ALERT_DEDUP_WINDOW_S, 300 s by default); run again later")  # fmt: skip
        elif body.get("dropped") or body.get("warning"):
            add(False, f"not delivered: {_one_line(str(body.get('dropped') or body['warning']))}")
        else:
            add(False, f"{response.status}, not delivered")
        for channel, result in channels.items():
            self.report.add(f"  channel {channel}", _dig(result, "delivered") is True, _channel_detail(result))

    def check_heal_dry_run(self) -> None:
        path = f"{HEAL_ROUTE}?dryRun=true"
        add, response = self._admin(f"POST {path}", path)
        if response is None:
            return
        body = response.json()
        if response.status == 200 and isinstance(body, dict):
            if body.get("dryRun") is not True:
                add(False, "200, but the answer does not say dryRun: true")
                return
            add(True, f"200 {body.get('status')}; would heal {body.get('staleSessions')} sessions, "
                f"{body.get('stuckJobs')} stuck jobs, {body.get('orphanedRecords')} orphaned rows "
                f"({body.get('duration')} ms)")  # fmt: skip
        elif response.status == 409:
            add(False, "409: another heal run is in progress; try again when it ends")
        elif response.status == 503 and isinstance(body, dict) and isinstance(body.get("routines"), dict):
            failed = [
                f"{routine} ({_one_line(str(detail.get('error')), 80)})"
                for routine, detail in body["routines"].items()
                if isinstance(detail, dict) and detail.get("status") == "failed"
            ]
            add(False, "503, routine(s) failed: " + (", ".join(failed) or "see the heal log"))
        else:
            add(False, f"HTTP {response.status}: {_error_text(response)}")


def _channel_detail(result: Any) -> str:
    if not isinstance(result, dict):
        return "no result"
    if result.get("alreadyDelivered"):
        return "delivered earlier (retry of the same message)"
    parts = ["delivered" if result.get("delivered") else "NOT delivered"]
    if result.get("attempts") is not None:
        parts.append(f"attempts {result['attempts']}")
    if result.get("status") is not None:
        parts.append(f"HTTP {result['status']}")
    if result.get("elapsedMs") is not None:
        parts.append(f"{result['elapsedMs']} ms")
    if result.get("error"):
        parts.append(_one_line(str(result["error"]), 100))
    return ", ".join(parts)


# --------------------------------------------------------------------------- output


def render(report: Report, base_url: str, token: str | None) -> str:
    width = max([len("CHECK"), *(len(check.name) for check in report.checks)])
    lines = [f"Smoke test of {base_url} (admin token: {'given' if token else 'not given'})", ""]
    lines.append(f"{'CHECK':<{width}}  RESULT  DETAIL")
    for check in report.checks:
        detail = check.detail
        if not check.passed and check.correlation_id:
            detail += f" [correlation ID {check.correlation_id}]"
        lines.append(f"{check.name:<{width}}  {'PASS' if check.passed else 'FAIL':<6}  {detail}")
    lines.append("")
    lines.extend(report.notes)
    verdict = "FAIL" if report.failed else "PASS"
    lines.append(f"{len(report.checks)} checks, {report.failed} failed: {verdict}")
    text = "\n".join(lines)
    # Whatever a server sends back, the token itself is never written out.
    return text.replace(token, "***") if token else text


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(description="Check a deployed parel-monitoring stack or the local API.")
    parser.add_argument("--url", default="", help="API base URL (the stack's ApiBaseUrl output)")
    parser.add_argument("--token", default=None, help="admin token (default: $ADMIN_API_TOKEN)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per request (default 10)")
    parser.add_argument("--skip-alert", action="store_true", help="do not send the test alert")
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("ADMIN_API_TOKEN") or None
    try:
        if not 0 < args.timeout <= 60:
            raise UsageError("--timeout must be between 0 and 60 seconds")
        base_url = normalise_url(args.url, token)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = Smoke(base_url, token, args.timeout, send_alert=not args.skip_alert).run()
    print(render(report, base_url, token), file=out)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
