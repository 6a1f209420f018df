"""The one polling helper of the suite: wait for a condition instead of sleeping a fixed time.

A fixed sleep is either too short on a loaded 2-core CI machine (a flaky failure) or too long everywhere else;
``wait_until`` returns as soon as the condition holds and fails, naming what it waited for, only after a
timeout generous enough for a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# What a loaded 2-core machine needs for things that take milliseconds when idle (a server starting to listen,
# a backend showing up in pg_stat_activity, a lock expiring): generous, since the wait ends when they happen.
DEFAULT_TIMEOUT_S = 30.0
# What a loaded 2-core CI machine may add to a wait that a timeout bounds (scheduling, a subprocess, an invocation
# through the emulator): a timing assertion is "the bounding timeout + LOADED_MARGIN_S", and is chosen so that
# the failure it guards against (a hang, a retry, a second timeout) still lands above it.
LOADED_MARGIN_S = 3.0


class WaitTimeout(AssertionError):
    """The condition never held: a test failure (an AssertionError) naming what was awaited."""


def wait_until(condition: Callable[[], T], what: str, timeout: float = DEFAULT_TIMEOUT_S, every: float = 0.02) -> T:
    """Call ``condition`` every ``every`` seconds until it returns something truthy, and return that; an
    exception it raises propagates. After ``timeout`` seconds without success: ``WaitTimeout`` naming ``what``
    (and the last value seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last: {value!r:.200})")
        time.sleep(every)
