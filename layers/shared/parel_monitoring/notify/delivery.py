"""Delivering an alert to the Slack and Discord webhooks: concurrent, bounded by a deadline, retried.

Each configured channel is sent in its own worker thread (with the invocation's context, so its
log lines keep their correlation ID), so a slow or failing channel never delays another. Each
attempt has one overall deadline, connect + read timeout after it starts and never past
``deadline`` (a ``time.monotonic()`` value): when it passes, the attempt's socket is shut, so a
response that drips in byte by byte ends there too (the read timeout alone is per ``recv``).
Network errors and 5xx are retried with exponential backoff and jitter; 429 waits what the
platform asks; other 4xx are final (and captured to Sentry). A channel still in flight when
:func:`fan_out` returns is cancelled (no further attempt); if its last attempt delivers after
all, that is recorded (:func:`delivered_late`), so a retry of the same message does not send it
twice. Webhook URLs carry their secret in the path, so they never appear in a log line, a
result or an error: reasons are built from status codes and exception types only.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from parel_monitoring import __version__, error_tracker
from parel_monitoring.logs import create_logger
from parel_monitoring.notify.formatting import discord_payload, slack_payload
from parel_monitoring.notify.model import Alert
from parel_monitoring.scrub import scrub_text
from parel_monitoring.settings import env_float, env_int

FORMATTERS: dict[str, Callable[[Alert], dict[str, Any]]] = {"slack": slack_payload, "discord": discord_payload}
# Errors worth another attempt: the request may not have arrived, or no answer came back.
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# An attempt whose response was still arriving when its deadline passed.
ATTEMPT_DEADLINE = "read timeout (attempt deadline passed)"
# fan_out waits this long past the deadline for an attempt whose timeout ends exactly at it.
_DEADLINE_GRACE_S = 0.1
# Workers outlive a fan-out only until their deadline; spare ones keep a late straggler from
# sharing a worker with the next invocation's channels.
_MAX_WORKERS = 8


@dataclass(frozen=True)
class DeliverySettings:
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 5.0
    max_attempts: int = 4
    backoff_base_s: float = 0.2  # first retry after 0.1-0.2 s, doubling, jittered
    backoff_max_s: float = 2.0

    @classmethod
    def from_env(cls) -> DeliverySettings:
        return cls(
            connect_timeout_s=env_float("ALERT_CONNECT_TIMEOUT_S", 3.0, minimum=0.01),
            read_timeout_s=env_float("ALERT_READ_TIMEOUT_S", 5.0, minimum=0.01),
            max_attempts=env_int("ALERT_MAX_ATTEMPTS", 4, minimum=1, maximum=10),
        )


@dataclass(frozen=True)
class Channel:
    name: str  # "slack" or "discord"
    url: str = field(repr=False)  # a secret: never printed

    def __post_init__(self) -> None:
        if self.name not in FORMATTERS:
            raise ValueError(f"channel name must be one of {', '.join(FORMATTERS)}")


@dataclass
class DeliveryResult:
    channel: str
    delivered: bool = False
    attempts: int = 0
    status: int | None = None  # the last HTTP status
    error: str | None = None  # a short reason, never a URL
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "delivered": self.delivered,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
            "elapsedMs": round(self.elapsed_ms, 1),
        }


# --------------------------------------------------------------------------- one attempt's deadline

_watch = threading.local()  # .attempt: the _AttemptDeadline of the attempt this thread is making


class _AttemptDeadline:
    """Shuts the attempt's socket when its deadline passes, whatever the attempt is doing then."""

    def __init__(self, deadline: float) -> None:
        self.aborted = False
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.abort)
        self._timer.daemon = True

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            if self.aborted:
                _shut(connection)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            if self._connection is not None:
                _shut(self._connection)

    def __enter__(self) -> _AttemptDeadline:
        _watch.attempt = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._timer.cancel()
        _watch.attempt = None


def _shut(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:  # not yet connected: connect() checks again
        with contextlib.suppress(OSError):
            # The plain socket's shutdown (also under TLS): the reading thread sees EOF at once.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watched:
    """A urllib3 connection that hands itself to the attempt in progress on this thread."""

    def _watched(self) -> None:
        attempt = getattr(_watch, "attempt", None)
        if attempt is not None:
            attempt.watch(self)  # type: ignore[arg-type]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._watched()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._watched()
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


# --------------------------------------------------------------------------- per environment

_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()
# (message key, channel) -> when a cancelled channel delivered after its fan-out returned
_late: dict[tuple[str, str], float] = {}
_late_handed: set[tuple[str, str]] = set()
_LATE_KEPT_S = 3600.0  # SNS retries an asynchronous invocation for up to an hour


def _session(url: str) -> requests.Session:
    """One session (one keep-alive connection pool) per webhook URL, reused across invocations."""
    with _sessions_lock:
        session = _sessions.get(url)
        if session is None:
            session = _sessions[url] = requests.Session()
            session.headers["User-Agent"] = f"parel-monitoring/{__version__}"
            for scheme in ("https://", "http://"):
                session.mount(scheme, _Adapter())
        return session


def _record_late(key: str, channel: str) -> None:
    now = time.monotonic()
    with _sessions_lock:
        for stale in [item for item, at in _late.items() if now - at > _LATE_KEPT_S]:
            del _late[stale]
        _late[(key, channel)] = now


def delivered_late(key: str, channel: str) -> bool:
    """Whether ``channel`` delivered message ``key`` after the fan-out that sent it had returned."""
    with _sessions_lock:
        return (key, channel) in _late


def new_late_deliveries() -> list[tuple[str, str]]:
    """The (message key, channel) pairs delivered late since the last call (to record them elsewhere)."""
    with _sessions_lock:
        fresh = [item for item in _late if item not in _late_handed]
        _late_handed.update(fresh)
        _late_handed.intersection_update(_late)
        return fresh


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="alert-delivery")


# --------------------------------------------------------------------------- one attempt


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None  # None: delivered
    retry_in_s: float | None  # None: final


def _backoff_s(attempt: int, settings: DeliverySettings) -> float:
    """Exponential backoff with equal jitter: between half and all of base * 2^(attempt-1)."""
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (timing jitter, not security)


def _retry_after_s(channel: Channel, response: requests.Response) -> float | None:
    """Discord: ``retry_after`` in the JSON body (seconds, fractional); else the Retry-After header."""
    candidates: list[Any] = []
    if channel.name == "discord":
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            candidates.append(body.get("retry_after"))
    candidates.append(response.headers.get("Retry-After"))
    for candidate in candidates:
        try:
            return max(0.0, float(candidate))
        except (TypeError, ValueError):
            continue
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (requests -> urllib3 -> socket), breadth first."""
    queue, seen = [exc], set()
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
        queue += [item for item in linked if isinstance(item, BaseException)]


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "read timeout"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, socket.gaierror):
            return "DNS lookup failed"
    return f"network error ({type(exc).__name__})"


def _body_hint(response: requests.Response) -> str:
    """The start of an error body (Slack: ``no_service``; Discord: ``{"message": "Unknown Webhook"}``)."""
    text = " ".join(response.text.split())[:100]
    return f": {scrub_text(text)}" if text and "://" not in text else ""


def _attempt(
    session: requests.Session,
    channel: Channel,
    payload: dict[str, Any],
    attempt: int,
    remaining_s: float,
    settings: DeliverySettings,
) -> _Outcome:
    remaining_s = min(remaining_s, settings.connect_timeout_s + settings.read_timeout_s)
    timeout = (min(settings.connect_timeout_s, remaining_s), min(settings.read_timeout_s, remaining_s))
    with _AttemptDeadline(time.monotonic() + remaining_s) as deadline:
        try:
            # No redirects: a webhook never moves, and the payload must not follow one elsewhere.
            response = session.post(channel.url, json=payload, timeout=timeout, allow_redirects=False)
        except Exception as exc:  # after an abort: whatever the shut socket made the client raise
            if deadline.aborted and not isinstance(exc, requests.Timeout):
                return _Outcome(None, ATTEMPT_DEADLINE, _backoff_s(attempt, settings))
            if isinstance(exc, _NETWORK_ERRORS):
                return _Outcome(None, _network_reason(exc), _backoff_s(attempt, settings))
            if isinstance(exc, requests.RequestException):
                return _Outcome(None, f"request failed ({type(exc).__name__})", None)
            raise
    status = response.status_code
    if 200 <= status < 300:
        return _Outcome(status, None, None)
    if status == 429:
        retry_after = _retry_after_s(channel, response)
        wait_s = _backoff_s(attempt, settings) if retry_after is None else retry_after
        return _Outcome(status, "HTTP 429 rate limited", wait_s)
    if status >= 500:
        return _Outcome(status, f"HTTP {status}", _backoff_s(attempt, settings))
    if status == 404:
        return _Outcome(status, "HTTP 404 webhook not found (deleted?)", None)
    return _Outcome(status, f"HTTP {status}{_body_hint(response)}", None)


# --------------------------------------------------------------------------- one channel


@dataclass
class _Job:
    """One channel's delivery in a fan-out; ``cancelled`` once the fan-out has returned without it."""

    result: DeliveryResult
    key: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finish(self) -> bool:
        """Mark the job done; whether the fan-out had already given up on it."""
        with self.lock:
            self.finished = True
            return self.cancelled.is_set()

    def cancel(self) -> bool:
        """Give up on the job unless it is done; whether it was cancelled."""
        with self.lock:
            if not self.finished:
                self.cancelled.set()
            return not self.finished


def _send_into(
    job: _Job, channel: Channel, payload: dict[str, Any], deadline: float, settings: DeliverySettings
) -> DeliveryResult:
    result = job.result
    started = time.monotonic()
    session = _session(channel.url)
    while True:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0 or job.cancelled.is_set():
            result.error = f"{result.error}; deadline reached" if result.error else "deadline reached"
            break
        result.attempts += 1
        outcome = _attempt(session, channel, payload, result.attempts, remaining_s, settings)
        result.status, result.error, result.delivered = outcome.status, outcome.error, outcome.error is None
        if outcome.retry_in_s is None or result.attempts >= settings.max_attempts:
            break
        if time.monotonic() + outcome.retry_in_s >= deadline:
            result.error += f"; retry in {round(outcome.retry_in_s, 2):g} s would pass the deadline"
            break
        job.cancelled.wait(outcome.retry_in_s)
    result.elapsed_ms = (time.monotonic() - started) * 1000
    if job.finish():  # the fan-out has returned without this result
        if result.delivered and job.key is not None:
            _record_late(job.key, channel.name)
            create_logger("alerts").warning("Alert delivered after its fan-out returned", result.to_dict())
        else:
            create_logger("alerts").info("Cancelled alert delivery ended", result.to_dict())
        return result
    _report(channel, result)
    return result


def _report(channel: Channel, result: DeliveryResult) -> None:
    logger = create_logger("alerts")
    if result.delivered:
        logger.info("Alert delivered", result.to_dict())
    elif result.status is not None and 400 <= result.status < 500 and result.status != 429:
        # Final: the webhook was deleted or revoked, or the payload rejected; a person must act.
        logger.error("Alert webhook rejected the alert", extra=result.to_dict())
        error_tracker.capture_message(
            f"Alert webhook ({channel.name}) answered HTTP {result.status}",
            {"action": "alert-delivery", "metadata": result.to_dict()},
            error_tracker.ErrorSeverity.ERROR,
        )
    else:
        logger.warning("Alert not delivered", result.to_dict())


def send(channel: Channel, payload: dict[str, Any], deadline: float, settings: DeliverySettings) -> DeliveryResult:
    """POST ``payload`` to one channel with the retry rules, never past ``deadline`` (monotonic)."""
    return _send_into(_Job(DeliveryResult(channel.name)), channel, payload, deadline, settings)


# --------------------------------------------------------------------------- every channel


def _format_and_send(
    job: _Job, alert: Alert, channel: Channel, deadline: float, settings: DeliverySettings
) -> DeliveryResult:
    try:
        return _send_into(job, channel, FORMATTERS[channel.name](alert), deadline, settings)
    except Exception as exc:  # a bug here must not cost the other channel its alert
        job.result.delivered, job.result.error = False, f"internal error ({type(exc).__name__})"
        job.finish()
        create_logger("alerts").error("Alert could not be sent", exc, {"channel": channel.name})
        error_tracker.capture_error(exc, {"action": "alert-delivery", "metadata": {"channel": channel.name}})
        return job.result


def fan_out(
    alert: Alert, channels: Sequence[Channel], deadline: float, settings: DeliverySettings, key: str | None = None
) -> list[DeliveryResult]:
    """Format and send ``alert`` to every channel concurrently; one result per channel, in order.

    Returns once every channel is done or shortly after ``deadline``; a channel still in flight
    then is reported not delivered and cancelled: it starts no further attempt, and its attempt in
    flight ends by the deadline; if that attempt delivers after all, ``delivered_late(key, channel)``
    says so from then on (``key``: the message's ID).
    """
    started = time.monotonic()
    jobs = [_Job(DeliveryResult(channel.name), key) for channel in channels]
    # Each worker runs in a copy of this context: its log lines keep this invocation's correlation ID.
    futures = [
        _executor().submit(contextvars.copy_context().run, _format_and_send, job, alert, channel, deadline, settings)
        for job, channel in zip(jobs, channels, strict=True)
    ]
    wait(futures, timeout=max(0.0, deadline - time.monotonic()) + _DEADLINE_GRACE_S)
    final = []
    for future, job in zip(futures, jobs, strict=True):
        if not job.cancel():
            final.append(future.result())  # finished: its result is complete (or about to return)
            continue
        late = dataclasses.replace(job.result, delivered=False, error="still in flight at the deadline")
        late.elapsed_ms = (time.monotonic() - started) * 1000
        create_logger("alerts").warning("Alert not delivered", late.to_dict())
        final.append(late)
    return final
