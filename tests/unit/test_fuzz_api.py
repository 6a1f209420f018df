"""tools/fuzz_api.py without a service: what it reads from Schemathesis's reports, the anonymous pass's settings, and
the regressions of what Schemathesis found against the contract (the list is its ``FIXED``)."""

from __future__ import annotations

import json

import pytest

from fuzz_api import CONFIG, anonymous_config, read_events
from openapi_contract import response_problems
from parel_monitoring.health.aggregate import to_health_json


def _result(policy: str | None) -> dict:
    """A healthy :func:`check_all` result with every part the health+json document reads."""
    now = "2026-11-29T23:00:00.000Z"
    app = {
        "status": "healthy",
        "timestamp": now,
        "uptime": {"seconds": 3},
        "memory": {"system": {"usagePercent": "7.5"}},
    }
    db = {"status": "healthy", "responseTimeMs": 1.2, "query": {"healthy": True},
          "pool": {"usagePercent": "4.0", "healthy": True}}  # fmt: skip
    threshold = {"warning": 10.0, "critical": 25.0, "current": 0.0}
    queue = {
        "status": "healthy",
        "summary": {"totalJobs": 2, "failureRate": "0.00%", "failed": 0, "completed": 2},
        "thresholds": {
            "failureRate": threshold,
            "highPriorityLag": threshold,
            "oldestWaitingAge": threshold,
            "redisMemory": threshold,
            "noWorkerGraceSeconds": 60,
        },
        "queues": [
            {
                "name": "default",
                "waiting": 0,
                "paused": 0,
                "prioritized": 0,
                "exists": True,
                "workers": 1,
                "oldestWaitingAgeSeconds": None,
            }
        ],
        "redis": {"usagePercent": 1.5, "maxmemoryPolicy": policy},
    }
    return {"status": "healthy", "timestamp": now, "checks": {"app": app, "db": db, "queue": queue}}


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru", None])
def test_health_json_documents_conform_to_the_contract(policy):
    """GET /api/health as application/health+json in full: every entry conforms to openapi.yaml, including
    ``redis:evictionPolicy``, whose observedValue is the policy's name (a string the contract once refused)."""
    body = to_health_json(_result(policy), "default")
    assert ("redis:evictionPolicy" in body["checks"]) is (policy is not None)
    headers = {"content-type": "application/health+json", "x-correlation-id": "c-1", "cache-control": "no-store"}
    assert response_problems("GET", "/api/health", 200, headers, json.dumps(body)) == []


def test_read_events_counts_checks_and_statuses(tmp_path):
    """Checks per name (run, failed) and answers per operation; a probe with another method counts apart."""
    events = tmp_path / "events.ndjson"
    events.write_text(
        '{"Initialize": {}}\n'
        '{"ScenarioFinished": {"recorder": {"label": "GET /x", "checks": {"a": [{"name": "c1", "status": "success"},'
        ' {"name": "c2", "status": "failure"}], "b": [{"name": "c1", "status": "success"}]},'
        ' "interactions": {"a": {"request": {"method": "GET"}, "response": {"status_code": 200}},'
        ' "b": {"request": {"method": "TRACE"}, "response": {"status_code": 404}}}}}}\n'
    )
    checks, statuses = read_events(events, " (anonymous)")
    assert checks == {"c1": [2, 0], "c2": [1, 1]}
    assert statuses == {"GET /x (anonymous)": {"200": 1, "404 (other methods)": 1}}


def test_the_anonymous_pass_has_every_setting_but_the_token(tmp_path):
    import tomllib

    full = tomllib.loads(CONFIG.read_text())
    anonymous = tomllib.loads(anonymous_config(tmp_path / "a.toml").read_text())
    assert "auth" in full and anonymous == {key: value for key, value in full.items() if key != "auth"}
