"""GET /api/health/db and GET /api/health through the Lambda emulator, against real PostgreSQL."""

import json
import time

import psycopg

from events_loader import load_event

# The figures are details: read here with HEALTH_SHOW_DETAILS=always (who sees what: test_health_details_e2e.py),
# and without caching where every invocation must run its own check.
DETAILS = {"HEALTH_SHOW_DETAILS": "always"}
FRESH = {**DETAILS, "HEALTH_CACHE_TTL_S": "0"}


def body(invocation):
    return json.loads(invocation.payload["body"])


def function_backends(database_url: str) -> set[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'parel-monitoring:HealthDbFunction'"
            " AND datname = current_database()"
        )
        return {pid for (pid,) in rows}


def test_healthy_with_the_seed_fields(start_function, database_url):
    result = start_function("HealthDbFunction", DATABASE_URL=database_url, **DETAILS).invoke(load_event("health-db"))
    assert result.payload["statusCode"] == 200
    assert result.payload["headers"]["cache-control"] == "public, max-age=5"
    assert result.payload["headers"]["x-correlation-id"] == "demo-db-0001"
    health = body(result)
    assert health["status"] == "healthy"
    assert set(health["query"]) == {"responseTime", "threshold", "healthy"}
    assert {"total", "active", "idle", "idleInTransaction", "max", "usagePercent"} <= set(health["pool"])


def test_degraded_is_still_200(start_function, database_url):
    app = start_function("HealthDbFunction", DATABASE_URL=database_url, DB_QUERY_THRESHOLD_MS="0")
    result = app.invoke(load_event("health-db"))
    assert result.payload["statusCode"] == 200 and body(result)["status"] == "degraded"


def test_one_backend_serves_warm_invocations_and_a_killed_one_is_replaced(start_function, database_url):
    app = start_function("HealthDbFunction", DATABASE_URL=database_url, **FRESH)
    assert app.invoke(load_event("health-db")).payload["statusCode"] == 200
    (pid,) = function_backends(database_url)
    assert app.invoke(load_event("health-db")).payload["statusCode"] == 200
    assert function_backends(database_url) == {pid}
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    result = app.invoke(load_event("health-db"))
    assert result.payload["statusCode"] == 200, result.payload
    assert function_backends(database_url) - {pid}


def test_503_within_the_connect_timeout_when_unreachable(start_function, closed_port):
    app = start_function("HealthDbFunction", DATABASE_URL=f"postgresql://app:Secret-999@127.0.0.1:{closed_port}/app")
    started = time.monotonic()
    result = app.invoke(load_event("health-db"))
    assert time.monotonic() - started < 3 + 0.5
    assert result.payload["statusCode"] == 503 and body(result)["status"] == "unhealthy"
    assert "Secret-999" not in result.payload["body"] and "Secret-999" not in "\n".join(result.logs)


def test_503_within_the_connect_timeout_with_a_wrong_password(start_function, password_protected_postgres):
    wrong = password_protected_postgres.replace("right-Pa55word", "wrong-Pa55word")
    app = start_function("HealthDbFunction", DATABASE_URL=wrong)
    started = time.monotonic()
    result = app.invoke(load_event("health-db"))
    assert time.monotonic() - started < 3 + 0.5
    assert result.payload["statusCode"] == 503
    assert "wrong-Pa55word" not in result.payload["body"]


def test_missing_database_url_is_a_configuration_error(start_function):
    result = start_function("HealthDbFunction", DATABASE_URL="").invoke(load_event("health-db"))
    assert result.payload["statusCode"] == 500
    assert body(result)["error"] == "configuration" and body(result)["variable"] == "DATABASE_URL"


def test_aggregate_reports_each_component_and_the_worst_status(start_function, database_url, closed_port):
    common = {"DATABASE_URL": database_url, "QUEUE_NAMES": "parel-e2e-none", "BULLMQ_PREFIX": "parel-e2e-agg"}
    common.update(DETAILS)
    healthy_db = start_function("HealthFunction", REDIS_URL="redis://127.0.0.1:6379/0", **common)
    result = healthy_db.invoke(load_event("health", headers={"accept": "application/json"}))
    health = body(result)
    assert set(health["checks"]) == {"app", "db", "queue"}
    assert health["checks"]["db"]["status"] == "healthy"
    assert health["checks"]["queue"]["status"] == "degraded"  # the configured queue does not exist
    assert health["status"] == "degraded" and result.payload["statusCode"] == 200

    redis_down = start_function("HealthFunction", REDIS_URL=f"redis://127.0.0.1:{closed_port}/0", **common)
    result = redis_down.invoke(load_event("health"))
    assert result.payload["statusCode"] == 503
    assert result.payload["headers"]["content-type"] == "application/health+json"
    draft = body(result)
    assert draft["status"] == "fail"
    assert draft["checks"]["postgresql:responseTime"][0]["status"] == "pass"
    assert draft["checks"]["postgresql:responseTime"][0]["observedUnit"] == "ms"
    assert draft["checks"]["bullmq:failureRate"][0]["status"] == "fail"
    for entries in draft["checks"].values():
        assert all({"observedValue", "observedUnit", "status", "time"} <= set(entry) for entry in entries)


def test_unknown_query_parameters_are_ignored(start_function, database_url):
    event = load_event(
        "health-db", rawQueryString="verbose=1&dryRun=maybe", queryStringParameters={"verbose": "1", "dryRun": "maybe"}
    )
    result = start_function("HealthDbFunction", DATABASE_URL=database_url).invoke(event)
    assert result.payload["statusCode"] == 200 and body(result)["status"] == "healthy"
