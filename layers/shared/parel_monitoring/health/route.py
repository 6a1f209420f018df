"""The public health routes: results reused briefly, details on a need-to-know basis.

* ``HEALTH_CACHE_TTL_S`` (default 5, 0 = off): a check's result is reused for that long within
  the execution environment, so a flood of requests costs PostgreSQL and Redis at most one check
  per environment per TTL. The answer says so: ``Cache-Control: public|private, max-age=<TTL>``
  with ``Age: <seconds since the check ran>`` (RFC 9111: what is left is max-age - Age), or
  ``no-store`` when caching is off. The scheduled sweep never goes through here.
* ``HEALTH_SHOW_DETAILS`` (Spring Boot Actuator's names): ``never`` | ``when-authorized``
  (default) | ``always``. Without details a caller reads the status of the whole and of each
  component, and an unhealthy component's failure category (``connection refused``, ...), never a
  host, port, user, database or queue name, version, figure or function name. With
  ``when-authorized`` a request carrying the admin token (``Authorization: Bearer``, the
  authorizer's own constant-time check and ADMIN_API_TOKEN) reads the full documents, marked
  ``private``. Any other Authorization header is answered like an anonymous request (never 401/403:
  uptime monitors must always get their status) and logged.

Every answer logs its checks (:func:`parel_monitoring.health.log_checks`) with the request's
correlation ID, also when the result came from the cache.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from parel_monitoring.health import STATUS_CODES, log_checks, public_check
from parel_monitoring.http import header, json_response
from parel_monitoring.settings import env_choice, env_int

NEVER, WHEN_AUTHORIZED, ALWAYS = "never", "when-authorized", "always"
AGGREGATE = "health"  # the component name of GET /api/health, whose result holds ``checks``
MAX_CACHE_TTL_S = 300


@dataclass(frozen=True)
class HealthRouteSettings:
    cache_ttl_s: int
    show_details: str

    @classmethod
    def from_env(cls) -> HealthRouteSettings:
        return cls(
            cache_ttl_s=env_int("HEALTH_CACHE_TTL_S", 5, minimum=0, maximum=MAX_CACHE_TTL_S),
            show_details=env_choice("HEALTH_SHOW_DETAILS", WHEN_AUTHORIZED, (NEVER, WHEN_AUTHORIZED, ALWAYS)),
        )


@dataclass(frozen=True)
class RouteSettings:
    """A health route's settings: its check's and the route's own."""

    check: Any
    route: HealthRouteSettings


def route_settings(check_settings: Callable[[], Any]) -> Callable[[], RouteSettings]:
    """A settings factory for ``lambda_handler``: the check's settings plus HEALTH_* of the route."""

    def build() -> RouteSettings:
        return RouteSettings(check_settings(), HealthRouteSettings.from_env())

    return build


class ResultCache:
    """Check results of this execution environment, each reused for its TTL (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, float, dict[str, Any]]] = {}  # key -> (ready at, ttl, result)
        self._lock = threading.Lock()

    def get(
        self, key: Hashable, ttl_s: float, compute: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], float | None]:
        """``(result, age in seconds)``: a stored result younger than ``ttl_s``, else a fresh one (age None)."""
        if ttl_s > 0:
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None and (age := self._clock() - entry[0]) < entry[1]:
                return entry[2], age
        result = compute()
        if ttl_s > 0:
            now = self._clock()
            with self._lock:
                self._entries = {k: e for k, e in self._entries.items() if now - e[0] < e[1]}
                self._entries[key] = (now, ttl_s, result)
        return result, None


_cache = ResultCache()


def shows_details(event: Any, settings: HealthRouteSettings, logger: Any) -> bool:
    """Whether this request reads the full documents (see the module docstring)."""
    if settings.show_details != WHEN_AUTHORIZED:
        return settings.show_details == ALWAYS
    authorization = header(event, "authorization")
    if authorization is None:
        return False
    # Read only when a token is presented: anonymous requests never fetch the secret (nor import the check:
    # hashlib and hmac stay out of the cold start of a route most callers reach without a token).
    from parel_monitoring.auth import admin_token, authorize

    decision = authorize(authorization, admin_token())
    if not decision.authorized:
        logger.info("Health details withheld", {"reason": decision.reason})
    return decision.authorized


def cache_headers(settings: HealthRouteSettings, age_s: float, private: bool) -> dict[str, str]:
    if settings.cache_ttl_s <= 0:
        return {"cache-control": "no-store"}
    scope = "private" if private else "public"
    # Age rounded up: a cache downstream never believes the result fresher than it is.
    return {"cache-control": f"{scope}, max-age={settings.cache_ttl_s}", "age": str(math.ceil(age_s))}


def single_view(result: dict[str, Any], details: bool, cached: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """A single route's body: the check's document (with ``cached``), or its public view."""
    return ({**result, "cached": cached} if details else public_check(result)), {}


def _hashable(check_settings: Any) -> Hashable:
    """The check's settings as a cache key: themselves, or their repr when a value in them is a list or a dict
    (a probe target's ``equals`` may be any JSON value). Kept in memory only, never logged."""
    try:
        hash(check_settings)
    except TypeError:
        return repr(check_settings)
    return check_settings


def serve(
    event: Any,
    settings: RouteSettings,
    component: str,
    check: Callable[[], dict[str, Any]],
    logger: Any,
    view: Callable[[dict[str, Any], bool, bool], tuple[dict[str, Any], dict[str, str]]] = single_view,
    vary: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Answer a health route: the (possibly cached) result of ``check``, logged, shown to this caller.

    ``component``: ``app``, ``db`` or ``queue`` for a single check, :data:`AGGREGATE` for a result
    holding ``checks``; ``view(result, details, cached)`` -> (body, extra headers).
    """
    route = settings.route
    result, age_s = _cache.get((component, _hashable(settings.check)), route.cache_ttl_s, check)
    cached = age_s is not None
    checks = result["checks"] if component == AGGREGATE else {component: result}
    log_checks(logger, checks, cached=cached, **({"ageSeconds": round(age_s, 3)} if cached else {}))
    details = shows_details(event, route, logger)
    body, headers = view(result, details, cached)
    private = details and route.show_details == WHEN_AUTHORIZED
    headers = {**headers, **cache_headers(route, age_s or 0.0, private)}
    varies = [*vary, *(["authorization"] if route.show_details == WHEN_AUTHORIZED else [])]
    if varies:
        headers["vary"] = ", ".join(varies)
    return json_response(STATUS_CODES[result["status"]], body, headers)
