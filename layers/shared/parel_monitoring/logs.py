"""``create_logger(service)``: the seed's logger with correlation IDs.

JSON through the Powertools Logger by default (``correlation_id``, ``service``,
Lambda context and ``cold_start`` on every line); ``LOG_FORMAT=text`` gives the
seed's human format ``[UserService] [abc12345] Processing user update``.
Every line passes through :mod:`parel_monitoring.scrub` before it is written.

The Powertools Logger (and the ``aws_lambda_powertools`` package it imports, about 20 ms of a cold start) is
built by the first line at or above the level, once per execution environment: a function that logs nothing
at its level (a healthy health check logs at DEBUG) never imports it. With Lambda's log level
(``AWS_LAMBDA_LOG_LEVEL``) or ``POWERTOOLS_LOGGER_SAMPLE_RATE`` set, Powertools itself decides what is
enabled, so it is built at once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from parel_monitoring import correlation
from parel_monitoring.scrub import scrub, scrub_text
from parel_monitoring.settings import log_level

# Keys of the invocation in progress (Lambda context, cold start), set by the handler decorator
# and added to every line of every logger; per context like the correlation ID (a thread started
# with contextvars.copy_context() keeps its invocation's keys), else process-wide.
_invocation_keys: dict[str, Any] = {}
_context_keys: ContextVar[dict[str, Any] | None] = ContextVar("parel_invocation_keys", default=None)
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def bind_invocation(**keys: Any) -> None:
    _invocation_keys.clear()
    _invocation_keys.update(keys)
    _context_keys.set(dict(keys))


def _bound_keys() -> dict[str, Any]:
    keys = _context_keys.get()
    return _invocation_keys if keys is None else keys


def _level() -> str:
    # A value that is no level logs at INFO; the handler decorator reports it as a configuration error.
    return log_level()[0]


def _safe_extra(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    if not extra:
        return {}
    return {(f"extra_{key}" if key in _RESERVED else str(key)): value for key, value in extra.items()}


def _scrubbed_json(record: dict) -> str:
    return scrub_text(json.dumps(scrub(record), default=str, separators=(",", ":")))


class _TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = f"[{self.service}] [{correlation.get_current()[:8]}] {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + json.dumps(scrub(fields), default=str)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub_text(line)


class ServiceLogger:
    """A logger bound to one service name; see :func:`create_logger`."""

    def __init__(self, service: str, log_format: str | None = None) -> None:
        self.service = service
        self.format = (log_format or os.environ.get("LOG_FORMAT") or "json").lower()
        with _handlers_lock:  # check-then-attach: once, whichever threads build a logger for this service
            if self.format == "text":
                self._logger = logging.getLogger(f"parel.{service}")
                # Our own handler, once (other handlers, e.g. a test runner's, may be attached too).
                if not any(isinstance(h.formatter, _TextFormatter) for h in self._logger.handlers):
                    handler = logging.StreamHandler(sys.stdout)
                    handler.setFormatter(_TextFormatter(service))
                    self._logger.addHandler(handler)
                    self._logger.propagate = False
                self._logger.setLevel(_level())
            else:
                self._logger = None  # the Powertools Logger, built by the first enabled line (_powertools)
                self._threshold = logging.getLevelName(_level())
                if os.environ.get("AWS_LAMBDA_LOG_LEVEL") or os.environ.get("POWERTOOLS_LOGGER_SAMPLE_RATE"):
                    self._powertools()

    def _powertools(self) -> Any:
        with _handlers_lock:  # once, whichever threads log first
            if self._logger is None:
                from aws_lambda_powertools import Logger

                self._logger = Logger(service=self.service, level=_level(), utc=True, json_serializer=_scrubbed_json)
        return self._logger

    def _log(self, level: int, msg: str, extra: Mapping[str, Any] | None, exc: BaseException | None = None) -> None:
        if self._logger is None:
            if level < self._threshold:
                return
            self._powertools()
        if not self._logger.isEnabledFor(level):
            return
        fields = _safe_extra(extra)
        if self.format == "text":
            self._logger.log(level, msg, exc_info=exc, extra={"fields": fields})
        else:
            keys = {**_bound_keys(), "correlation_id": correlation.get_current(), **fields}
            self._logger.log(level, msg, exc_info=exc, extra=keys, stacklevel=3)

    def debug(self, msg: str, extra: Mapping[str, Any] | None = None) -> None:
        self._log(logging.DEBUG, msg, extra)

    def info(self, msg: str, extra: Mapping[str, Any] | None = None) -> None:
        self._log(logging.INFO, msg, extra)

    def warning(self, msg: str, extra: Mapping[str, Any] | None = None) -> None:
        self._log(logging.WARNING, msg, extra)

    def error(self, msg: str, exc: BaseException | None = None, extra: Mapping[str, Any] | None = None) -> None:
        """``logger.error("Login failed", error, {"userId": 1, "attempts": 3})``"""
        self._log(logging.ERROR, msg, extra, exc)


_loggers: dict[str, ServiceLogger] = {}
_handlers_lock = threading.RLock()


def create_logger(service: str) -> ServiceLogger:
    """The logger for ``service`` (one per service name per execution environment, also when threads race)."""
    logger = _loggers.get(service)
    if logger is None:
        with _handlers_lock:
            logger = _loggers.get(service)
            if logger is None:
                logger = _loggers[service] = ServiceLogger(service)
    return logger


def _forget_loggers() -> None:
    with _handlers_lock:
        _loggers.clear()


create_logger.cache_clear = _forget_loggers  # type: ignore[attr-defined]  # functools.cache's name, kept
