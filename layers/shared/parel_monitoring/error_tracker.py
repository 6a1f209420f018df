"""Sentry error tracking (the seed's ``lib/monitoring/error-tracker``).

``init_sentry()`` runs once per execution environment and only when a DSN is
configured; otherwise ``sentry_sdk`` is never imported and every helper here is
a no-op. Every event carries the ``correlation_id`` tag and passes through
:mod:`parel_monitoring.scrub` before it leaves the function.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from parel_monitoring import correlation
from parel_monitoring.scrub import scrub, scrub_text


class ErrorSeverity(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    FATAL = "fatal"


_state = {"initialized": False, "enabled": False}


def is_enabled() -> bool:
    return _state["enabled"]


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _before_send(event: dict, hint: dict) -> dict:
    event = scrub(event)
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = event["tags"] = {}
    tags["correlation_id"] = correlation.get_current()
    # Last, the whole event as text: what scrub() leaves as it is (an object sent as its repr) is scrubbed too.
    return json.loads(scrub_text(json.dumps(event, default=_json_default, ensure_ascii=False)))


def init_sentry(settings: Any = None) -> bool:
    """Initialise Sentry once; returns whether it is enabled."""
    if _state["initialized"]:
        return _state["enabled"]
    if settings is None:
        from parel_monitoring.settings import ObservabilitySettings

        settings = ObservabilitySettings.from_env()
    _state["initialized"] = True
    if not settings.sentry_dsn:
        return False

    import logging

    import sentry_sdk
    from sentry_sdk.integrations.aws_lambda import AwsLambdaIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    from parel_monitoring.settings import ConfigurationError

    options = dict(
        dsn=settings.sentry_dsn,
        environment=settings.stage,
        release=settings.release,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        send_default_pii=False,
        integrations=[
            AwsLambdaIntegration(timeout_warning=True),
            # Log lines become breadcrumbs; events come from capture_* only.
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
        before_send=_before_send,
        before_send_transaction=_before_send,
    )
    try:
        sentry_sdk.init(**options)
    except Exception as exc:  # BadDsn and the like: the name of the variable, never its value
        raise ConfigurationError("SENTRY_DSN", f"was refused by sentry-sdk ({type(exc).__name__})") from None
    _state["enabled"] = True
    return True


def _sentry():
    if not _state["enabled"]:
        return None
    import sentry_sdk

    return sentry_sdk


def _apply_context(scope: Any, context: dict[str, Any] | None) -> None:
    """The seed's context: ``userId`` -> user, ``endpoint``/``action`` -> tags, the rest -> contexts."""
    context = dict(context or {})
    user_id = context.pop("userId", None)
    if user_id is not None:
        scope.set_user({"id": str(user_id)})
    for tag in ("endpoint", "action"):
        value = context.pop(tag, None)
        if value is not None:
            scope.set_tag(tag, str(value))
    metadata = context.pop("metadata", None)
    if metadata:
        scope.set_context("metadata", dict(metadata))
    if context:
        scope.set_context("context", context)


def capture_error(exc: BaseException, context: dict[str, Any] | None = None) -> str | None:
    """Report ``exc`` with the seed's context (``userId``, ``endpoint``, ``action``, ``metadata``)."""
    sentry_sdk = _sentry()
    if sentry_sdk is None:
        return None
    with sentry_sdk.new_scope() as scope:
        _apply_context(scope, context)
        return sentry_sdk.capture_exception(exc)


def capture_message(
    message: str, context: dict[str, Any] | None = None, severity: ErrorSeverity = ErrorSeverity.INFO
) -> str | None:
    sentry_sdk = _sentry()
    if sentry_sdk is None:
        return None
    with sentry_sdk.new_scope() as scope:
        _apply_context(scope, context)
        return sentry_sdk.capture_message(message, level=ErrorSeverity(severity).value)


def set_user_context(user_id: str, email: str | None = None, username: str | None = None) -> None:
    sentry_sdk = _sentry()
    if sentry_sdk is not None:
        user = {"id": str(user_id), "email": email, "username": username}
        sentry_sdk.set_user({key: value for key, value in user.items() if value is not None})


def add_breadcrumb(message: str, category: str = "custom", severity: ErrorSeverity = ErrorSeverity.INFO) -> None:
    sentry_sdk = _sentry()
    if sentry_sdk is not None:
        sentry_sdk.add_breadcrumb(message=message, category=category, level=ErrorSeverity(severity).value)


def set_correlation_tag(correlation_id: str) -> None:
    sentry_sdk = _sentry()
    if sentry_sdk is not None:
        sentry_sdk.set_tag("correlation_id", correlation_id)


def flush(timeout: float = 2.0) -> None:
    sentry_sdk = _sentry()
    if sentry_sdk is not None:
        sentry_sdk.flush(timeout=timeout)
