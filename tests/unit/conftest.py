"""Unit tier: no service. While each unit test runs, a connection to PostgreSQL's or Redis's port (on any host)
or off this machine is refused and fails the test (tests/tiers.py), so the tier provably runs without them."""

from __future__ import annotations

import pytest

from tiers import ServiceGuard


@pytest.fixture(autouse=True)
def no_services():
    with ServiceGuard() as guard:
        yield guard
    assert not guard.attempts, f"a unit test tried to reach a service: {sorted(set(guard.attempts))}"
