"""Fixtures shared by the integration modules."""

from __future__ import annotations

import pytest

from bullmq_scenario import REDIS_URL
from parel_monitoring import scrub
from parel_monitoring.health.queue import QueueHealthSettings

HP = "high-priority"
QUEUE_SETTING_VARIABLES = (
    "REDIS_URL", "REDIS_URL_SECRET_ARN", "REDIS_URL_PARAMETER", "REDIS_CONNECT_TIMEOUT_S", "REDIS_SOCKET_TIMEOUT_S",
    "BULLMQ_PREFIX", "QUEUE_NAMES", "HIGH_PRIORITY_QUEUE", "QUEUE_LAG_WARNING", "QUEUE_LAG_CRITICAL",
    "QUEUE_FAILURE_WARNING_PCT", "QUEUE_FAILURE_CRITICAL_PCT", "QUEUE_NO_WORKER_GRACE_S", "QUEUE_AGE_WARNING_S",
    "QUEUE_AGE_CRITICAL_S", "REDIS_MEMORY_WARNING_PCT", "REDIS_MEMORY_CRITICAL_PCT", "REDIS_CLUSTER",
)  # fmt: skip


@pytest.fixture
def queue_config(monkeypatch):
    """``queue_config(prefix, QUEUE_NAMES=..., ...)`` -> QueueHealthSettings.from_env() with only those variables
    (and defaults: the shared Redis, that prefix, the high-priority queue alone)."""
    # secret() remembers REDIS_URL for redaction; keep that out of the other tests.
    monkeypatch.setattr(scrub, "_known_secrets", set(scrub._known_secrets))

    def configure(prefix: str, **env: str) -> QueueHealthSettings:
        for name in QUEUE_SETTING_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        defaults = {"REDIS_URL": REDIS_URL, "BULLMQ_PREFIX": prefix, "QUEUE_NAMES": HP, "HIGH_PRIORITY_QUEUE": HP}
        for name, value in {**defaults, **env}.items():
            monkeypatch.setenv(name, str(value))
        return QueueHealthSettings.from_env()

    return configure
