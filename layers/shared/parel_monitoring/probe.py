"""Uptime probes of the app's own URLs: ``ProbeSettings.from_env()`` and ``probe_all(settings, until)``.

Each target is probed on a thread of its own with the standard library only: ``socket.getaddrinfo``
(failure category ``dns``), ``socket.create_connection`` (``connect``), ``ssl`` (``tls``), then
``http.client`` on that socket. Doing the steps ourselves (rather than through ``requests``/``urllib3``)
gives the three figures cleanly: the step that failed is the category, the time to first byte is when
``getresponse()`` has read the status line, and the peer certificate is read from the handshake itself,
before any HTTP happens, so its days to expiry are reported also when the request then fails (503, a
condition, a reset). It also keeps ``requests``/``urllib3`` out of the cold start.

Certificate verification is never switched off: the context is ``ssl.create_default_context()`` plus the
roots of ``PROBE_CA_BUNDLE``. When verification fails, a second, unverified handshake reads the
certificate only to report its days left; the probe fails with ``tls`` and nothing is sent over it.

Conditions: ``expectStatus`` (default 200-399: the health routes answer 503 when unhealthy, so the status
alone judges them), ``bodyContains``, and ``jsonPath`` + ``equals`` over a small JSONPath subset
(``$.a.b``, ``$.items[0].x``, ``$['key']``): written here in 30 lines rather than adding a JSONPath
library (jsonpath-ng brings ply and a grammar to every cold start for three operators).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parel_monitoring.scrub import REDACTED, is_secret_key, register_secret, safe_reason, scrub_text
from parel_monitoring.settings import ConfigurationError, env_str, http_url

UP, DOWN, DEGRADED = "up", "down", "degraded"
DNS, CONNECT, TLS, TIMEOUT, STATUS, CONDITION = "dns", "connect", "tls", "timeout", "status", "condition"
CATEGORIES = (DNS, CONNECT, TLS, TIMEOUT, STATUS, CONDITION)
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TARGETS = 100
MAX_REDIRECTS = 5
MAX_BODY_BYTES = 1024 * 1024  # read for bodyContains / jsonPath; the rest is not downloaded
DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_LATENCY_WARN_MS = 5_000
DEFAULT_EXPECT = ((200, 399),)
# APP_BASE_URL's targets: the Next.js app's three health routes (503 when unhealthy) and its home page.
DEFAULT_PATHS = (("app", "/api/health/app"), ("db", "/api/health/db"), ("queue", "/api/health/queue"), ("home", "/"))
_FIELDS = {"name", "url", "method", "expectStatus", "bodyContains", "jsonPath", "equals", "headers", "timeoutMs",
           "latencyWarnMs", "followRedirects"}  # fmt: skip
_MISSING = object()


# --------------------------------------------------------------------------- JSONPath subset

_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[(?:'([^']*)'|"([^"]*)")\]""")


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """``$.a.b[0]['c d']`` as its steps (``ValueError`` when it is not of the subset)."""
    if not path.startswith("$"):
        raise ValueError("must start with $")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(f"unsupported syntax at character {position + 1} (supported: $.key, [index], ['key'])")
        key, index, quoted, double = match.groups()
        steps.append(int(index) if index is not None else key if key is not None else quoted or double or "")
        position = match.end()
    return tuple(steps)


def resolve_json_path(document: Any, steps: tuple[str | int, ...]) -> Any:
    """The value at ``steps`` in ``document``, or ``_MISSING``."""
    for step in steps:
        found = isinstance(step, int) and isinstance(document, list) and step < len(document)
        if found or (isinstance(step, str) and isinstance(document, dict) and step in document):
            document = document[step]
        else:
            return _MISSING
    return document


# --------------------------------------------------------------------------- settings


def parse_expect_status(value: Any) -> tuple[tuple[int, int], ...]:
    """An int, ``"200-399"``, ``"204"``, or a list of those: inclusive ranges (``ValueError`` otherwise)."""
    items = value if isinstance(value, list) else [value]
    ranges = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError("expectStatus must be a status, a range like 200-399, or a list of them")
        if isinstance(item, int):
            low = high = item
        elif isinstance(item, str) and (match := re.fullmatch(r"\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?", item)):
            low, high = int(match[1]), int(match[2] or match[1])
        else:
            raise ValueError("expectStatus must be a status, a range like 200-399, or a list of them")
        if not 100 <= low <= high <= 599:
            raise ValueError("expectStatus must lie within 100-599")
        ranges.append((low, high))
    if not ranges:
        raise ValueError("expectStatus must not be empty")
    return tuple(ranges)


@dataclass(frozen=True)
class ProbeTarget:
    name: str
    url: str
    method: str = "GET"
    expect_status: tuple[tuple[int, int], ...] = DEFAULT_EXPECT
    body_contains: str | None = None
    json_path: str | None = None
    equals: Any = _MISSING
    headers: tuple[tuple[str, str], ...] = ()
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    latency_warn_ms: int = DEFAULT_LATENCY_WARN_MS
    follow_redirects: bool = False
    json_steps: tuple[str | int, ...] = field(default=(), repr=False)

    def expects(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expect_status)


def _number(raw: dict, key: str, default: int, where: str, minimum: int, maximum: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigurationError("PROBE_TARGETS", f"{where}: {key} must be an integer between {minimum} and {maximum}")
    return value


def parse_target(raw: Any, index: int) -> ProbeTarget:
    """One entry of ``PROBE_TARGETS`` (``index`` counts from 1 in the messages)."""
    where = f"target {index}"
    if not isinstance(raw, dict):
        raise ConfigurationError("PROBE_TARGETS", f"{where}: must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigurationError("PROBE_TARGETS", f"{where}: name must match [A-Za-z0-9_.-]{{1,64}}")
    where = f"target {index} ({name})"
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ConfigurationError("PROBE_TARGETS", f"{where}: unknown field {unknown[0]}")
    url = raw.get("url")
    try:
        if not isinstance(url, str):
            raise ConfigurationError("PROBE_TARGETS")
        http_url("PROBE_TARGETS", url)
    except ConfigurationError:
        raise ConfigurationError("PROBE_TARGETS", f"{where}: url must be http(s)") from None
    method = raw.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in ("GET", "HEAD"):
        raise ConfigurationError("PROBE_TARGETS", f"{where}: method must be GET or HEAD")
    method = method.upper()
    try:
        expect = parse_expect_status(raw.get("expectStatus", "200-399"))
    except ValueError as exc:
        raise ConfigurationError("PROBE_TARGETS", f"{where}: {exc}") from None
    body_contains = raw.get("bodyContains")
    if body_contains is not None and (not isinstance(body_contains, str) or not body_contains):
        raise ConfigurationError("PROBE_TARGETS", f"{where}: bodyContains must be a non-empty string")
    json_path, steps = raw.get("jsonPath"), ()
    if json_path is not None:
        try:
            if not isinstance(json_path, str):
                raise ValueError("must be a string")
            steps = parse_json_path(json_path)
        except ValueError as exc:
            raise ConfigurationError("PROBE_TARGETS", f"{where}: jsonPath {exc}") from None
    if "equals" in raw and json_path is None:
        raise ConfigurationError("PROBE_TARGETS", f"{where}: equals needs a jsonPath")
    if method == "HEAD" and (body_contains is not None or json_path is not None):
        raise ConfigurationError("PROBE_TARGETS", f"{where}: a HEAD request has no body to check")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", k) and isinstance(v, str)
        and "\n" not in v and "\r" not in v
        for k, v in headers.items()
    ):  # fmt: skip
        raise ConfigurationError("PROBE_TARGETS", f"{where}: headers must be an object of header names to strings")
    for value in headers.values():  # an Authorization or API key header: never in a log line
        register_secret(value)
        register_secret(value.split()[-1] if value.split() else None)  # the token of "Bearer <token>" too
    follow = raw.get("followRedirects", False)
    if not isinstance(follow, bool):
        raise ConfigurationError("PROBE_TARGETS", f"{where}: followRedirects must be true or false")
    from urllib.parse import urlsplit  # with a target only: a function with none never imports it

    if urlsplit(url).password:
        register_secret(url)  # and so its password on its own
    return ProbeTarget(
        name=name,
        url=url,
        method=method,
        expect_status=expect,
        body_contains=body_contains,
        json_path=json_path,
        equals=raw.get("equals", _MISSING),
        headers=tuple(headers.items()),
        timeout_ms=_number(raw, "timeoutMs", DEFAULT_TIMEOUT_MS, where, 1, 60_000),
        latency_warn_ms=_number(raw, "latencyWarnMs", DEFAULT_LATENCY_WARN_MS, where, 1, 600_000),
        follow_redirects=follow,
        json_steps=steps,
    )


def _ca_bundle(value: str | None) -> str | None:
    """PROBE_CA_BUNDLE as PEM text (inline, or read from the path given); checked by loading it."""
    if value is None:
        return None
    import ssl

    try:
        pem = value if "-----BEGIN" in value else Path(value).read_text()
        ssl.create_default_context().load_verify_locations(cadata=pem)
    except (OSError, ValueError, ssl.SSLError):
        raise ConfigurationError("PROBE_CA_BUNDLE", "must be PEM certificates or the path of a PEM file") from None
    return pem


@dataclass(frozen=True)
class ProbeSettings:
    targets: tuple[ProbeTarget, ...]
    ca_bundle: str | None = None

    @classmethod
    def from_env(cls) -> ProbeSettings:
        raw = env_str("PROBE_TARGETS")
        base = http_url("APP_BASE_URL", env_str("APP_BASE_URL"))
        ca_bundle = _ca_bundle(env_str("PROBE_CA_BUNDLE"))
        if raw is not None:
            try:
                entries = json.loads(raw)
            except ValueError:
                raise ConfigurationError("PROBE_TARGETS", "must be a JSON list of targets") from None
            if not isinstance(entries, list):
                raise ConfigurationError("PROBE_TARGETS", "must be a JSON list of targets")
        elif base is not None:
            from urllib.parse import urljoin

            entries = [{"name": name, "url": urljoin(base.rstrip("/") + "/", path.lstrip("/"))}
                       for name, path in DEFAULT_PATHS]  # fmt: skip
        else:
            entries = []
        if len(entries) > MAX_TARGETS:
            raise ConfigurationError("PROBE_TARGETS", f"must list at most {MAX_TARGETS} targets")
        targets = tuple(parse_target(entry, index) for index, entry in enumerate(entries, 1))
        seen: set[str] = set()
        for index, target in enumerate(targets, 1):
            if target.name in seen:
                raise ConfigurationError("PROBE_TARGETS", f"target {index}: name {target.name} is not unique")
            seen.add(target.name)
        return cls(targets=targets, ca_bundle=ca_bundle)


# --------------------------------------------------------------------------- one probe


def public_url(url: str) -> str:
    """``url`` without its credentials (user:password@), the values of secret-looking query parameters
    (``?token=...``, ``api_key``, ...) and any registered secret."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, REDACTED if is_secret_key(key) else value) for key, value in pairs], safe="[]")
    return scrub_text(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


class ProbeFailure(Exception):
    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason


def _der_length(data: bytes, offset: int) -> tuple[int, int]:
    length = data[offset]
    if length < 0x80:
        return length, offset + 1
    count = length & 0x7F
    return int.from_bytes(data[offset + 1 : offset + 1 + count], "big"), offset + 1 + count


def _der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, content start, content end) of the DER elements between ``start`` and ``end``."""
    children = []
    while start < end:
        tag = data[start]
        length, content = _der_length(data, start + 1)
        children.append((tag, content, content + length))
        start = content + length
    return children


def certificate_not_after(der: bytes) -> datetime:
    """The notAfter of a DER X.509 certificate (read without verifying it: for the days-left figure only)."""
    _, start, end = _der_children(der, 0, len(der))[0]  # Certificate
    _, start, end = _der_children(der, start, end)[0]  # tbsCertificate
    fields = _der_children(der, start, end)
    if fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    validity = fields[3]  # serialNumber, signature, issuer, validity
    tag, start, end = _der_children(der, validity[1], validity[2])[1]
    text = der[start:end].decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSS: 50-99 -> 19xx (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _days_left(der: bytes | None) -> float | None:
    if not der:
        return None
    try:
        return round((certificate_not_after(der) - datetime.now(UTC)).total_seconds() / 86400, 2)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


class _Probe:
    """One target's probe: steps, figures, and the category of the step that failed."""

    def __init__(self, target: ProbeTarget, context: Any, until: float) -> None:
        self.target, self.context = target, context
        self.started = time.monotonic()
        self.until = min(until, self.started + target.timeout_ms / 1000)
        self.days_left: float | None = None
        self.ttfb_ms: float | None = None
        self.http_status: int | None = None

    def remaining(self) -> float:
        left = self.until - time.monotonic()
        if left <= 0:
            raise ProbeFailure(TIMEOUT, f"no answer within {self.target.timeout_ms} ms")
        return left

    def connect(self, scheme: str, host: str, port: int) -> Any:
        import socket
        import ssl

        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ProbeFailure(DNS, f"DNS lookup of {host} failed: {safe_reason(exc)}") from None
        sock, last = None, None
        for family, kind, proto, _, address in addresses:
            budget = self.remaining()  # raises when the probe's time is up: before a socket is opened
            try:
                sock = socket.socket(family, kind, proto)
                sock.settimeout(budget)
                sock.connect(address)
                break
            except TimeoutError:
                sock.close()
                raise ProbeFailure(TIMEOUT, f"connecting to {host}:{port} timed out") from None
            except OSError as exc:
                sock.close()
                sock, last = None, exc
        if sock is None:
            raise ProbeFailure(CONNECT, f"connecting to {host}:{port} failed: {safe_reason(last)}")
        if scheme != "https":
            return sock
        try:
            left = self.until - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            tls = self.context.wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            sock.close()
            raise ProbeFailure(TIMEOUT, "the TLS handshake timed out") from None
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            sock.close()
            if self.days_left is None and isinstance(exc, ssl.SSLCertVerificationError):
                self.days_left = _days_left(self._unverified_certificate(host, port))
            raise ProbeFailure(TLS, f"TLS handshake failed: {safe_reason(exc)}") from None
        if self.days_left is None:
            self.days_left = _days_left(tls.getpeercert(binary_form=True))
        return tls

    def _unverified_certificate(self, host: str, port: int) -> bytes | None:
        """The certificate of a server that failed verification, read only to report its days left: a
        separate handshake that sends nothing and is closed at once."""
        import socket
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            timeout = max(0.1, self.until - time.monotonic())
            with (
                socket.create_connection((host, port), timeout=timeout) as sock,
                context.wrap_socket(sock, server_hostname=host) as tls,
            ):
                return tls.getpeercert(binary_form=True)
        except OSError:
            return None

    def request(self, url: str, own_origin: bool = True) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange; ``own_origin`` False (a redirect to another scheme, host or port): the target's
        secret-looking headers (Authorization, Cookie, API keys) stay behind, as browsers and requests do."""
        import http.client
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sock = self.connect(parts.scheme, host, port)
        try:
            budget = self.remaining()
        except ProbeFailure:
            sock.close()
            raise
        connection = http.client.HTTPConnection(host, port, timeout=budget)
        connection.sock = sock  # connected (and TLS-wrapped) above: http.client only speaks HTTP on it
        try:
            path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
            sent = [(k, v) for k, v in self.target.headers if own_origin or not is_secret_key(k)]
            headers = {"User-Agent": "parel-monitoring-probe", "Accept": "*/*", **dict(sent)}
            if parts.username is not None:
                from urllib.parse import unquote

                credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
                headers.setdefault("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
            if parts.port and parts.port not in (80, 443):
                headers["Host"] = f"{host}:{parts.port}" if ":" not in host else f"[{host}]:{parts.port}"
            connection.putrequest(self.target.method, path, skip_host="Host" in headers, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            sock.settimeout(self.remaining())
            response = connection.getresponse()
            self.ttfb_ms = round((time.monotonic() - self.started) * 1000, 1)
            body = b""
            if self.target.method != "HEAD":
                while len(body) < MAX_BODY_BYTES:
                    # Each read is bounded by the timeout set above (http.client has closed ``sock`` itself once
                    # the response owns the connection), and the body by the probe's own bound between reads.
                    self.remaining()
                    chunk = response.read1(MAX_BODY_BYTES - len(body))
                    if not chunk:
                        break
                    body += chunk
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        except TimeoutError:
            raise ProbeFailure(TIMEOUT, f"no answer within {self.target.timeout_ms} ms") from None
        except (http.client.HTTPException, OSError) as exc:
            raise ProbeFailure(CONNECT, f"the connection failed: {safe_reason(exc)}") from None
        finally:
            connection.close()

    def run(self) -> None:
        from urllib.parse import urljoin, urlsplit

        url = self.target.url
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, body = self.request(url, own_origin=_origin(url) == origin)
            self.http_status = status
            location = headers.get("location")
            if not (self.target.follow_redirects and 300 <= status < 400 and status != 304 and location):
                break
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise ProbeFailure(STATUS, f"redirected to a URL that is not http(s) ({public_url(url)})")
        else:
            raise ProbeFailure(STATUS, f"more than {MAX_REDIRECTS} redirects")
        if not self.target.expects(status):
            raise ProbeFailure(STATUS, f"HTTP {status}, expected {_ranges(self.target.expect_status)}")
        self.check_body(body)

    def check_body(self, body: bytes) -> None:
        target = self.target
        if target.body_contains is not None and target.body_contains not in body.decode("utf-8", "replace"):
            raise ProbeFailure(CONDITION, f"the body does not contain {target.body_contains!r}")
        if target.json_path is None:
            return
        try:
            document = json.loads(body)
        except ValueError:
            raise ProbeFailure(CONDITION, f"the body is not JSON (for {target.json_path})") from None
        value = resolve_json_path(document, target.json_steps)
        if value is _MISSING or value is None:
            raise ProbeFailure(CONDITION, f"{target.json_path} is missing")
        if target.equals is not _MISSING and value != target.equals:
            shown = json.dumps(value)[:80]
            raise ProbeFailure(CONDITION, f"{target.json_path} is {shown}, expected {json.dumps(target.equals)[:80]}")


def _origin(url: str) -> tuple[str, str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


def _ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


def _result(probe: _Probe, failure: ProbeFailure | None) -> dict[str, Any]:
    target = probe.target
    latency = round((time.monotonic() - probe.started) * 1000, 1)
    status = DOWN if failure else DEGRADED if latency > target.latency_warn_ms else UP
    return {
        "name": target.name,
        "url": public_url(target.url),
        "ok": failure is None,
        "status": status,
        "httpStatus": probe.http_status,
        "latencyMs": latency,
        "ttfbMs": probe.ttfb_ms,
        "latencyWarnMs": target.latency_warn_ms,
        "certificateDaysLeft": probe.days_left,
        "category": failure.category if failure else None,
        "reason": scrub_text(failure.reason) if failure else None,
    }


def probe_one(target: ProbeTarget, context: Any, until: float) -> dict[str, Any]:
    """Probe ``target`` once, by ``until`` (``time.monotonic()``) at the latest; its result dict."""
    probe = _Probe(target, context, until)
    try:
        probe.run()
    except ProbeFailure as failure:
        return _result(probe, failure)
    except Exception as exc:  # anything unforeseen is this target's failure, never the run's
        return _result(probe, ProbeFailure(CONNECT, safe_reason(exc)))
    return _result(probe, None)


def ssl_context(settings: ProbeSettings) -> Any:
    """The verifying TLS context of the probes: the default trust roots plus PROBE_CA_BUNDLE's; None when no
    target can reach https. Built once per execution environment (loading the system's roots takes tens of ms)."""
    if not any(target.url.lower().startswith("https:") or target.follow_redirects for target in settings.targets):
        return None  # (a redirect may lead to https)
    return _verifying_context(settings.ca_bundle)


@functools.cache
def _verifying_context(ca_bundle: str | None) -> Any:
    import ssl

    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cadata=ca_bundle)
    return context


def probe_all(settings: ProbeSettings, until: float | None = None) -> list[dict[str, Any]]:
    """Every target at once (a thread each), each bounded by its timeout and by ``until`` (a
    ``time.monotonic()``, e.g. :func:`parel_monitoring.health.deadline`); the results in target order.

    A probe still running at its bound (a DNS lookup cannot be interrupted) is answered ``timeout`` and left
    to end on its own thread.
    """
    targets = settings.targets
    if not targets:
        return []
    now = time.monotonic()
    longest = max(target.timeout_ms for target in targets) / 1000
    until = now + longest if until is None else until
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout

    context = ssl_context(settings)
    executor = ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="probe")
    try:
        futures = [executor.submit(probe_one, target, context, until) for target in targets]
        results = []
        for target, future in zip(targets, futures, strict=True):
            bound = min(until, now + target.timeout_ms / 1000) + 0.25  # the probe's own timeout answers first
            try:
                results.append(future.result(timeout=max(0.0, bound - time.monotonic())))
            except FutureTimeout:
                late = _Probe(target, context, until)
                late.started = now
                results.append(_result(late, ProbeFailure(TIMEOUT, f"no answer within {target.timeout_ms} ms")))
        return results
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- what ProbeFunction writes


def log_probes(logger: Any, results: list[dict[str, Any]]) -> None:
    """One line per failed probe (ERROR) or slow one (WARNING), with the category and the scrubbed reason (the
    logger adds the correlation ID); nothing for a probe that is up."""
    for result in results:
        extra = {"target": result["name"]}  # "name" is a LogRecord attribute
        extra.update((key, result[key]) for key in ("url", "status", "httpStatus", "latencyMs", "ttfbMs",
                                                     "certificateDaysLeft", "category", "reason"))  # fmt: skip
        if not result["ok"]:
            logger.error("Probe failed", None, extra)
        elif result["status"] == DEGRADED:
            logger.warning("Probe slow", {**extra, "latencyWarnMs": result["latencyWarnMs"]})


def probe_data(results: list[dict[str, Any]]) -> list[tuple[str, str, float, tuple[tuple[str, str], ...]]]:
    """The EMF metrics of a probe run (:func:`parel_monitoring.metrics.emit`'s data).

    Per target (dimensions service, Stage, Target): ``ProbeSuccess`` 0/1, ``ProbeLatencyMs``, ``ProbeSlow`` 0/1
    (up, with latency above its latencyWarnMs) and, for https, ``CertificateDaysLeft``. On service, Stage alone,
    one value per target per run of ``ProbeSuccess``, ``ProbeSlow`` and ``CertificateDaysLeft``: Average = availability
    across the targets, Minimum = any target down (or the nearest certificate expiry).
    """
    data = []
    for result in results:
        target = (("Target", result["name"]),)
        # Slow only when up: a probe that failed (a timeout, say) is the down alarm's, not the latency alarm's too.
        success = float(result["ok"])
        slow = float(result["ok"] and result["latencyMs"] > result["latencyWarnMs"])
        data += [
            ("ProbeSuccess", "Count", success, target),
            ("ProbeLatencyMs", "Milliseconds", float(result["latencyMs"]), target),
            ("ProbeSlow", "Count", slow, target),
            ("ProbeSuccess", "Count", success, ()),
            ("ProbeSlow", "Count", slow, ()),
        ]
        if result["certificateDaysLeft"] is not None:
            days = float(result["certificateDaysLeft"])
            data += [("CertificateDaysLeft", "None", days, target), ("CertificateDaysLeft", "None", days, ())]
    return data
