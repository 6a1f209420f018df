"""Correlation IDs: one per invocation, taken from the trigger or newly minted.

Accepted IDs match ``[A-Za-z0-9._:-]{1,128}``; anything else (newlines, huge
strings) is replaced by a fresh UUID4 so it can never inject log lines.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Any

HEADER = "x-correlation-id"
# SNS message attribute carrying the ID between functions.
SNS_ATTRIBUTE = "x-correlation-id"

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The invocation's ID, process-wide (threads that did not inherit a context read it) and per context: a
# thread started with contextvars.copy_context() keeps its invocation's ID when the next one begins.
_current: str | None = None
_context_id: ContextVar[str | None] = ContextVar("parel_correlation_id", default=None)


def new_id() -> str:
    """A random (version 4, RFC 9562) UUID in its canonical text form, from the OS's random source as
    ``uuid.uuid4()`` does, without importing :mod:`uuid` at every cold start."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def sanitize(value: Any) -> str | None:
    """Return ``value`` when it is an acceptable correlation ID, else None."""
    if isinstance(value, str) and _VALID_ID.fullmatch(value):
        return value
    return None


def header_value(headers: Any, name: str) -> Any:
    """``headers[name]`` compared without letter case (API Gateway v1 keeps the client's case)."""
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return None


def extract(event: Any) -> str | None:
    """The correlation ID the trigger carries, if any (not yet validated)."""
    if not isinstance(event, dict):
        return None
    if "headers" in event or "requestContext" in event:  # API Gateway (HTTP or REST)
        return header_value(event.get("headers"), HEADER)
    if "detail-type" in event and "id" in event:  # EventBridge / EventBridge Scheduler
        return event.get("id")
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        sns = records[0].get("Sns")
        if isinstance(sns, dict):
            attribute = header_value(sns.get("MessageAttributes"), SNS_ATTRIBUTE)
            if isinstance(attribute, dict):
                return attribute.get("Value")
    return None


def from_event(event: Any) -> str:
    """A valid correlation ID for this event: the trigger's own, or a new UUID4."""
    return sanitize(extract(event)) or new_id()


def set_current(correlation_id: str) -> str:
    global _current
    _current = correlation_id
    _context_id.set(correlation_id)
    return correlation_id


def sns_message_attributes(correlation_id: str | None = None) -> dict[str, dict[str, str]]:
    """``MessageAttributes`` for ``sns.publish`` that carry the ID to the next function."""
    return {SNS_ATTRIBUTE: {"DataType": "String", "StringValue": correlation_id or get_current()}}


def get_current() -> str:
    """The ID of the invocation in progress (minted lazily outside a handler)."""
    if _current is None:
        return set_current(new_id())
    return _context_id.get() or _current
