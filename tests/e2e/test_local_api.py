"""`make api` (tools/local_api.py): the template's HttpApi over real HTTP, the built functions under the emulator."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from samcli.yamlhelper import yaml_parse

from bullmq_scenario import cleanup, run_scenario, unique_prefix
from local_api import MAX_BODY_BYTES, LocalApi
from nextauth_schema import create_prisma_schema

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-local-api-token-5d1e7b"
REDIS_URL = "redis://127.0.0.1:6379/0"
QUEUES = ("high-priority", "default")


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def send(url: str, method: str, path: str, headers: list[tuple[str, str]] = (), body: bytes | None = None) -> Reply:
    """One request over a real connection (repeated headers allowed)."""
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


# --------------------------------------------------------------------------- the bundle's API


@pytest.fixture
def queue_prefix():
    prefix = unique_prefix("local-api")
    yield prefix
    cleanup(prefix)


@pytest.fixture
def api(built, database_url, queue_prefix):
    services = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "QUEUE_NAMES": ",".join(QUEUES),
        "BULLMQ_PREFIX": queue_prefix,
        "ADMIN_API_TOKEN": TOKEN,
        "ALERT_TOPIC_ARN": "",
    }
    with LocalApi(built, extra_env=services) as running:
        yield running


def test_routes_are_every_http_api_event_of_the_template(built):
    template = yaml_parse((ROOT / "template.yaml").read_text())
    events = [
        (event["Properties"]["Method"], event["Properties"]["Path"], logical_id)
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    ]
    routes = LocalApi(built).routes
    assert sorted((method, path, function) for method, path, function, _ in routes) == sorted(events)
    authorizers = {path: authorizer for _, path, _, authorizer in routes}
    assert {path: authorizers[path] for path in authorizers if path.startswith(("/api/admin/", "/api/health"))} == {
        "/api/health/app": None,  # Authorizer: NONE
        "/api/health/db": None,
        "/api/health/queue": None,
        "/api/health": None,
        "/api/health/uptime": None,
        "/api/admin/alerts": "AdminAuthorizer",
        "/api/admin/uptime": "AdminAuthorizer",
        "/api/admin/heal": "AdminAuthorizer",  # Auth: AdminAuthorizer, also the DefaultAuthorizer
    }


def test_health_routes_answer_over_http_with_the_correlation_id(api, queue_prefix):
    for queue in QUEUES:  # queues that exist (a missing one is "degraded")
        run_scenario("populate", queue_prefix, queue, completed=2)
    for path in ("/api/health/app", "/api/health/db", "/api/health/queue", "/api/health"):
        correlation_id = f"local-api{path.replace('/', '-')}"
        reply = send(api.url, "GET", path, [("X-Correlation-Id", correlation_id)])
        assert reply.status == 200, (path, reply.body)
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.json()["status"] == "healthy"
        assert reply.headers["x-correlation-id"] == correlation_id
        assert len(reply.headers["apigw-requestid"]) == 16
    assert {"HealthAppFunction", "HealthDbFunction", "HealthQueueFunction", "HealthFunction"} == api.warm_functions


def test_a_correlation_id_is_generated_when_absent(api):
    reply = send(api.url, "GET", "/api/health/app")
    assert uuid.UUID(reply.headers["x-correlation-id"]).version == 4


def test_a_second_request_reuses_the_warm_environment(built):
    # The details (runtime) are for the admin token; the cache off (through the env-vars file, as sam local
    # passes it), so the second answer is the warm environment's own rather than the first one reused.
    env_vars = {"HealthAppFunction": {"HEALTH_CACHE_TTL_S": "0", "ADMIN_API_TOKEN": TOKEN}}
    with LocalApi(built, env_vars=env_vars, request_log=False) as api:
        replies = [send(api.url, "GET", "/api/health/app", [("Authorization", f"Bearer {TOKEN}")]) for _ in range(2)]
        assert api.environment_stats()["HealthAppFunction"]["started"] == 1
    first, second = (reply.json()["runtime"] for reply in replies)
    assert first["pid"] == second["pid"]
    assert (first["coldStart"], second["coldStart"]) == (True, False)
    assert replies[1].headers["cache-control"] == "no-store"


def test_admin_route_without_authorization_is_401_before_any_function_runs(api):
    reply = send(api.url, "POST", "/api/admin/heal?dryRun=true")
    assert (reply.status, reply.json()) == (401, {"message": "Unauthorized"})
    assert not api.warm_functions  # neither the authorizer nor the heal function started


def test_admin_route_with_a_wrong_token_is_403_without_the_heal_function(api):
    reply = send(api.url, "POST", "/api/admin/heal?dryRun=true", [("Authorization", "Bearer wrong-token")])
    assert (reply.status, reply.json()) == (403, {"message": "Forbidden"})
    assert api.warm_functions == {"AdminAuthorizerFunction"}


@pytest.fixture
def stale_session(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'a@example.com', now())""")
        conn.execute("""INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt")
                        VALUES ('old', 'u1', now() - interval '1 day', now())""")
    return database_url


def test_admin_route_with_the_token_reaches_the_heal_function(api, stale_session):
    authorization = [("Authorization", f"Bearer {TOKEN}")]
    dry_run = send(api.url, "POST", "/api/admin/heal?dryRun=true&routines=sessions", authorization)
    assert dry_run.status == 200, dry_run.body
    assert dry_run.json()["dryRun"] is True and dry_run.json()["staleSessions"] == 1
    bad_option = send(api.url, "POST", "/api/admin/heal?dryRun=maybe", authorization)
    assert bad_option.status == 400 and bad_option.json()["parameter"] == "dryRun"  # the function's own answer
    with psycopg.connect(stale_session) as conn:
        assert conn.execute('SELECT count(*) FROM "Session"').fetchone() == (1,)


def test_unknown_routes_are_404(api):
    for method, path in (("GET", "/api/nothing-here"), ("DELETE", "/api/health/app"), ("GET", "/api/health/app/x"),
                         ("TRACE", "/api/health/app"), ("QUERY", "/api/health")):  # fmt: skip
        reply = send(api.url, method, path)
        assert (reply.status, reply.json()) == (404, {"message": "Not Found"}), (method, path)
    assert not api.warm_functions


def db_backends(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            ("parel-monitoring:HealthDbFunction",),
        )
        return {pid for (pid,) in rows}


def test_a_flood_beyond_the_reserved_concurrency_is_throttled_and_environments_stay_bounded(
    built, database_url, queue_prefix
):
    """Like Lambda: at most ReservedConcurrentExecutions environments (here 3, a parameter override), 429 beyond."""
    services = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "QUEUE_NAMES": ",".join(QUEUES),
                "BULLMQ_PREFIX": queue_prefix, "ALERT_TOPIC_ARN": ""}  # fmt: skip
    overrides = {"PublicHealthReservedConcurrency": "3"}
    with LocalApi(built, extra_env=services, parameter_overrides=overrides, request_log=False) as api:
        assert api.limits["HealthDbFunction"] == 3 and api.reserved["HealthDbFunction"] == 3
        barrier = threading.Barrier(24)

        def request(_: int) -> Reply:
            barrier.wait(timeout=30)
            return send(api.url, "GET", "/api/health/db")

        with ThreadPoolExecutor(24) as pool:  # all at once, while the first environments are still starting
            replies = list(pool.map(request, range(24)))
        backends = db_backends(database_url)
        stats = api.environment_stats()["HealthDbFunction"]
        sequential = [send(api.url, "GET", "/api/health/db") for _ in range(5)]  # the warm ones serve these
        after = api.environment_stats()["HealthDbFunction"]
    statuses = [reply.status for reply in replies]
    assert set(statuses) == {200, 429}, statuses
    throttled = [reply for reply in replies if reply.status == 429]
    assert all(reply.json() == {"message": "Too Many Requests"} for reply in throttled)
    assert all(len(reply.headers["apigw-requestid"]) == 16 for reply in throttled)
    assert stats["throttled"] == len(throttled) and 1 <= stats["peak"] <= 3 and stats["started"] <= 3
    assert 1 <= len(backends) <= 3  # one PostgreSQL connection per environment, never more
    assert [reply.status for reply in sequential] == [200] * 5
    assert after["started"] == stats["started"] and after["throttled"] == stats["throttled"]


def test_cli_prints_the_routes_serves_them_and_never_logs_the_token(built):
    command = [sys.executable, str(ROOT / "tools" / "local_api.py"), "--port=0", f"--env-vars={ROOT / 'env.json'}",
               "--parameter-overrides", "PublicHealthReservedConcurrency=3", "--max-environments=4"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = []
        while not (line := process.stdout.readline()).startswith("Serving on "):
            assert line, f"the CLI exited: {process.stderr.read()}"
            printed.append(line)
        url = line.split()[2]
        assert any(route.split()[:2] == ["POST", "/api/admin/heal"] and "AdminAuthorizer" in route for route in printed)
        health_db = next(route for route in printed if route.split()[:2] == ["GET", "/api/health/db"])
        assert health_db.rstrip().endswith("(≤ 3 environments, reserved)"), health_db  # the override applied
        assert send(url, "GET", "/api/health/app").status == 200
        assert send(url, "POST", "/api/admin/alerts", [("Authorization", "Bearer cli-secret-token")]).status == 403
    finally:
        process.send_signal(signal.SIGINT)
        _, logged = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "GET /api/health/app 200" in logged and "POST /api/admin/alerts 403" in logged
    assert "cli-secret-token" not in logged


# --------------------------------------------------------------------------- the gateway's mapping, on an echo function

ECHO = """
import base64, json, os, time

def handler(event, context):
    reply = (event.get("queryStringParameters") or {}).get("reply")
    if reply == "sleep":
        time.sleep(1)
        return {"statusCode": 200, "headers": {"x-pid": str(os.getpid())}, "body": ""}
    if reply == "raise":
        raise RuntimeError("boom")
    if reply == "plain":
        return {"plain": True}
    if reply == "binary":
        body = base64.b64encode(b"\\x89PNG\\x00").decode()
        return {"statusCode": 201, "headers": {"content-type": "image/png"}, "body": body, "isBase64Encoded": True,
                "multiValueHeaders": {"x-multi": ["1", "2"]}, "cookies": ["a=1; Path=/", "b=2"]}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
"""
GATE = """
def handler(event, context):
    return {"isAuthorized": event["identitySource"] == ["Bearer good"], "context": {"user": "tester"}}
"""


def http_api_event(method: str, path: str, authorizer: str | None = None) -> dict:
    properties = {"ApiId": {"Ref": "Api"}, "Method": method, "Path": path}
    return {
        "Type": "HttpApi",
        "Properties": {**properties, **({"Auth": {"Authorizer": authorizer}} if authorizer else {})},
    }


def function(code_uri: str, events: dict | None = None, reserved: object = None) -> dict:
    properties = {"CodeUri": code_uri, "Handler": "app.handler", "Events": events or {}}
    if reserved is not None:
        properties["ReservedConcurrentExecutions"] = reserved
    return {"Type": "AWS::Serverless::Function", "Properties": properties}


ECHO_TEMPLATE = {
    "Parameters": {"EchoConcurrency": {"Type": "String", "Default": "2"}},
    "Conditions": {"EchoReserved": {"Fn::Not": [{"Fn::Equals": [{"Ref": "EchoConcurrency"}, ""]}]}},
    "Resources": {
        "Api": {
            "Type": "AWS::Serverless::HttpApi",
            "Properties": {
                "Auth": {
                    "DefaultAuthorizer": "Gate",
                    "Authorizers": {
                        "Gate": {
                            "FunctionArn": {"Fn::GetAtt": ["GateFunction", "Arn"]},
                            "AuthorizerPayloadFormatVersion": "2.0",
                            "EnableSimpleResponses": True,
                            "Identity": {"Headers": ["Authorization"]},
                        }
                    },
                }
            },
        },
        "EchoFunction": function(
            "echo",
            {
                "Item": http_api_event("ANY", "/items/{id}", "NONE"),
                "Files": http_api_event("GET", "/files/{path+}", "NONE"),
                "Private": http_api_event("POST", "/private"),  # the DefaultAuthorizer
            },
            # Reserved unless the parameter is empty, as a template may write it.
            {"Fn::If": ["EchoReserved", {"Ref": "EchoConcurrency"}, {"Ref": "AWS::NoValue"}]},
        ),
        "GateFunction": function("gate"),  # unreserved
    },
}


@pytest.fixture(scope="module")
def echo_api(built, tmp_path_factory):
    """A built template of our own: an echo function on three routes, one behind a Lambda authorizer."""
    build_dir = tmp_path_factory.mktemp("echo-build")
    for name, code in (("echo", ECHO), ("gate", GATE)):
        (build_dir / name).mkdir()
        (build_dir / name / "app.py").write_text(code)
    (build_dir / "template.yaml").write_text(json.dumps(ECHO_TEMPLATE))  # JSON is YAML
    with LocalApi(build_dir, max_environments=4) as running:
        yield running


def test_the_environment_limit_is_the_resolved_reserved_concurrency_else_max_environments(echo_api):
    build_dir = echo_api.build_dir
    assert echo_api.limits == {"EchoFunction": 2, "GateFunction": 4}
    assert echo_api.reserved == {"EchoFunction": 2, "GateFunction": None}
    assert LocalApi(build_dir, parameter_overrides={"EchoConcurrency": "5"}).limits["EchoFunction"] == 5
    assert LocalApi(build_dir, env_vars={"Parameters": {"EchoConcurrency": "0"}}).limits["EchoFunction"] == 0
    unreserved = LocalApi(build_dir, parameter_overrides={"EchoConcurrency": ""}, max_environments=7)
    assert unreserved.limits == {"EchoFunction": 7, "GateFunction": 7}


def test_concurrent_invocations_get_their_own_environments_up_to_the_limit_then_429(echo_api):
    before = echo_api.environment_stats()["EchoFunction"]
    with ThreadPoolExecutor(6) as pool:  # each invocation takes 1 s: two run, four are throttled at once
        replies = list(pool.map(lambda _: send(echo_api.url, "GET", "/items/1?reply=sleep"), range(6)))
    ok = [reply for reply in replies if reply.status == 200]
    throttled = [reply for reply in replies if reply.status == 429]
    assert (len(ok), len(throttled)) == (2, 4), [reply.status for reply in replies]
    assert {reply.json()["message"] for reply in throttled} == {"Too Many Requests"}
    assert len({reply.headers["x-pid"] for reply in ok}) == 2  # two execution environments
    stats = echo_api.environment_stats()["EchoFunction"]
    assert stats["peak"] == 2 and stats["environments"] == 2 and stats["started"] <= 2
    assert stats["throttled"] == before["throttled"] + 4
    again = send(echo_api.url, "GET", "/items/1?reply=sleep")  # a warm one, no new environment
    assert again.status == 200 and again.headers["x-pid"] in {reply.headers["x-pid"] for reply in ok}
    assert echo_api.environment_stats()["EchoFunction"]["started"] == stats["started"]


def test_with_a_wait_requests_queue_for_a_busy_environment_instead_of_429(echo_api):
    overrides = {"EchoConcurrency": "1"}
    with LocalApi(echo_api.build_dir, parameter_overrides=overrides, wait_for_environment_s=30) as api:
        started = time.monotonic()
        with ThreadPoolExecutor(3) as pool:  # 1 s each, one environment: one after the other
            replies = list(pool.map(lambda _: send(api.url, "GET", "/items/1?reply=sleep"), range(3)))
        elapsed = time.monotonic() - started
        stats = api.environment_stats()["EchoFunction"]
    assert [reply.status for reply in replies] == [200, 200, 200]
    assert len({reply.headers["x-pid"] for reply in replies}) == 1 and stats["started"] == 1
    assert stats["throttled"] == 0 and elapsed >= 3


def test_a_reserved_concurrency_of_zero_throttles_every_request(echo_api):
    with LocalApi(echo_api.build_dir, parameter_overrides={"EchoConcurrency": "0"}) as api:
        reply = send(api.url, "GET", "/items/1")
        assert (reply.status, reply.json()) == (429, {"message": "Too Many Requests"})
        assert not api.warm_functions


def test_the_event_carries_the_request_as_payload_2_0(echo_api):
    headers = [("X-Multi", "1"), ("X-Multi", "2"), ("Cookie", "a=1; b=2"), ("User-Agent", "e2e/1.0")]
    reply = send(echo_api.url, "GET", "/items/42?tag=a&tag=b&empty=", headers)
    event = reply.json()
    assert (event["version"], event["routeKey"], event["rawPath"]) == ("2.0", "ANY /items/{id}", "/items/42")
    assert event["rawQueryString"] == "tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"id": "42"}
    assert event["headers"]["x-multi"] == "1,2" and "cookie" not in event["headers"]
    assert event["cookies"] == ["a=1", "b=2"]
    assert "body" not in event and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {"method": "GET", "path": "/items/42", "protocol": "HTTP/1.1",
                               "sourceIp": "127.0.0.1", "userAgent": "e2e/1.0"}  # fmt: skip
    assert (context["stage"], context["routeKey"], context["apiId"]) == ("$default", "ANY /items/{id}", "local")
    assert (context["domainName"], context["accountId"]) == ("127.0.0.1", "123456789012")
    assert context["requestId"] == reply.headers["apigw-requestid"]
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60 and "authorizer" not in context
    assert "queryStringParameters" not in send(echo_api.url, "GET", "/items/1").json()


def test_text_bodies_stay_text_and_binary_ones_are_base64(echo_api):
    text = send(echo_api.url, "PUT", "/items/7", [("Content-Type", "application/json")], b'{"name": "\xc3\xa9"}').json()
    assert (text["body"], text["isBase64Encoded"]) == ('{"name": "\u00e9"}', False)
    binary = send(echo_api.url, "POST", "/items/7", [("Content-Type", "application/octet-stream")], b"\x00\xff").json()
    assert (base64.b64decode(binary["body"]), binary["isBase64Encoded"]) == (b"\x00\xff", True)


def test_greedy_path_parameters_and_methods(echo_api):
    assert send(echo_api.url, "GET", "/files/a/b/c.txt").json()["pathParameters"] == {"path": "a/b/c.txt"}
    assert send(echo_api.url, "POST", "/files/a").status == 404


def test_the_authorizer_decides_and_its_context_reaches_the_function(echo_api):
    assert send(echo_api.url, "POST", "/private").status == 401
    assert send(echo_api.url, "POST", "/private", [("Authorization", "Bearer bad")]).status == 403
    allowed = send(echo_api.url, "POST", "/private", [("Authorization", "Bearer good")])
    assert allowed.status == 200 and allowed.json()["requestContext"]["authorizer"] == {"lambda": {"user": "tester"}}


def test_responses_map_back_to_http(echo_api):
    binary = send(echo_api.url, "GET", "/items/1?reply=binary")
    assert (binary.status, binary.headers["content-type"], binary.body) == (201, "image/png", b"\x89PNG\x00")
    assert binary.headers.get_all("x-multi") == ["1", "2"]
    assert binary.headers.get_all("set-cookie") == ["a=1; Path=/", "b=2"]
    plain = send(echo_api.url, "GET", "/items/1?reply=plain")
    assert (plain.status, plain.headers["content-type"], plain.json()) == (200, "application/json", {"plain": True})
    failed = send(echo_api.url, "GET", "/items/1?reply=raise")
    assert (failed.status, failed.json()) == (500, {"message": "Internal Server Error"})


def test_a_body_over_10_mb_is_413_unread(echo_api):
    connection = http.client.HTTPConnection(echo_api.url.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/items/1")
    connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())) == (413, {"message": "Request Entity Too Large"})
    connection.close()
