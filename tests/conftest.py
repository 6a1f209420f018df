"""Shared fixtures. Tiers: tests/unit (pure logic), tests/integration (real services on
127.0.0.1), tests/e2e (built functions under the Lambda emulator)."""

from __future__ import annotations

import logging

import pytest

from parel_monitoring import correlation, logs

# Settings the code reads; cleared so the developer's shell cannot change a test's outcome.
_READ_VARIABLES = (
    "STAGE", "LOG_FORMAT", "LOG_LEVEL", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_SERVICE_NAME", "MEMORY_THRESHOLD_PCT",
    "SENTRY_DSN", "SENTRY_DSN_SECRET_ARN", "SENTRY_DSN_PARAMETER", "SENTRY_RELEASE", "SENTRY_TRACES_SAMPLE_RATE",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_INITIALIZATION_TYPE",
)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch):
    for name in _READ_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    correlation._current = None
    logs._loggers.clear()
    # Loggers write to the sys.stdout of their creation; rebuild them under this test's capture.
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and (getattr(logger, "init", False) or logger.name.startswith("parel.")):
            logger.handlers.clear()
            for attribute in ("init", "powertools_handler"):
                logger.__dict__.pop(attribute, None)
    logs.bind_invocation()
    yield
