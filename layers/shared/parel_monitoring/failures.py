"""A driver error as a short category anyone may read: never a host, port, user or database name.

``category(exc)`` classifies psycopg and redis-py errors (by SQLSTATE, the exception's class
names and the driver's message) without importing either driver, so the db function never pays
for redis and the queue function never for psycopg. The full reason (``scrub.safe_reason``)
goes to the log line and to callers allowed to see details.
"""

from __future__ import annotations

import functools
import re

CONNECTION_REFUSED = "connection refused"
TIMEOUT = "timeout"
AUTHENTICATION_FAILED = "authentication failed"
DNS_LOOKUP_FAILED = "DNS lookup failed"
TOO_MANY_CONNECTIONS = "too many connections"
DATABASE_NOT_FOUND = "database not found"
PERMISSION_DENIED = "permission denied"
SERVER_UNAVAILABLE = "server unavailable"
CONNECTION_LOST = "connection lost"
TLS_ERROR = "TLS error"
CONNECTION_FAILED = "connection failed"
QUERY_FAILED = "query failed"

# SQLSTATE (class or code) -> category; the most specific first.
_SQLSTATES = (
    ("53300", TOO_MANY_CONNECTIONS),
    ("57014", TIMEOUT),  # query_canceled: statement_timeout
    ("3D000", DATABASE_NOT_FOUND),
    ("42501", PERMISSION_DENIED),
    ("57P", SERVER_UNAVAILABLE),  # admin/crash shutdown, cannot connect now
    ("28", AUTHENTICATION_FAILED),
    ("08", CONNECTION_LOST),
)
# Message patterns of libpq/psycopg, redis-py and the socket layer under them (first match wins); compiled by
# the first failure to categorise (an error path: a check that succeeds never pays for them at cold start).
_MESSAGE_PATTERNS = (
    (r"failed to resolve host|could not translate host name|name or service not known|"
     r"temporary failure in name resolution|nodename nor servname|no address associated|"
     r"\bError -[235] connecting", DNS_LOOKUP_FAILED),
    (r"connection refused|\bError 111 connecting", CONNECTION_REFUSED),
    (r"too many (clients|connections)|remaining connection slots|max number of clients", TOO_MANY_CONNECTIONS),
    (r"password authentication failed|no password supplied|authentication failed|pg_hba\.conf|"
     r"role \".*\" does not exist|WRONGPASS|NOAUTH|invalid password|invalid username-password|"
     r"authentication required", AUTHENTICATION_FAILED),
    (r"database \".*\" does not exist", DATABASE_NOT_FOUND),
    (r"timeout|timed out", TIMEOUT),
    (r"permission denied|NOPERM", PERMISSION_DENIED),
    (r"starting up|shutting down|in recovery mode|not yet accepting connections|\bLOADING\b|CLUSTERDOWN|"
     r"cluster is down", SERVER_UNAVAILABLE),
    (r"closed the connection unexpectedly|connection closed by server|connection reset|broken pipe|"
     r"terminating connection|connection is lost|consuming input failed|server closed", CONNECTION_LOST),
    (r"\bSSL\b|\bTLS\b|certificate", TLS_ERROR),
)  # fmt: skip


@functools.cache
def _messages() -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(pattern, re.I), label) for pattern, label in _MESSAGE_PATTERNS)


def _class_names(exc: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(exc).__mro__]


def category(exc: BaseException) -> str:
    """The short, fixed category of a PostgreSQL or Redis failure."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        for prefix, label in _SQLSTATES:
            if sqlstate.startswith(prefix):
                return label
    names = _class_names(exc)
    if "AuthenticationError" in names:
        return AUTHENTICATION_FAILED
    text = " ".join(str(item) for item in (exc, exc.__cause__, exc.__context__) if item is not None)
    for pattern, label in _messages():
        if pattern.search(text):
            return label
    if any("Timeout" in name for name in names):
        return TIMEOUT
    if "BusyLoadingError" in names:
        return SERVER_UNAVAILABLE
    if any(name in ("ConnectionError", "OperationalError", "InterfaceError") for name in names):
        return CONNECTION_FAILED
    return QUERY_FAILED
