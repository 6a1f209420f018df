"""Need-to-know details, brief caching and the failure trace of the health routes (issue 11), through the
Lambda emulator against real PostgreSQL and Redis.

Anonymous callers read statuses and a failure category only; the admin bearer token shows the full
documents; every degraded or unhealthy answer leaves one log line with its correlation ID.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from bullmq_scenario import REDIS_URL, run_scenario
from events_loader import load_event

TOKEN = "e2e-health-admin-token-3b9f1c7d2a"
BEARER = {"authorization": f"Bearer {TOKEN}"}
HP = "high-priority"
PASSWORD = "Hidden-Pw-7a1"


def body(invocation) -> dict:
    return json.loads(invocation.payload["body"])


def log_lines(invocation) -> list[dict]:
    return [json.loads(line) for line in invocation.logs if line.startswith("{")]


def check_lines(invocation, message: str) -> list[dict]:
    return [line for line in log_lines(invocation) if line.get("message") == message]


def get(function, event_name: str, correlation_id: str, **headers: str):
    return function.invoke(load_event(event_name, headers={"x-correlation-id": correlation_id, **headers}))


# --------------------------------------------------------------------------- acceptance: PostgreSQL unreachable


def _dns_db(request) -> tuple[str, str, str, tuple[str, ...]]:
    url = f"postgresql://monitor_user:{PASSWORD}@db.internal.example:5432/app_db"
    return url, "DNS lookup failed", "db.internal.example", ("db.internal.example", "monitor_user", "app_db", "5432")


def _closed_port_db(request) -> tuple[str, str, str, tuple[str, ...]]:
    port = request.getfixturevalue("closed_port")
    url = f"postgresql://monitor_user:{PASSWORD}@127.0.0.1:{port}/app_db"
    return url, "connection refused", f'"127.0.0.1", port {port}', ("127.0.0.1", str(port), "monitor_user", "app_db")


def _wrong_password_db(request) -> tuple[str, str, str, tuple[str, ...]]:
    right = request.getfixturevalue("password_protected_postgres")
    url = right.replace("right-Pa55word", PASSWORD)
    port = url.rsplit(":", 1)[1].split("/")[0]
    shown = 'password authentication failed for user "postgres"'
    return url, "authentication failed", shown, ("127.0.0.1", port, '"postgres"', "user")


@pytest.mark.parametrize(
    "unreachable", [_dns_db, _closed_port_db, _wrong_password_db], ids=["dns", "closed-port", "wrong-password"]
)
def test_unreachable_database_anonymous_503_names_nothing_the_token_shows_the_reason(
    start_function, request, unreachable
):
    url, category, shown, hidden = unreachable(request)
    health_db = start_function("HealthDbFunction", DATABASE_URL=url, ADMIN_API_TOKEN=TOKEN)

    anonymous = get(health_db, "health-db", "accept-db-anonymous")
    assert anonymous.payload["statusCode"] == 503
    assert body(anonymous) == {"status": "unhealthy", "reason": category}
    for name in (*hidden, PASSWORD, "OperationalError"):
        assert name not in anonymous.payload["body"], f"{name!r} in the anonymous answer"
    assert anonymous.payload["headers"]["cache-control"] == "public, max-age=5"

    authorized = get(health_db, "health-db", "accept-db-admin", **BEARER)
    assert authorized.payload["statusCode"] == 503
    full = body(authorized)
    assert full["status"] == "unhealthy" and shown in full["reason"] and full["reasonCategory"] == category
    assert full["pool"] is None and full["query"]["healthy"] is False and full["cached"] is True
    assert PASSWORD not in authorized.payload["body"]
    assert authorized.payload["headers"]["cache-control"] == "private, max-age=5"
    assert authorized.payload["headers"]["vary"] == "authorization"

    for invocation, correlation_id in ((anonymous, "accept-db-anonymous"), (authorized, "accept-db-admin")):
        (line,) = check_lines(invocation, "Health check unhealthy")
        assert line["level"] == "ERROR" and line["correlation_id"] == correlation_id
        assert line["component"] == "db" and shown in line["reason"] and line["reasonCategory"] == category
        assert invocation.payload["headers"]["x-correlation-id"] == correlation_id
        assert not any(PASSWORD in text for text in invocation.logs)
    assert check_lines(anonymous, "Health check unhealthy")[0]["cached"] is False
    assert check_lines(authorized, "Health check unhealthy")[0]["cached"] is True


# --------------------------------------------------------------------------- acceptance: Redis unreachable


def _dns_redis(request) -> tuple[str, str, str, tuple[str, ...]]:
    url = f"redis://:{PASSWORD}@redis.internal.example:6379/0"
    return url, "DNS lookup failed", "redis.internal.example", ("redis.internal.example", "6379")


def _closed_port_redis(request) -> tuple[str, str, str, tuple[str, ...]]:
    port = request.getfixturevalue("closed_port")
    return (
        f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        "connection refused",
        f"127.0.0.1:{port}",
        ("127.0.0.1", str(port)),
    )


def _wrong_password_redis(request) -> tuple[str, str, str, tuple[str, ...]]:
    url = request.getfixturevalue("password_protected_redis").replace("right-Pa55word", PASSWORD)
    port = url.rsplit(":", 1)[1].split("/")[0]
    return url, "authentication failed", "AuthenticationError", ("127.0.0.1", port, "default")


@pytest.mark.parametrize("unreachable", [_dns_redis, _closed_port_redis, _wrong_password_redis],
                         ids=["dns", "closed-port", "wrong-password"])  # fmt: skip
def test_unreachable_redis_anonymous_503_names_nothing_the_token_shows_the_reason(start_function, request, unreachable):
    url, category, shown, hidden = unreachable(request)
    health_queue = start_function(
        "HealthQueueFunction", REDIS_URL=url, QUEUE_NAMES=f"{HP},mailer-internal", ADMIN_API_TOKEN=TOKEN
    )
    anonymous = get(health_queue, "health-queue", "accept-queue-anonymous")
    assert anonymous.payload["statusCode"] == 503
    assert body(anonymous) == {"status": "unhealthy", "reason": category}
    for name in (*hidden, PASSWORD, "mailer-internal", HP, "Error"):
        assert name not in anonymous.payload["body"], f"{name!r} in the anonymous answer"

    authorized = get(health_queue, "health-queue", "accept-queue-admin", **BEARER)
    full = body(authorized)
    assert authorized.payload["statusCode"] == 503 and shown in full["reason"] and full["reasonCategory"] == category
    assert PASSWORD not in authorized.payload["body"]
    for invocation, correlation_id in ((anonymous, "accept-queue-anonymous"), (authorized, "accept-queue-admin")):
        (line,) = check_lines(invocation, "Health check unhealthy")
        assert line["level"] == "ERROR" and line["correlation_id"] == correlation_id
        assert line["component"] == "queue" and shown in line["reason"]
        assert not any(PASSWORD in text for text in invocation.logs)


# --------------------------------------------------------------------------- who sees what


def test_details_only_with_the_admin_token_and_a_wrong_token_is_anonymous_not_refused(start_function, database_url):
    health_db = start_function("HealthDbFunction", DATABASE_URL=database_url, ADMIN_API_TOKEN=TOKEN)
    anonymous = get(health_db, "health-db", "who-anonymous")
    assert anonymous.payload["statusCode"] == 200 and body(anonymous) == {"status": "healthy"}
    assert anonymous.payload["headers"]["cache-control"] == "public, max-age=5"
    assert anonymous.payload["headers"]["age"] == "0"

    for authorization in (f"Bearer {TOKEN[:-1]}x", f"Basic {TOKEN}", "Bearer", f"bearer {TOKEN}", "x" * 5000):
        refused = get(health_db, "health-db", "who-wrong", authorization=authorization)
        assert refused.payload["statusCode"] == 200 and body(refused) == {"status": "healthy"}
        assert refused.payload["headers"]["cache-control"].startswith("public")
        (withheld,) = check_lines(refused, "Health details withheld")
        assert withheld["correlation_id"] == "who-wrong" and TOKEN[:-1] not in json.dumps(withheld)

    authorized = get(health_db, "health-db", "who-admin", **BEARER)
    full = body(authorized)
    assert full["status"] == "healthy" and full["cached"] is True
    assert {"total", "active", "idle", "idleInTransaction", "max", "usagePercent"} <= set(full["pool"])
    assert authorized.payload["headers"]["cache-control"] == "private, max-age=5"


def test_show_details_always_and_never(start_function, database_url):
    always = start_function("HealthDbFunction", DATABASE_URL=database_url, HEALTH_SHOW_DETAILS="always")
    result = get(always, "health-db", "always-anonymous")
    assert "pool" in body(result) and result.payload["headers"]["cache-control"] == "public, max-age=5"
    assert "vary" not in result.payload["headers"]

    never = start_function(
        "HealthDbFunction", DATABASE_URL=database_url, HEALTH_SHOW_DETAILS="never", ADMIN_API_TOKEN=TOKEN
    )
    assert body(get(never, "health-db", "never-admin", **BEARER)) == {"status": "healthy"}

    bad = start_function("HealthDbFunction", DATABASE_URL=database_url, HEALTH_SHOW_DETAILS="sometimes")
    result = get(bad, "health-db", "bad-setting")
    assert result.payload["statusCode"] == 500 and body(result)["variable"] == "HEALTH_SHOW_DETAILS"


def test_aggregate_shows_component_statuses_only_in_both_formats(start_function, database_url, closed_port):
    aggregate = start_function(
        "HealthFunction", DATABASE_URL=database_url, REDIS_URL=f"redis://127.0.0.1:{closed_port}/0",
        QUEUE_NAMES="parel-e2e-none", ADMIN_API_TOKEN=TOKEN,
    )  # fmt: skip
    plain = get(aggregate, "health", "aggregate-json", accept="application/json")
    assert plain.payload["statusCode"] == 503
    assert body(plain) == {
        "status": "unhealthy",
        "checks": {"app": {"status": "healthy"}, "db": {"status": "healthy"},
                   "queue": {"status": "unhealthy", "reason": "connection refused"}},
    }  # fmt: skip
    assert plain.payload["headers"]["vary"] == "accept, authorization"

    draft = get(aggregate, "health", "aggregate-draft")  # the event asks for application/health+json
    assert draft.payload["headers"]["content-type"] == "application/health+json"
    assert body(draft) == {
        "status": "fail",
        "checks": {
            "app": [{"componentType": "system", "status": "pass"}],
            "postgresql": [{"componentType": "datastore", "status": "pass"}],
            "bullmq": [{"componentType": "component", "status": "fail", "output": "connection refused"}],
        },
    }
    for anonymous in (plain, draft):
        for detail in (str(closed_port), "127.0.0.1", "parel-e2e-none", "python", "pid", "HealthFunction", "0.1.0"):
            assert detail not in anonymous.payload["body"], detail
        (line,) = check_lines(anonymous, "Health check unhealthy")
        assert line["component"] == "queue" and str(closed_port) in line["reason"]

    full_draft = body(get(aggregate, "health", "aggregate-draft-admin", **BEARER))
    assert full_draft["releaseId"] == "0.1.0" and "postgresql:connections" in full_draft["checks"]
    full = body(get(aggregate, "health", "aggregate-json-admin", accept="application/json", **BEARER))
    assert full["checks"]["app"]["runtime"]["functionName"] == "HealthFunction" and full["cached"] is True
    assert str(closed_port) in full["checks"]["queue"]["reason"]


# --------------------------------------------------------------------------- the trace of every check


def test_degraded_logs_a_warning_and_healthy_a_debug_line(start_function, database_url):
    degraded = start_function("HealthDbFunction", DATABASE_URL=database_url, DB_QUERY_THRESHOLD_MS="0")
    result = get(degraded, "health-db", "trace-degraded")
    assert result.payload["statusCode"] == 200 and body(result) == {"status": "degraded"}
    (line,) = check_lines(result, "Health check degraded")
    assert line["level"] == "WARNING" and line["correlation_id"] == "trace-degraded" and line["component"] == "db"
    assert line["reason"].startswith("query took ") and "(threshold 0ms)" in line["reason"]

    healthy = start_function("HealthDbFunction", DATABASE_URL=database_url, POWERTOOLS_LOG_LEVEL="DEBUG")
    (line,) = check_lines(get(healthy, "health-db", "trace-healthy"), "Health check healthy")
    assert line["level"] == "DEBUG" and line["correlation_id"] == "trace-healthy" and "reason" not in line
    quiet = start_function("HealthDbFunction", DATABASE_URL=database_url)  # INFO: a healthy check writes nothing
    assert not [line for line in log_lines(get(quiet, "health-db", "trace-quiet")) if "component" in line]


# --------------------------------------------------------------------------- caching


def last_query_start(database_url: str):
    """When the health function's backend last ran a statement (its checks are the only ones it runs)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query_start FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'parel-monitoring:HealthDbFunction'"
        ).fetchall()
    assert len(rows) == 1, rows
    return rows[0][0]


FLOOD_TTL_S = 10  # long enough for ten requests on a loaded 2-core machine


def test_a_flood_within_the_ttl_costs_one_check_then_the_next_request_checks_again(start_function, database_url):
    health_db = start_function(
        "HealthDbFunction", DATABASE_URL=database_url, ADMIN_API_TOKEN=TOKEN, HEALTH_CACHE_TTL_S=str(FLOOD_TTL_S)
    )
    first = get(health_db, "health-db", "cache-0", **BEARER)
    started = time.monotonic()
    assert body(first)["cached"] is False and first.payload["headers"]["age"] == "0"
    assert first.payload["headers"]["cache-control"] == f"private, max-age={FLOOD_TTL_S}"
    checked_at = last_query_start(database_url)

    flood = [get(health_db, "health-db", f"cache-{n}", **(BEARER if n % 2 else {})) for n in range(1, 11)]
    assert time.monotonic() - started < FLOOD_TTL_S, "the flood outlasted the TTL: the test proves nothing"
    assert last_query_start(database_url) == checked_at, "a request within the TTL ran a check"
    for reply in flood:
        assert reply.payload["statusCode"] == 200 and 0 <= int(reply.payload["headers"]["age"]) <= FLOOD_TTL_S
    assert all(body(reply)["cached"] is True for reply in flood[::2])

    time.sleep(max(0.0, FLOOD_TTL_S + 0.1 - (time.monotonic() - started)))
    again = get(health_db, "health-db", "cache-after", **BEARER)
    assert body(again)["cached"] is False and again.payload["headers"]["age"] == "0"
    assert last_query_start(database_url) > checked_at


def test_ttl_zero_checks_every_request_and_forbids_storing(start_function, database_url):
    health_db = start_function("HealthDbFunction", DATABASE_URL=database_url, HEALTH_CACHE_TTL_S="0")
    first = get(health_db, "health-db", "no-cache-1")
    checked_at = last_query_start(database_url)
    second = get(health_db, "health-db", "no-cache-2")
    assert last_query_start(database_url) > checked_at
    for reply in (first, second):
        assert reply.payload["headers"]["cache-control"] == "no-store" and "age" not in reply.payload["headers"]


def test_queue_counts_are_reused_within_the_ttl(start_function, prefix):
    run_scenario("populate", prefix, HP, waiting=2)
    health_queue = start_function(
        "HealthQueueFunction", REDIS_URL=REDIS_URL, QUEUE_NAMES=HP, BULLMQ_PREFIX=prefix, ADMIN_API_TOKEN=TOKEN,
        HEALTH_CACHE_TTL_S="60",
    )  # fmt: skip
    first = body(get(health_queue, "health-queue", "queue-cache-1", **BEARER))
    run_scenario("populate", prefix, HP, waiting=58)  # lag 60 would be degraded
    second = body(get(health_queue, "health-queue", "queue-cache-2", **BEARER))
    assert first["thresholds"]["highPriorityLag"]["current"] == 2 and first["cached"] is False
    assert second["thresholds"]["highPriorityLag"]["current"] == 2 and second["cached"] is True


def test_the_sweep_never_uses_a_cached_result_and_logs_its_failures(start_function, database_url, prefix):
    run_scenario("populate", prefix, HP, waiting=2)
    sweep = start_function(
        "MonitorFunction", DATABASE_URL=database_url, REDIS_URL=REDIS_URL, QUEUE_NAMES=HP, BULLMQ_PREFIX=prefix,
        HIGH_PRIORITY_QUEUE=HP, HEALTH_CACHE_TTL_S="300",  # not the sweep's setting: it must change nothing
    )  # fmt: skip
    first = sweep.invoke(load_event("monitor-schedule"))
    run_scenario("populate", prefix, HP, waiting=58)
    second = sweep.invoke(load_event("monitor-schedule"))
    assert first.payload["queue"] == "healthy" and second.payload["queue"] == "degraded"
    (line,) = check_lines(second, "Health check degraded")
    assert line["level"] == "WARNING" and line["component"] == "queue" and "high-priority lag 60" in line["reason"]
    assert line["correlation_id"] == load_event("monitor-schedule")["id"]
