"""Timestamps as every response and alert shows them: ISO 8601, UTC, with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now_iso(timespec: str = "milliseconds") -> str:
    return datetime.now(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def to_utc_iso(value: str) -> str | None:
    """An ISO 8601 timestamp in any offset (CloudWatch's ``+0000`` included; none means UTC) as
    :func:`utc_now_iso` writes them, or None when ``value`` is not one."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
