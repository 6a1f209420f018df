"""Typed settings, read once per execution environment.

Each function declares a frozen dataclass whose ``from_env`` reads the
environment through the helpers below. A missing or malformed setting raises
:class:`ConfigurationError` naming the variable, never its value.

Secret-bearing settings (``DATABASE_URL``, ``REDIS_URL``, ``SLACK_WEBHOOK_URL``,
``DISCORD_WEBHOOK_URL``, ``SENTRY_DSN``, ``ADMIN_API_TOKEN``) are read by
:func:`secret`: directly from the environment (local runs), or from
``<NAME>_SECRET_ARN`` (Secrets Manager) / ``<NAME>_PARAMETER`` (SSM SecureString)
through Powertools Parameters, cached for ``SECRETS_MAX_AGE_S`` seconds.
boto3 is imported only when a secret is really fetched from AWS.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parel_monitoring import __version__
from parel_monitoring.scrub import register_secret

SECRET_SETTINGS = (
    "DATABASE_URL",
    "REDIS_URL",
    "SLACK_WEBHOOK_URL",
    "DISCORD_WEBHOOK_URL",
    "SENTRY_DSN",
    "ADMIN_API_TOKEN",
)


class ConfigurationError(Exception):
    """A required setting is missing or malformed; ``variable`` names it."""

    def __init__(self, variable: str, problem: str = "is not set") -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable} {problem}")


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def require_str(name: str) -> str:
    value = env_str(name)
    if value is None:
        raise ConfigurationError(name)
    return value


def _env_number(name: str, default: Any, parse: Callable[[str], Any], kind: str, minimum: Any, maximum: Any) -> Any:
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigurationError(name, f"must be {kind}") from None
    if value != value or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigurationError(name, f"must be between {minimum} and {maximum}")
    return value


def env_float(name: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float:
    return _env_number(name, default, float, "a number", minimum, maximum)


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    return _env_number(name, default, int, "an integer", minimum, maximum)


def env_bool(name: str, default: bool) -> bool:
    value = (env_str(name) or "").lower()
    if not value:
        return default
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigurationError(name, "must be true or false")
    return value in ("true", "1", "yes")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env_str(name) or default).lower()
    if value not in choices:
        raise ConfigurationError(name, f"must be one of {', '.join(choices)}")
    return value


def secret(name: str, required: bool = False) -> str | None:
    """The value of a secret-bearing setting, from the environment or AWS."""
    value = env_str(name)
    if value is None:
        arn = env_str(f"{name}_SECRET_ARN")
        parameter = env_str(f"{name}_PARAMETER")
        if arn or parameter:
            value = _fetch_from_aws(name, arn, parameter)
    if value is None and required:
        raise ConfigurationError(name, f"is not set (nor {name}_SECRET_ARN / {name}_PARAMETER)")
    register_secret(value)
    return value


def url_setting(name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    """``value`` (the setting ``name``) when it is a URL of one of ``schemes`` (with a host, but for unix
    sockets); a ConfigurationError naming ``name`` otherwise."""
    if value is not None:
        from urllib.parse import urlsplit  # here: a function with no URL setting never imports it

        try:
            parts = urlsplit(value)
            valid = parts.scheme in schemes and (parts.scheme == "unix" or bool(parts.hostname))
            valid = valid and (parts.port or 0) >= 0
        except ValueError:  # e.g. a port that is not a number
            valid = False
        if not valid:
            raise ConfigurationError(name, f"must be a {' or '.join(schemes)} URL")
    return value


def http_url(name: str, value: str | None) -> str | None:
    return url_setting(name, value, ("https", "http"))


def redis_url(value: str | None) -> str | None:
    return url_setting("REDIS_URL", value, ("redis", "rediss", "unix"))


def _fetch_from_aws(name: str, arn: str | None, parameter: str | None) -> str | None:
    from aws_lambda_powertools.utilities import parameters  # imports boto3: only when needed

    max_age = env_int("SECRETS_MAX_AGE_S", 300, minimum=0)
    source = f"{name}_SECRET_ARN" if arn else f"{name}_PARAMETER"
    try:
        if arn:
            value = parameters.get_secret(arn, max_age=max_age)
        else:
            value = parameters.get_parameter(parameter, decrypt=True, max_age=max_age)
    except Exception as exc:  # GetParameterError, botocore errors: never echo the value
        raise ConfigurationError(source, f"could not be read ({type(exc).__name__})") from None
    if isinstance(value, bytes):
        value = value.decode()
    return value.strip() if isinstance(value, str) and value.strip() else None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level() -> tuple[str, str | None]:
    """The effective log level and, when the configured one is not a level, the variable naming it."""
    for name in ("POWERTOOLS_LOG_LEVEL", "LOG_LEVEL"):  # Powertools' order
        value = (os.environ.get(name) or "").strip().upper()
        if value:
            return (value, None) if value in LOG_LEVELS else ("INFO", name)
    return "INFO", None


def sentry_dsn() -> str | None:
    """SENTRY_DSN, parsed the way sentry-sdk will parse it (imported only when a DSN is set)."""
    dsn = secret("SENTRY_DSN")
    if dsn is not None:
        from sentry_sdk.utils import BadDsn, Dsn

        try:
            Dsn(dsn)
        except (BadDsn, ValueError):  # ValueError: e.g. a port that is not a number
            raise ConfigurationError("SENTRY_DSN", "is not a valid Sentry DSN") from None
    return dsn


@dataclass(frozen=True)
class ObservabilitySettings:
    """What the logger and Sentry need; shared by every function."""

    stage: str
    log_format: str
    sentry_dsn: str | None
    sentry_traces_sample_rate: float
    release: str | None

    @classmethod
    def from_env(cls) -> ObservabilitySettings:
        _, bad_level = log_level()
        if bad_level is not None:
            raise ConfigurationError(bad_level, f"must be one of {', '.join(LOG_LEVELS)}")
        return cls(
            stage=env_str("STAGE", "dev"),
            log_format=env_choice("LOG_FORMAT", "json", ("json", "text")),
            sentry_dsn=sentry_dsn(),
            sentry_traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0, 0.0, 1.0),
            release=env_str("SENTRY_RELEASE", f"parel-monitoring@{__version__}"),
        )
