"""The admin bearer token check behind the HttpApi Lambda authorizer.

``Authorization: Bearer <token>`` compared in constant time with ADMIN_API_TOKEN.
Missing or malformed header → 401, wrong token → 403, no token configured (or the
secret cannot be read) → every request denied: the check fails closed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from parel_monitoring import error_tracker
from parel_monitoring.logs import create_logger
from parel_monitoring.settings import ConfigurationError, env_int, secret

_BEARER = re.compile(r"Bearer ([\x21-\x7e]{1,1024})")


@dataclass(frozen=True)
class Decision:
    authorized: bool
    status: int  # what the caller should see: 200, 401 or 403
    reason: str


UNREADABLE = "Admin token unreadable: every admin request is denied"
_unreadable_reported_at: list[float] = []  # when an unreadable secret was last reported (once per cache period)


def admin_token() -> str | None:
    """ADMIN_API_TOKEN, read on every call (secrets are cached by Powertools, so rotation is honoured).

    A secret that cannot be read (IAM, network, a deleted secret) still denies everything, but unlike
    "no token configured" it is an error: logged naming the variable (never its value) and reported to
    Sentry, once per execution environment and secrets cache period.
    """
    try:
        return secret("ADMIN_API_TOKEN")
    except ConfigurationError as exc:
        _report_unreadable(exc)
        return None


def _report_unreadable(exc: ConfigurationError) -> None:
    now = time.monotonic()
    if _unreadable_reported_at and now - _unreadable_reported_at[0] < env_int("SECRETS_MAX_AGE_S", 300, minimum=0):
        return
    _unreadable_reported_at[:] = [now]
    details = {"variable": exc.variable, "problem": exc.problem}
    create_logger("auth").error(UNREADABLE, extra=details)
    error_tracker.capture_message(UNREADABLE, {"metadata": details}, error_tracker.ErrorSeverity.ERROR)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def authorize(authorization: str | None, expected_token: str | None) -> Decision:
    if not expected_token:
        return Decision(False, 403, "no admin token is configured")
    if not authorization:
        return Decision(False, 401, "missing Authorization header")
    match = _BEARER.fullmatch(authorization.strip())
    if match is None:
        return Decision(False, 401, "malformed Authorization header (expected: Bearer <token>)")
    # Digests of equal length: the comparison time depends on neither value nor its length.
    if not hmac.compare_digest(_digest(match[1]), _digest(expected_token)):
        return Decision(False, 403, "invalid token")
    return Decision(True, 200, "ok")
