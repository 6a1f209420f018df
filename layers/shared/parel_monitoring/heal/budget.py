"""The time a heal run may still spend before the function's timeout."""

from __future__ import annotations

import time
from typing import Any


class Budget:
    """``exhausted()`` turns True once less than ``reserve_ms`` is left.

    Inside Lambda the clock is ``context.get_remaining_time_in_millis()``; without a
    context (tests, local runs) a budget of ``total_ms`` from creation.
    """

    def __init__(
        self, context: Any = None, reserve_ms: int = 2000, total_ms: int = 60_000, limit_ms: int | None = None
    ) -> None:
        """``limit_ms`` caps the budget below the context's (e.g. API Gateway's 30 s integration timeout)."""
        self.reserve_ms = reserve_ms
        self._remaining = getattr(context, "get_remaining_time_in_millis", None)
        self._deadline = time.monotonic() + total_ms / 1000
        self._limit = time.monotonic() + limit_ms / 1000 if limit_ms is not None else None

    def remaining_ms(self) -> int:
        remaining = self._remaining() if self._remaining is not None else (self._deadline - time.monotonic()) * 1000
        if self._limit is not None:
            remaining = min(remaining, (self._limit - time.monotonic()) * 1000)
        return int(remaining)

    def exhausted(self) -> bool:
        return self.remaining_ms() < self.reserve_ms
