"""The alert every channel formats: what happened, how bad, and how to trace it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("INFO", "WARNING", "CRITICAL")


@dataclass(frozen=True)
class Alert:
    severity: str  # one of SEVERITIES
    title: str
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)
    timestamp: str = ""  # ISO 8601 UTC, e.g. "2026-11-27T18:00:00.000Z"
    correlation_id: str = ""
    source: str | None = None  # the function or alarm that raised it
    suppressed: int = 0  # similar alerts suppressed (deduplicated) since the last one delivered
