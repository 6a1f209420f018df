"""The one place that wires logging, Sentry, settings and correlation IDs.

``@lambda_handler(settings_factory)`` turns a plain function into a Lambda
handler. At init (import) it builds the logger, starts Sentry when a DSN is
configured and reads the function's typed settings once. On every invocation
it sets the correlation ID, binds the Lambda context to the log lines and, for
HTTP triggers, echoes ``x-correlation-id`` and turns errors into the standard
JSON error body (a stack trace never reaches the client).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from parel_monitoring import correlation, error_tracker
from parel_monitoring.error_tracker import ErrorSeverity
from parel_monitoring.http import HttpError, error_response, with_header
from parel_monitoring.logs import bind_invocation, create_logger
from parel_monitoring.settings import ConfigurationError, ObservabilitySettings

_environment = {"invocations": 0}


def is_cold_start() -> bool:
    """True during the first invocation of this execution environment."""
    return (
        _environment["invocations"] <= 1
        and os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "provisioned-concurrency"
    )


def _context_keys(context: Any) -> dict[str, Any]:
    return {
        "cold_start": is_cold_start(),
        "function_name": getattr(context, "function_name", None),
        "function_memory_size": getattr(context, "memory_limit_in_mb", None),
        "function_arn": getattr(context, "invoked_function_arn", None),
        "function_request_id": getattr(context, "aws_request_id", None),
    }


def _route(event: Any) -> str | None:
    if isinstance(event, dict):
        return event.get("routeKey") or event.get("rawPath")
    return None


def is_http_event(event: Any) -> bool:
    """An API Gateway request (HTTP API payload 2.0 or REST)."""
    return isinstance(event, dict) and isinstance(event.get("requestContext"), dict) and "headers" in event


def lambda_handler(
    settings_factory: Callable[[], Any] | None = None,
    *,
    http: bool | None = True,
    service: str | None = None,
    on_configuration_error: Callable[[ConfigurationError], Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[[Any, Any], Any]]:
    """Decorate ``fn(event, context[, settings])``; see the module docstring.

    ``http=False`` is for non-HTTP triggers (schedules, SNS): errors are logged,
    captured and re-raised so Lambda's retries and destinations apply. ``http=None``
    decides per event (a function serving both an API route and a schedule).
    ``on_configuration_error(exc)``: the answer of a non-HTTP function whose
    settings are wrong, instead of raising (the authorizer denies).
    Init never raises: whatever fails there is answered on every invocation.
    """
    service = (
        service or os.environ.get("POWERTOOLS_SERVICE_NAME") or os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "parel")
    )
    logger = create_logger(service)
    settings: Any = None
    init_error: Exception | None = None
    try:
        error_tracker.init_sentry(ObservabilitySettings.from_env())
        if settings_factory is not None:
            settings = settings_factory()
    except ConfigurationError as exc:
        init_error = exc
        logger.error("Configuration error", extra={"variable": exc.variable, "problem": exc.problem})
        error_tracker.capture_message(
            f"Configuration error: {exc}", {"variable": exc.variable, "action": service}, ErrorSeverity.ERROR
        )
    except Exception as exc:  # not a setting: answered like an unhandled error, not an import crash
        init_error = exc

    def decorate(fn: Callable[..., Any]) -> Callable[[Any, Any], Any]:
        @functools.wraps(fn)
        def handler(event: Any, context: Any) -> Any:
            _environment["invocations"] += 1
            as_http = is_http_event(event) if http is None else http
            correlation_id = correlation.set_current(correlation.from_event(event))
            bind_invocation(**_context_keys(context))
            error_tracker.set_correlation_tag(correlation_id)
            try:
                # A fresh exception per invocation (re-raising the stored one would grow its traceback).
                if isinstance(init_error, ConfigurationError):
                    raise ConfigurationError(init_error.variable, init_error.problem)
                if init_error is not None:
                    raise RuntimeError(f"initialisation failed ({type(init_error).__name__})") from init_error
                response = fn(event, context, settings) if settings_factory is not None else fn(event, context)
            except ConfigurationError as exc:
                if on_configuration_error is not None and not as_http:
                    return on_configuration_error(exc)
                if not as_http:
                    raise
                response = error_response(500, "configuration", f"{exc.variable} {exc.problem}", variable=exc.variable)
            except HttpError as exc:
                if not as_http:
                    raise
                logger.info("Request rejected", extra={"status": exc.status, "error": exc.error})
                response = error_response(exc.status, exc.error, exc.message, **exc.fields)
            except Exception as exc:
                logger.error("Unhandled error", exc, {"route": _route(event)})
                error_tracker.capture_error(exc, {"endpoint": _route(event), "action": service})
                if not as_http:
                    raise
                response = error_response(
                    500, "internal", "Internal error; quote the correlation ID when reporting it."
                )
            if as_http:
                response = with_header(response, correlation.HEADER, correlation_id)
            return response

        handler.logger = logger  # type: ignore[attr-defined]
        return handler

    return decorate
