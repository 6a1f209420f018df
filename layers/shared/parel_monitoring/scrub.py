"""Removes secret values from text and nested data before it leaves the function.

Used by the log formatter and by Sentry's ``before_send``: passwords inside URLs
and DSNs, bearer tokens, webhook URLs, and any value under a secret-looking key.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
MAX_DEPTH = 20
TOO_DEEP = "[redacted: nested too deep]"

_SECRET_KEY = re.compile(
    r"(authorization|cookie|password|passwd|secret|token|api[_-]?key|dsn|webhook|"
    r"database_url|redis_url|credential|private[_-]?key)",
    re.IGNORECASE,
)
_PATTERNS = (
    # user:password@host in any URL (postgres://, redis://, https://...); the scheme is bounded so
    # long token-like text without spaces cannot make the match quadratic.
    (
        re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]{0,31}://)[^\s/@:\"']*:[^\s/@\"']*@", re.I),
        r"\g<scheme>" + REDACTED + "@",
    ),
    # Sentry DSN public key (https://<key>@o1.ingest.sentry.io/1)
    (re.compile(r"(?P<scheme>https?://)[0-9a-f]{16,}@", re.I), r"\g<scheme>" + REDACTED + "@"),
    # Slack and Discord webhook URLs carry their secret in the path.
    (re.compile(r"https://hooks\.slack\.com/[^\s\"']+", re.I), REDACTED),
    (re.compile(r"https://(?:[a-z]+\.)?discord(?:app)?\.com/api/webhooks/[^\s\"']+", re.I), REDACTED),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I), r"\1 " + REDACTED),
)

_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a configured secret so any later occurrence of it is redacted.

    A URL's password (and a long user part, like a Sentry DSN's key) is remembered on its own
    too: drivers keep it apart from the URL, e.g. in the locals of a stack frame.
    """
    if not value or len(value) < 6:
        return
    _known_secrets.add(value)
    if "://" in value:
        from urllib.parse import unquote, urlsplit  # here: a function with no URL secret never imports it

        parts = urlsplit(value)
        for part, minimum in ((parts.password, 6), (parts.username, 16)):
            if part and len(part) >= minimum:
                _known_secrets.add(unquote(part))
                _known_secrets.add(part)


def scrub_text(text: str) -> str:
    for secret in sorted(_known_secrets, key=len, reverse=True):  # a whole URL before its password
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def scrub(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with secret-keyed entries and secret-looking text redacted (keys too).

    Containers nested deeper than ``MAX_DEPTH`` (or in a cycle) are replaced by ``TOO_DEEP``.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, (dict, list, tuple)) and _depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {
            # Only text under a secret-looking key is withheld: counts such as
            # {"expiredTokens": 3} stay readable.
            (scrub_text(key) if isinstance(key, str) else key): (
                REDACTED if is_secret_key(key) and isinstance(item, str) and item else scrub(item, _depth + 1)
            )
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub(item, _depth + 1) for item in value]
    return value


def safe_reason(exc: BaseException) -> str:
    """A driver error as a short reason for a response: first line, no URLs or secrets, ≤ 200 chars."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = re.sub(r"\b[a-z][a-z0-9+.-]{0,31}://\S+", "[url]", text)
    return scrub_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:200]
