"""The health routes' cache, cache headers and need-to-know decision (parel_monitoring.health.route)."""

from __future__ import annotations

import json

import pytest

from parel_monitoring import scrub
from parel_monitoring.health import log_checks, problem, public_check
from parel_monitoring.health.route import HealthRouteSettings, ResultCache, cache_headers, shows_details
from parel_monitoring.logs import create_logger
from parel_monitoring.settings import ConfigurationError

TOKEN = "unit-health-token-8c2d4e6f"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_result_is_reused_until_its_ttl_ends_per_key():
    clock, runs = Clock(), []
    cache = ResultCache(clock)

    def check(name: str):
        def run() -> dict:
            runs.append(name)
            return {"status": "healthy", "run": len(runs)}

        return run

    assert cache.get("db", 5, check("db")) == ({"status": "healthy", "run": 1}, None)
    clock.now += 4.9
    result, age = cache.get("db", 5, check("db"))
    assert result["run"] == 1 and age == pytest.approx(4.9)
    assert cache.get("queue", 5, check("queue"))[0]["run"] == 2  # another check has its own entry
    clock.now += 0.1  # exactly the TTL: stale
    assert cache.get("db", 5, check("db")) == ({"status": "healthy", "run": 3}, None)
    assert runs == ["db", "queue", "db"]


def test_ttl_zero_never_stores():
    cache, runs = ResultCache(Clock()), []
    for _ in range(3):
        assert cache.get("db", 0, lambda: runs.append(1) or {"status": "healthy"})[1] is None
    assert len(runs) == 3


def test_cache_headers_say_public_or_private_with_the_age_rounded_up():
    on, off = HealthRouteSettings(5, "when-authorized"), HealthRouteSettings(0, "when-authorized")
    assert cache_headers(on, 0.0, private=False) == {"cache-control": "public, max-age=5", "age": "0"}
    assert cache_headers(on, 3.2, private=True) == {"cache-control": "private, max-age=5", "age": "4"}
    assert cache_headers(off, 0.0, private=False) == {"cache-control": "no-store"}


@pytest.mark.parametrize(
    ("variable", "value"), [("HEALTH_CACHE_TTL_S", "-1"), ("HEALTH_CACHE_TTL_S", "301"), ("HEALTH_SHOW_DETAILS", "x")]
)
def test_bad_settings_name_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as error:
        HealthRouteSettings.from_env()
    assert error.value.variable == variable


def test_defaults(monkeypatch):
    monkeypatch.delenv("HEALTH_CACHE_TTL_S", raising=False)
    monkeypatch.delenv("HEALTH_SHOW_DETAILS", raising=False)
    assert HealthRouteSettings.from_env() == HealthRouteSettings(5, "when-authorized")


def event(authorization: str | None) -> dict:
    return {"headers": {} if authorization is None else {"Authorization": authorization}, "requestContext": {}}


def test_only_the_admin_token_shows_details(monkeypatch, capsys):
    monkeypatch.setattr(scrub, "_known_secrets", set(scrub._known_secrets))
    monkeypatch.setenv("ADMIN_API_TOKEN", TOKEN)
    for name in ("ADMIN_API_TOKEN_SECRET_ARN", "ADMIN_API_TOKEN_PARAMETER"):
        monkeypatch.delenv(name, raising=False)
    logger = create_logger("health-route-test")
    when = HealthRouteSettings(5, "when-authorized")
    assert shows_details(event(f"Bearer {TOKEN}"), when, logger) is True
    for authorization in (None, f"Bearer {TOKEN}x", f"Basic {TOKEN}", "", "Bearer " + "a" * 2000):
        assert shows_details(event(authorization), when, logger) is False
    assert shows_details(event(f"Bearer {TOKEN}"), HealthRouteSettings(5, "never"), logger) is False
    assert shows_details(event(None), HealthRouteSettings(5, "always"), logger) is True
    assert TOKEN not in capsys.readouterr().out
    monkeypatch.delenv("ADMIN_API_TOKEN")  # no token configured: nobody is authorized
    assert shows_details(event(f"Bearer {TOKEN}"), when, logger) is False


def test_public_view_and_problem_texts():
    db = {"status": "unhealthy", "reason": "OperationalError: ... db.internal.example", "reasonCategory": "timeout"}
    assert public_check(db) == {"status": "unhealthy", "reason": "timeout"}
    assert public_check({"status": "degraded", "queues": []}) == {"status": "degraded"}
    assert problem("db", db) == db["reason"]
    slow = {
        "status": "degraded",
        "query": {"responseTime": "12ms", "threshold": "10ms", "healthy": False},
        "pool": {"usagePercent": "95.00", "total": 95, "max": 100, "threshold": "90%", "healthy": False},
    }
    assert problem("db", slow) == "query took 12ms (threshold 10ms); connection usage 95.00% (95 of 100; threshold 90%)"
    queue = {"status": "degraded", "pausedQueues": ["high-priority"],
             "thresholds": {"highPriorityLag": {"warning": 50, "critical": 100, "current": 3},
                            "failureRate": {"warning": 5, "critical": 10, "current": 7.5}}}  # fmt: skip
    assert problem("queue", queue) == "failure rate 7.5% (warning 5%, critical 10%); paused queues: high-priority"
    app = {"status": "unhealthy", "memory": {"system": {"usagePercent": "95.00"}}, "thresholds": {"memoryPercent": 90}}
    assert problem("app", app) == "memory usage 95.00% above MEMORY_THRESHOLD_PCT 90%"
    assert problem("app", {"status": "healthy"}) is None


def test_log_checks_levels(capsys, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    logger = create_logger("health-levels-test")
    log_checks(logger, {"app": {"status": "healthy"}, "queue": {"status": "degraded", "missingQueues": ["x"]},
                        "db": {"status": "unhealthy", "reason": "full", "reasonCategory": "timeout"}})  # fmt: skip
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["level"], line["component"]) for line in lines] == [
        ("DEBUG", "app"), ("WARNING", "queue"), ("ERROR", "db")]  # fmt: skip
    assert lines[1]["reason"] == "missing queues: x" and lines[2]["reasonCategory"] == "timeout"
