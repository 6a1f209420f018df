"""Timestamps as every response and alert shows them: ISO 8601, UTC, with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now_iso(timespec: str = "milliseconds") -> str:
    return datetime.now(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
