"""One PostgreSQL connection per execution environment, created lazily and repaired in place.

psycopg 3, autocommit, bounded by ``connect_timeout`` (psycopg's implicit default is
130 s) and, per unit of work, a transaction-local ``statement_timeout`` (``SET LOCAL``
semantics through ``set_config(..., true)``), which also works behind PgBouncer in
transaction mode and RDS Proxy, where session settings and startup options do not.
Server-side prepared statements are off when ``DB_PREPARED_STATEMENTS=false``.

A connection that died between invocations (server restart, ``pg_terminate_backend``,
idle timeout) is detected on use and replaced once within the same call, so one dead
socket never turns into a false failure. Only a connection that is really lost is closed:
a statement timeout, lock timeout, deadlock or serialization failure (``OperationalError``
subclasses too) leaves it, and the session state it holds, in place.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from parel_monitoring.failures import category
from parel_monitoring.scrub import safe_reason
from parel_monitoring.settings import ConfigurationError, env_bool, env_int, env_str, secret

T = TypeVar("T")

# SQLSTATEs after which the server has ended the session (besides class 08, connection exceptions):
# admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped, idle_session_timeout.
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})


def _conninfo(url: str) -> str:
    """DATABASE_URL when libpq can parse it (a URL or key=value pairs); a ConfigurationError otherwise."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigurationError("DATABASE_URL", "is not a valid PostgreSQL connection URL") from None
    return url


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(repr=False)  # holds the password
    connect_timeout_s: int
    statement_timeout_ms: int
    prepared_statements: bool
    application_name: str

    @classmethod
    def from_env(cls) -> DatabaseSettings:
        return cls(
            url=_conninfo(secret("DATABASE_URL", required=True)),
            connect_timeout_s=env_int("DB_CONNECT_TIMEOUT_S", 3, minimum=1, maximum=60),
            # Keep it below the function's Timeout (the template sets both), so a stuck
            # query ends with an answer before Lambda kills the invocation.
            statement_timeout_ms=env_int("DB_STATEMENT_TIMEOUT_MS", 5000, minimum=1, maximum=900_000),
            prepared_statements=env_bool("DB_PREPARED_STATEMENTS", True),
            application_name=env_str("DB_APPLICATION_NAME")
            or f"parel-monitoring:{env_str('AWS_LAMBDA_FUNCTION_NAME', 'local')}"[:63],
        )


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or the work failed.

    ``reason``: the scrubbed driver message (no URL or secret, but host, port, user and database
    names), for logs and authorized callers; ``category``: a short fixed phrase anyone may read.
    """

    def __init__(self, reason: str, category: str = "query failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category

    @classmethod
    def from_error(cls, exc: BaseException) -> DatabaseUnavailable:
        return cls(safe_reason(exc), category(exc))


class Database:
    """A lazily opened, reused connection; use :meth:`run` for every unit of work."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self._conn: psycopg.Connection | None = None

    def _connect(self, application_name: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            self.settings.url,
            connect_timeout=self.settings.connect_timeout_s,
            autocommit=True,
            application_name=application_name or self.settings.application_name,
            prepare_threshold=5 if self.settings.prepared_statements else None,
        )

    def open_dedicated(self, suffix: str) -> psycopg.Connection:
        """A new connection of the caller's own (same settings, ``application_name`` + ``suffix``)."""
        try:
            return self._connect(self.settings.application_name[: 63 - len(suffix)] + suffix)
        except psycopg.Error as exc:
            raise DatabaseUnavailable.from_error(exc) from None

    def connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _attempt(self, work: Callable[[psycopg.Connection], T]) -> T:
        conn = self.connection()
        with conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(self.settings.statement_timeout_ms),))
            return work(conn)

    def _lost(self, exc: psycopg.Error) -> bool:
        """Whether ``exc`` cost the connection itself (not only the statement or transaction)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            return True
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in _SESSION_ENDED

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work(conn)`` in a short transaction; reconnect once if the reused socket was dead."""
        reused = self._conn is not None and not self._conn.closed
        try:
            return self._attempt(work)
        except psycopg.Error as exc:
            # A statement timeout or a lock conflict rolled back the transaction; the connection is fine.
            if not (isinstance(exc, psycopg.OperationalError) and self._lost(exc)):
                raise DatabaseUnavailable.from_error(exc) from None
            self.close()
            if not reused:
                raise DatabaseUnavailable.from_error(exc) from None
        # The connection kept from an earlier call had died: one fresh attempt.
        try:
            return self._attempt(work)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and self._lost(exc):
                self.close()
            raise DatabaseUnavailable.from_error(exc) from None


@functools.cache
def get_database(settings: DatabaseSettings) -> Database:
    """The execution environment's :class:`Database` for these settings (created once)."""
    return Database(settings)
