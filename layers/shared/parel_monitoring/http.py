"""API Gateway (payload 2.0) responses: JSON bodies, one error shape, no stack traces."""

from __future__ import annotations

import json
from typing import Any

from parel_monitoring import correlation

NO_STORE = {"cache-control": "no-store"}


class HttpError(Exception):
    """Raise from a handler to answer ``status`` with the standard error body."""

    def __init__(self, status: int, error: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.fields = fields


def header(event: Any, name: str) -> str | None:
    """A request header of an API Gateway event, any letter case; None when absent."""
    value = correlation.header_value(event.get("headers") if isinstance(event, dict) else None, name.lower())
    return value if isinstance(value, str) else None


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body, default=str, separators=(",", ":")),
    }


def error_response(status: int, error: str, message: str, **fields: Any) -> dict[str, Any]:
    """``{"error": ..., "message": ..., "correlationId": ...}`` for every 4xx/5xx."""
    body = {"error": error, "message": message, **fields, "correlationId": correlation.get_current()}
    return json_response(status, body, NO_STORE)


def with_header(response: Any, name: str, value: str) -> Any:
    if isinstance(response, dict) and "statusCode" in response:
        response["headers"] = {**(response.get("headers") or {}), name: value}
    return response
