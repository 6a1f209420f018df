"""Delivering an alert to the Slack and Discord webhooks: concurrent, bounded by a deadline, retried.

Each configured channel is sent in its own worker thread, so a slow or failing channel never
delays another. Per attempt: connect and read timeouts, both clipped to the time left before
``deadline`` (a ``time.monotonic()`` value). Network errors and 5xx are retried with exponential
backoff and jitter; 429 waits what the platform asks; other 4xx are final (and captured to
Sentry). Webhook URLs carry their secret in the path, so they never appear in a log line, a
result or an error: reasons are built from status codes and exception types only.
"""

from __future__ import annotations

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

from parel_monitoring import __version__, error_tracker
from parel_monitoring.logs import create_logger
from parel_monitoring.notify.formatting import discord_payload, slack_payload
from parel_monitoring.notify.model import Alert
from parel_monitoring.scrub import scrub_text
from parel_monitoring.settings import env_float, env_int

FORMATTERS: dict[str, Callable[[Alert], dict[str, Any]]] = {"slack": slack_payload, "discord": discord_payload}
# Errors worth another attempt: the request may not have arrived, or no answer came back.
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
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


# --------------------------------------------------------------------------- per environment

_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()


def _session(url: str) -> requests.Session:
    """One session (one keep-alive connection pool) per webhook URL, reused across invocations."""
    with _sessions_lock:
        session = _sessions.get(url)
        if session is None:
            session = _sessions[url] = requests.Session()
            session.headers["User-Agent"] = f"parel-monitoring/{__version__}"
        return session


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
    timeout = (min(settings.connect_timeout_s, remaining_s), min(settings.read_timeout_s, remaining_s))
    try:
        # No redirects: a webhook never moves, and the payload must not follow one elsewhere.
        response = session.post(channel.url, json=payload, timeout=timeout, allow_redirects=False)
    except _NETWORK_ERRORS as exc:
        return _Outcome(None, _network_reason(exc), _backoff_s(attempt, settings))
    except requests.RequestException as exc:
        return _Outcome(None, f"request failed ({type(exc).__name__})", None)
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


def _send_into(
    result: DeliveryResult, channel: Channel, payload: dict[str, Any], deadline: float, settings: DeliverySettings
) -> DeliveryResult:
    started = time.monotonic()
    session = _session(channel.url)
    while True:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
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
        time.sleep(outcome.retry_in_s)
    result.elapsed_ms = (time.monotonic() - started) * 1000
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
    return _send_into(DeliveryResult(channel.name), channel, payload, deadline, settings)


# --------------------------------------------------------------------------- every channel


def _format_and_send(
    result: DeliveryResult, alert: Alert, channel: Channel, deadline: float, settings: DeliverySettings
) -> DeliveryResult:
    try:
        return _send_into(result, channel, FORMATTERS[channel.name](alert), deadline, settings)
    except Exception as exc:  # a bug here must not cost the other channel its alert
        result.delivered, result.error = False, f"internal error ({type(exc).__name__})"
        create_logger("alerts").error("Alert could not be sent", exc, {"channel": channel.name})
        error_tracker.capture_error(exc, {"action": "alert-delivery", "metadata": {"channel": channel.name}})
        return result


def fan_out(
    alert: Alert, channels: Sequence[Channel], deadline: float, settings: DeliverySettings
) -> list[DeliveryResult]:
    """Format and send ``alert`` to every channel concurrently; one result per channel, in order.

    Returns once every channel is done or shortly after ``deadline``; a channel still in flight
    then is reported not delivered (its thread ends by the deadline on its own).
    """
    started = time.monotonic()
    results = [DeliveryResult(channel.name) for channel in channels]
    futures = [
        _executor().submit(_format_and_send, result, alert, channel, deadline, settings)
        for result, channel in zip(results, channels, strict=True)
    ]
    wait(futures, timeout=max(0.0, deadline - time.monotonic()) + _DEADLINE_GRACE_S)
    final = []
    for future, result in zip(futures, results, strict=True):
        if future.done():
            final.append(future.result())
            continue
        late = dataclasses.replace(result, delivered=False, error="still in flight at the deadline")
        late.elapsed_ms = (time.monotonic() - started) * 1000
        create_logger("alerts").warning("Alert not delivered", late.to_dict())
        final.append(late)
    return final
