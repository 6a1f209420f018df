"""GET /api/health/app through the Lambda Runtime Interface Emulator."""

import gzip
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

from events_loader import load_event
from polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
# The figures are details: these tests read them with HEALTH_SHOW_DETAILS=always (anonymous callers see the
# status only, see test_health_details_e2e.py), and without caching where each invocation's own figures matter.
DETAILS = {"HEALTH_SHOW_DETAILS": "always"}
FRESH = {**DETAILS, "HEALTH_CACHE_TTL_S": "0"}


def body(invocation):
    return json.loads(invocation.payload["body"])


def test_healthy_with_every_seed_field(start_function):
    app = start_function("HealthAppFunction", **DETAILS)
    result = app.invoke(load_event("health-app"))
    assert result.payload["statusCode"] == 200
    headers = result.payload["headers"]
    assert headers["content-type"] == "application/json" and headers["cache-control"] == "public, max-age=5"
    assert headers["x-correlation-id"] == "demo-app-0001"
    health = body(result)
    assert health["status"] == "healthy"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", health["timestamp"])
    assert set(health["uptime"]) == {"ms", "seconds", "minutes", "hours"}
    assert set(health["memory"]["process"]) == {"rss", "heapUsed"}
    assert {"total", "free", "usagePercent"} <= set(health["memory"]["system"])
    assert health["memory"]["system"]["total"] == "0.25 GB"  # MemorySize 256 from the template
    runtime = health["runtime"]
    assert runtime["python"].startswith("3.13.") and runtime["functionName"] == "HealthAppFunction"
    assert runtime["memoryLimitMB"] == 256 and runtime["coldStart"] is True
    assert result.init_duration_ms is not None and result.report.startswith("REPORT RequestId:")


def test_warm_invocation_reuses_the_environment(start_function):
    app = start_function("HealthAppFunction", **FRESH)
    first, second = app.invoke(load_event("health-app")), app.invoke(load_event("health-app"))
    assert body(first)["runtime"]["coldStart"] is True and body(second)["runtime"]["coldStart"] is False
    assert body(first)["runtime"]["pid"] == body(second)["runtime"]["pid"]
    assert body(second)["uptime"]["ms"] >= body(first)["uptime"]["ms"]
    assert second.init_duration_ms is None


def test_503_when_the_threshold_is_below_current_use(start_function):
    result = start_function("HealthAppFunction", MEMORY_THRESHOLD_PCT="1", **DETAILS).invoke(load_event("health-app"))
    assert result.payload["statusCode"] == 503
    assert body(result)["status"] == "unhealthy"
    assert float(body(result)["memory"]["system"]["usagePercent"]) > 1


def test_new_correlation_id_when_absent_or_malformed(start_function):
    app = start_function("HealthAppFunction")
    for header in (None, "bad id\nwith newline", "z" * 10_000):
        result = app.invoke(load_event("health-app", headers={"x-correlation-id": header}))
        echoed = result.payload["headers"]["x-correlation-id"]
        assert uuid.UUID(echoed).version == 4
    logged = [json.loads(line) for line in result.logs if line.startswith("{")]
    assert all(line.get("correlation_id") == echoed for line in logged)


def test_malformed_setting_is_a_500_naming_the_variable(start_function):
    result = start_function("HealthAppFunction", MEMORY_THRESHOLD_PCT="ninety").invoke(load_event("health-app"))
    assert result.payload["statusCode"] == 500
    assert body(result)["error"] == "configuration" and body(result)["variable"] == "MEMORY_THRESHOLD_PCT"
    assert "ninety" not in result.payload["body"]


def test_sentry_works_inside_the_lambda_runtime(start_function, httpserver):
    """With a DSN, Sentry (AwsLambdaIntegration) runs in the real runtime client and reports to the sink."""
    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_json({"id": "ok"})
    dsn = f"http://feedfacefeedfacefeedfacefeedface@127.0.0.1:{httpserver.port}/1"
    app = start_function("HealthAppFunction", SENTRY_DSN=dsn, MEMORY_THRESHOLD_PCT="bad")
    result = app.invoke(load_event("health-app"))
    assert result.payload["statusCode"] == 500
    wait_until(lambda: httpserver.log, "the SDK's transport thread to send the event")  # in the background
    bodies = []
    for request, _ in httpserver.log:
        data = request.get_data()
        bodies.append(gzip.decompress(data) if request.headers.get("Content-Encoding") == "gzip" else data)
    assert any(b"Configuration error: MEMORY_THRESHOLD_PCT" in raw for raw in bodies)


def test_cli_prints_response_and_report_like_sam_local_invoke(built):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "lambda_emulator.py"), "invoke", "HealthAppFunction",
         "-e", str(ROOT / "events" / "health-app.json"), "--env-vars", str(ROOT / "env.json")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout)["statusCode"] == 200
    assert re.search(r"^REPORT RequestId: \S+\t.*Duration: [0-9.]+ ms", result.stderr, re.M)
    assert "INIT REPORT Init Duration:" in result.stderr
