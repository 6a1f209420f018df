"""No configured secret leaks: a representative run of every function, scanned for every secret value.

One module-scoped run, against real services that really check their credentials:
* a password-protected PostgreSQL (the ``password_protected_postgres`` fixture) holding NextAuth rot,
* a throwaway ``redis-server --requirepass`` started and stopped here, with real BullMQ queues in it,
* Slack and Discord webhooks on local pytest-httpserver endpoints whose paths carry a secret part,
* a Sentry DSN pointing at a local ingest sink (pytest-httpserver) whose envelopes are read back,
* an admin token.

Every function runs as ``make build`` built it, under the Lambda emulator (like tests/e2e's
``start_function``), on success and failure paths: wrong passwords, services down, unknown tables,
revoked and failing webhooks, rejected requests, configuration errors, unhandled errors. A second,
in-process run (its own interpreter: Sentry is initialised once per process) raises an error whose text,
local variables, context and breadcrumbs hold every secret.

Then every captured log line, response body, Sentry envelope item and outgoing webhook payload is
searched for each secret value (and the secret parts of the URLs). The Sentry envelope *header* carries
the DSN's public key by protocol (it is how Sentry authenticates the sender): only the events are scanned.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql
from pytest_httpserver import HTTPServer

from bullmq_scenario import run_scenario, wait_locks_expired
from events_loader import load_event
from lambda_emulator import BUILD_DIR, RUNTIME_DIR, Emulator, load_function
from nextauth_schema import create_prisma_schema
from polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
DB_PASSWORD = "right-Pa55word"  # what the password_protected_postgres fixture's server checks
QUEUE = "mail"


# --------------------------------------------------------------------------- services


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def password_redis(password: str):
    """A throwaway ``redis-server --requirepass``; its URL (user ``default``), stopped afterwards."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server not found (apt-get install redis-server)"
    port, work_dir = _free_port(), tempfile.mkdtemp(prefix="parel-redis-secret-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "",
         "--appendonly", "no", "--dir", work_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://default:{password}@127.0.0.1:{port}/0"
    try:

        def answers() -> bool:
            try:
                return redis.Redis.from_url(url, socket_timeout=1).ping()
            except redis.ConnectionError:
                return False

        wait_until(answers, "redis-server --requirepass to answer")
        with pytest.raises(redis.AuthenticationError):  # it really checks the password
            redis.Redis.from_url(f"redis://default:not-{password}@127.0.0.1:{port}/0", socket_timeout=1).ping()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(work_dir, ignore_errors=True)


@contextlib.contextmanager
def nextauth_database(server_url: str):
    """A database of its own on the password-checking server: the Prisma schema with rot to heal."""
    name = f"parel_secrets_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            create_prisma_schema(conn, foreign_keys=False)
            conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'a@example.com', now())""")
            conn.execute(
                """INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt") VALUES
                   ('old', 'u1', now() - interval '1 day', now()), ('live', 'u1', now() + interval '1 day', now()),
                   ('orphan', 'deleted-user', now() + interval '1 day', now())"""
            )
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def http_server():
    server = HTTPServer(host="127.0.0.1")
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


def _decoded(request) -> bytes:
    body = request.get_data()
    return gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body


def parse_envelope(raw: bytes) -> tuple[dict, list[dict]]:
    """A Sentry envelope: its header, then its items ``{"type", "payload"}``."""
    lines = raw.split(b"\n")
    header, items, index = json.loads(lines[0]), [], 1
    while index < len(lines) and lines[index].strip():
        item_header = json.loads(lines[index])
        if item_header.get("length") is not None:
            rest = b"\n".join(lines[index + 1 :])
            payload = rest[: item_header["length"]]
            index += 1 + payload.count(b"\n") + 1
        else:
            payload = lines[index + 1]
            index += 2
        try:
            parsed: Any = json.loads(payload)
        except ValueError:
            parsed = payload.decode("utf-8", "replace")
        items.append({"type": item_header.get("type"), "payload": parsed})
    return header, items


# --------------------------------------------------------------------------- the run


@dataclass
class Capture:
    secrets: dict[str, str]
    logs: list[tuple[str, str]] = field(default_factory=list)  # (run label, line)
    responses: list[tuple[str, str]] = field(default_factory=list)  # (run label, raw payload)
    statuses: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    sentry_items: list[dict] = field(default_factory=list)
    sentry_headers: list[dict] = field(default_factory=list)
    webhook_bodies: list[tuple[str, str]] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)
    healed_sessions: set[str] = field(default_factory=set)
    # every emulator invocation in order: (run label, its REPORT line, its log lines), to prove all were scanned
    invocations: list[tuple[str, str | None, list[str]]] = field(default_factory=list)


IN_PROCESS_SCENARIO = r"""
import json, sys
from parel_monitoring import error_tracker
from parel_monitoring.error_tracker import ErrorSeverity
from parel_monitoring.observability import lambda_handler
from parel_monitoring.settings import SECRET_SETTINGS, secret


class Context:
    function_name = "SecretLeakScenario"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:SecretLeakScenario"
    aws_request_id = "req-secret-leaks"


@lambda_handler(lambda: {name: secret(name) for name in SECRET_SETTINGS})
def handler(event, context, settings):
    values = dict(settings)  # a local variable holding every secret (Sentry sends frame locals)
    joined = " | ".join(values.values())
    error_tracker.set_user_context("user-7", "ops@example.com", "ops")
    error_tracker.add_breadcrumb("connecting with " + joined, "setup", ErrorSeverity.INFO)
    handler.logger.info("Settings loaded", {"settings": values, "summary": joined})
    error_tracker.capture_message("Secrets in the context", {"userId": "user-7", "metadata": values,
                                                            "detail": joined}, ErrorSeverity.WARNING)
    try:
        raise ConnectionError("cannot connect with " + joined)
    except ConnectionError as exc:
        error_tracker.capture_error(exc, {"action": "secret-scenario", "metadata": {"summary": joined}})
    raise RuntimeError("failed with " + joined)


response = handler(json.loads(sys.argv[1]), Context())
error_tracker.flush(5)
print(json.dumps(response))
"""


@pytest.fixture(scope="module")
def capture(password_protected_postgres):  # one scripted run, read top to bottom
    assert (BUILD_DIR / "template.yaml").exists(), f"{BUILD_DIR} missing: run `make build`"
    assert (RUNTIME_DIR / "awslambdaric").exists(), f"{RUNTIME_DIR} missing: run `make runtime`"
    assert f":{DB_PASSWORD}@" in password_protected_postgres
    tag = uuid.uuid4().hex[:8]
    token = f"adm-token-{uuid.uuid4().hex}"
    redis_password = f"redis-Pa55-{uuid.uuid4().hex[:16]}"
    slack_secret, discord_secret = f"slackSecret{uuid.uuid4().hex[:12]}", f"discordSecret{uuid.uuid4().hex[:12]}"
    dsn_key = uuid.uuid4().hex
    wrong_db_password = f"wrong-Pa55-{tag}"
    wrong_redis_password = f"stale-Redis-Pa55-{uuid.uuid4().hex[:16]}"  # e.g. from before a rotation

    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(password_redis(redis_password))
        db_url = stack.enter_context(nextauth_database(password_protected_postgres))
        sentry, slack, discord = (stack.enter_context(http_server()) for _ in range(3))
        sentry.expect_request("/api/1/envelope/", method="POST").respond_with_json({"id": "ok"})
        slack.expect_request(f"/services/T0/B0/{slack_secret}", method="POST").respond_with_data("ok")
        slack.expect_request(f"/services/T0/B0/{slack_secret}-revoked", method="POST").respond_with_data(
            "no_service", status=404
        )
        discord.expect_request(f"/api/webhooks/0/{discord_secret}", method="POST").respond_with_data("", status=204)
        discord.expect_request(f"/api/webhooks/0/{discord_secret}-down", method="POST").respond_with_json(
            {"message": "Service unavailable"}, status=503
        )
        slack_url = slack.url_for(f"/services/T0/B0/{slack_secret}")
        discord_url = discord.url_for(f"/api/webhooks/0/{discord_secret}")
        dsn = f"http://{dsn_key}@127.0.0.1:{sentry.port}/1"
        wrong_redis_url = redis_url.replace(redis_password, wrong_redis_password)
        closed = _free_port()
        secrets = {
            "DB password": DB_PASSWORD,
            "DB password (wrong one)": wrong_db_password,
            "DATABASE_URL": db_url,
            "Redis password": redis_password,
            "Redis password (wrong one)": wrong_redis_password,
            "REDIS_URL": redis_url,
            "admin token": token,
            "Slack webhook URL": slack_url,
            "Slack webhook secret part": slack_secret,
            "Discord webhook URL": discord_url,
            "Discord webhook secret part": discord_secret,
            "Sentry DSN": dsn,
            "Sentry DSN key": dsn_key,
        }
        result = Capture(secrets)

        # Queues in the password-protected Redis: history, waiting jobs, and a dead worker's stuck job.
        prefix = f"secrets-{tag}"
        run_scenario("populate", prefix, QUEUE, redis_url=redis_url, completed=30, failed=1, waiting=2)
        crashed = run_scenario("crash-active", prefix, "stuck", redis_url=redis_url, count=1, lock_duration=300,
                               kill="SIGKILL", allowed_returncodes=(-9,))  # fmt: skip
        wait_locks_expired(redis.Redis.from_url(redis_url), prefix, "stuck", crashed["ids"])

        common = {
            "STAGE": "prod",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",  # the most a deployment could log
            "SENTRY_DSN": dsn,
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "QUEUE_NAMES": f"{QUEUE},stuck,default",
            "HIGH_PRIORITY_QUEUE": QUEUE,
            "BULLMQ_PREFIX": prefix,
            "ADMIN_API_TOKEN": token,
            "SLACK_WEBHOOK_URL": slack_url,
            "DISCORD_WEBHOOK_URL": discord_url,
            "ALERT_TOPIC_ARN": "",
            "ALERT_MAX_ATTEMPTS": "2",
            "ALERT_DEDUP_WINDOW_S": "0",
            "STUCK_JOB_THRESHOLD_MS": "0",
            # The run takes minutes and nothing consumes QUEUE's waiting jobs: past the issue-15 grace they would
            # make the queue check unhealthy (503), and this test reads the healthy answers' details.
            "QUEUE_NO_WORKER_GRACE_S": "86400",
            "QUEUE_AGE_WARNING_S": "86400",
            "QUEUE_AGE_CRITICAL_S": "86400",
        }
        emulators: list[tuple[str, Emulator]] = []

        def start(logical_id: str, label: str, **env: str) -> Emulator:
            # keep_transcript: every line the environment writes (each invoke clears ``emulator.lines``)
            emulator = Emulator(
                load_function(logical_id, BUILD_DIR), extra_env={**common, **env}, keep_transcript=True
            ).start()
            emulators.append((label, emulator))
            result.functions.add(logical_id)
            return emulator

        def invoke(emulator: Emulator, label: str, event: Any) -> Any:
            invocation = emulator.invoke(event)
            result.invocations.append((label, invocation.report, invocation.logs))
            result.responses.append((label, invocation.raw.decode("utf-8", "replace")))
            payload = invocation.payload
            outcome = payload.get("statusCode") if isinstance(payload, dict) else None
            if isinstance(payload, dict) and outcome is None:
                outcome = payload.get("errorType") or (payload.get("context") or {}).get("status") or "ok"
            result.statuses[label].append(outcome)
            return payload

        bearer = {"authorization": f"Bearer {token}"}
        try:
            # Health routes: success, wrong passwords, services down, a database that does not exist.
            app = start("HealthAppFunction", "health-app")
            invoke(app, "health-app", load_event("health-app", headers=bearer))
            db = start("HealthDbFunction", "health-db")
            for _ in range(2):
                invoke(db, "health-db", load_event("health-db"))
            wrong_db_url = db_url.replace(f":{DB_PASSWORD}@", f":{wrong_db_password}@")
            invoke(start("HealthDbFunction", "health-db wrong password", DATABASE_URL=wrong_db_url),
                   "health-db wrong password", load_event("health-db"))  # fmt: skip
            missing_db = db_url.rsplit("/", 1)[0] + "/no_such_database"
            invoke(start("HealthDbFunction", "health-db unknown database", DATABASE_URL=missing_db),
                   "health-db unknown database", load_event("health-db"))  # fmt: skip
            down_db = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{closed}/app"
            invoke(start("HealthDbFunction", "health-db down", DATABASE_URL=down_db), "health-db down",
                   load_event("health-db"))  # fmt: skip
            queue = start("HealthQueueFunction", "health-queue")
            invoke(queue, "health-queue", load_event("health-queue"))
            invoke(start("HealthQueueFunction", "health-queue wrong password", REDIS_URL=wrong_redis_url),
                   "health-queue wrong password", load_event("health-queue"))  # fmt: skip
            down_redis = f"redis://:{redis_password}@127.0.0.1:{closed}/0"
            invoke(start("HealthQueueFunction", "health-queue down", REDIS_URL=down_redis), "health-queue down",
                   load_event("health-queue"))  # fmt: skip
            health = start("HealthFunction", "health")
            invoke(health, "health", load_event("health"))
            invoke(health, "health", load_event("health", headers={"accept": "application/json"}))
            invoke(start("HealthFunction", "health all down", DATABASE_URL=wrong_db_url, REDIS_URL=wrong_redis_url),
                   "health all down", load_event("health"))  # fmt: skip
            # The same failures as the admin token sees them: the full (scrubbed) reasons, every figure.
            for logical_id, event_name, env in (
                ("HealthDbFunction", "health-db", {"DATABASE_URL": wrong_db_url}),
                ("HealthQueueFunction", "health-queue", {"REDIS_URL": wrong_redis_url}),
                ("HealthFunction", "health", {"DATABASE_URL": wrong_db_url, "REDIS_URL": wrong_redis_url}),
                ("HealthFunction", "health", {}),
            ):
                label = f"{event_name} admin" + (" down" if env else "")
                admin = start(logical_id, label, **env)
                for accept in ("application/json", "application/health+json"):
                    invoke(admin, label, load_event(event_name, headers={**bearer, "accept": accept}))

            # Configuration errors at init (500 configuration, a Sentry message); one malformed setting
            # holds a secret as its value.
            invoke(start("HealthQueueFunction", "config error", QUEUE_NAMES="bad:name"), "config error",
                   load_event("health-queue"))  # fmt: skip
            invoke(start("HealthDbFunction", "config error with a secret value", DB_STATEMENT_TIMEOUT_MS=db_url),
                   "config error with a secret value", load_event("health-db"))  # fmt: skip

            # Self-healing: dry run, real run, schedule, a rejected query; then failing routines
            # (unknown session table, wrong Redis password), then PostgreSQL refusing the password.
            heal = start("HealFunction", "heal")
            heal_api = load_event("heal-api", headers=bearer)
            invoke(heal, "heal", {**heal_api, "queryStringParameters": {"dryRun": "true"}})
            invoke(heal, "heal", heal_api)
            invoke(heal, "heal", load_event("heal-schedule"))
            invoke(heal, "heal", {**heal_api, "queryStringParameters": {"dryRun": f"maybe {token}"}})
            failing = start("HealFunction", "heal failing routines", SESSION_TABLE="NoSuchTable",
                            REDIS_URL=wrong_redis_url)  # fmt: skip
            invoke(failing, "heal failing routines", heal_api)
            invoke(failing, "heal failing routines", load_event("heal-schedule"))
            invoke(start("HealFunction", "heal database refused", DATABASE_URL=wrong_db_url),
                   "heal database refused", heal_api)  # fmt: skip
            # The right Redis password with a database index the server does not have (it has 16).
            out_of_range = redis_url.rsplit("/", 1)[0] + "/99"
            invoke(start("HealFunction", "heal redis db out of range", REDIS_URL=out_of_range),
                   "heal redis db out of range", heal_api)  # fmt: skip

            # Alerts: API and SNS delivered; rejected bodies; then a revoked Slack webhook (404, a Sentry
            # message) and a failing Discord (503, retried; the SNS delivery raises for Lambda's retry);
            # then Redis refusing the password (deduplication fails open).
            alerts = start("AlertsFunction", "alerts")
            invoke(alerts, "alerts", load_event("alerts-api", headers=bearer))
            for name in ("sns-alert", "sns-cloudwatch-alarm", "sns-cloudwatch-ok"):
                event = load_event(name)
                event["Records"][0]["Sns"]["MessageId"] = str(uuid.uuid4())
                invoke(alerts, "alerts", event)
            for body in ("{oops", json.dumps({"severity": "LOUD", "title": "t", "message": "m"}), "x" * 70_000):
                invoke(alerts, "alerts", load_event("alerts-api", headers=bearer, body=body))
            invoke(alerts, "alerts", load_event("alerts-api", headers=bearer, body="[" * 60_000))  # unhandled
            broken = start("AlertsFunction", "alerts webhooks failing", SLACK_WEBHOOK_URL=f"{slack_url}-revoked",
                           DISCORD_WEBHOOK_URL=f"{discord_url}-down")  # fmt: skip
            invoke(broken, "alerts webhooks failing", load_event("alerts-api", headers=bearer))
            event = load_event("sns-alert")
            event["Records"][0]["Sns"]["MessageId"] = str(uuid.uuid4())
            invoke(broken, "alerts webhooks failing", event)
            dedup = start("AlertsFunction", "alerts redis refused", REDIS_URL=wrong_redis_url,
                          ALERT_DEDUP_WINDOW_S="300")  # fmt: skip
            invoke(dedup, "alerts redis refused", load_event("alerts-api", headers=bearer))

            # The authorizer: right, wrong, missing, malformed, oversized tokens.
            authorizer = start("AdminAuthorizerFunction", "authorizer")
            for authorization in (f"Bearer {token}", f"Bearer {token[:-1]}", None, f"Token {token}",
                                  f"bearer {token}", f"Bearer {token * 40}", f"Bearer {token} {token}"):  # fmt: skip
                invoke(
                    authorizer, "authorizer", load_event("admin-authorizer", headers={"authorization": authorization})
                )

            # The sweep (success, then both stores refusing) and the page.
            invoke(start("MonitorFunction", "monitor"), "monitor", load_event("heal-schedule"))
            invoke(start("MonitorFunction", "monitor failing", DATABASE_URL=wrong_db_url, REDIS_URL=wrong_redis_url),
                   "monitor failing", load_event("heal-schedule"))  # fmt: skip
            invoke(start("DashboardFunction", "dashboard"), "dashboard", load_event("health-app", headers=bearer))
        finally:
            for label, emulator in emulators:
                emulator.stop()
                result.logs += [(label, line) for line in emulator.transcript or ()]

        # In-process: the real sentry-sdk in an interpreter of its own, every secret in an error.
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SENTRY_", "AWS_LAMBDA"))}
        env.update({key: value for key, value in common.items()}, PYTHONPATH=str(ROOT / "layers" / "shared"))
        scenario = subprocess.run(
            [sys.executable, "-c", IN_PROCESS_SCENARIO, json.dumps(load_event("heal-api", headers=bearer))],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert scenario.returncode == 0, scenario.stderr[-3000:]
        result.functions.add("in-process scenario")
        result.logs += [("in-process scenario", line) for line in (scenario.stdout + scenario.stderr).splitlines()]
        result.responses.append(("in-process scenario", scenario.stdout.strip().splitlines()[-1]))
        result.statuses["in-process scenario"].append(json.loads(result.responses[-1][1])["statusCode"])

        # Every invocation flushes Sentry before it returns, and the sink logs a request before it answers it:
        # what was sent is in sentry.log now (nothing to wait for).
        for request, _ in sentry.log:
            header, items = parse_envelope(_decoded(request))
            result.sentry_headers.append(header)
            result.sentry_items += items
        for name, server in (("slack", slack), ("discord", discord)):
            result.webhook_bodies += [
                (name, request.get_data().decode("utf-8", "replace")) for request, _ in server.log
            ]
        with psycopg.connect(db_url) as conn:
            result.healed_sessions = {row[0] for row in conn.execute('SELECT "sessionToken" FROM "Session"')}
    return result


# --------------------------------------------------------------------------- the run did what it claims


def test_the_run_used_every_function_real_services_and_both_paths(capture):
    functions = {"HealthAppFunction", "HealthDbFunction", "HealthQueueFunction", "HealthFunction", "HealFunction",
                 "AlertsFunction", "AdminAuthorizerFunction", "MonitorFunction", "DashboardFunction"}  # fmt: skip
    assert capture.functions >= functions | {"in-process scenario"}
    statuses = capture.statuses
    assert statuses["health-db"] == [200, 200] and statuses["health-queue"] == [200]  # real, password-checked
    assert statuses["health-db wrong password"] == statuses["health-queue wrong password"] == [503]
    assert statuses["health-db down"] == statuses["health-queue down"] == [503]
    assert statuses["health-db admin down"] == statuses["health admin down"] == [503, 503]
    assert statuses["health admin"] == [200, 200]
    admin_answers = [raw for label, raw in capture.responses if label == "health admin"]
    details = ("usagePercent", "postgresql:connections")  # in the JSON and the health+json documents
    assert admin_answers and all(any(d in raw for d in details) for raw in admin_answers), "the token saw no details"
    assert statuses["config error"] == statuses["config error with a secret value"] == [500]
    assert statuses["heal"][:2] == [200, 200] and statuses["heal"][3] == 400
    assert capture.healed_sessions == {"live"}, "the heal run really deleted the expired and orphaned sessions"
    assert statuses["heal failing routines"][0] == statuses["heal database refused"][0] == 503
    assert statuses["heal redis db out of range"] == [503]
    assert statuses["alerts"][:4] == [200, "ok", "ok", "ok"] and statuses["alerts"][4:7] == [400, 400, 413]
    assert statuses["alerts webhooks failing"] == [502, "RuntimeError"]
    assert statuses["authorizer"] == [200, 403, 401, 401, 401, 401, 401]
    assert len(capture.webhook_bodies) >= 6, "alerts reached both webhooks"
    events = [item["payload"] for item in capture.sentry_items if item["type"] == "event"]
    assert sum(bool(event.get("exception")) for event in events) >= 4, "errors reached the Sentry sink"
    assert sum(bool(event.get("message") or event.get("logentry")) for event in events) >= 3
    assert len(capture.logs) > 100 and len(capture.responses) > 40


def test_the_scan_covers_every_invocation_from_the_first(capture):
    """The log scan reads every line of every invocation of every environment, not only each environment's
    last invocation (the emulator's ``lines`` hold only the current one): the run's very first invocation,
    and the first of each environment invoked several times, are in the scanned lines."""
    scanned = defaultdict(set)
    for label, line in capture.logs:
        scanned[label].add(line)
    assert capture.invocations and len(capture.invocations) == len(capture.responses) - 1  # - the in-process run
    label, report, logs = capture.invocations[0]
    assert label == "health-app" and report and logs, "the first invocation wrote no REPORT or log line"
    assert report in scanned[label], f"the first invocation's REPORT line was not scanned: {report}"
    missing = [line for line in logs if line not in scanned[label]]
    assert not missing, f"{len(missing)} of the first invocation's {len(logs)} log lines were not scanned"
    repeated = [label for label in scanned if sum(1 for i in capture.invocations if i[0] == label) > 1]
    assert {"health-db", "heal", "alerts", "authorizer"} <= set(repeated)
    firsts = {label: next(i for i in capture.invocations if i[0] == label) for label in repeated}
    for label, (_, report, logs) in firsts.items():
        assert report and report in scanned[label], f"{label}: its first invocation's REPORT line was not scanned"
        assert all(line in scanned[label] for line in logs), f"{label}: its first invocation's lines were not scanned"
    for label, report, _ in capture.invocations:
        assert report and report in scanned[label], f"{label}: an invocation's REPORT line was not scanned"


# --------------------------------------------------------------------------- the scan

SECRET_NAMES = [
    "DB password", "DB password (wrong one)", "DATABASE_URL", "Redis password", "Redis password (wrong one)",
    "REDIS_URL", "admin token",
    "Slack webhook URL", "Slack webhook secret part", "Discord webhook URL", "Discord webhook secret part",
    "Sentry DSN", "Sentry DSN key",
]  # fmt: skip


def _hits(secret: str, corpus: list[tuple[str, str]]) -> list[str]:
    hits = []
    for label, text in corpus:
        index = text.find(secret)
        if index >= 0:
            hits.append(f"[{label}] ...{text[max(0, index - 150) : index + len(secret) + 80]!r}...")
    return hits


def _assert_absent(capture: Capture, name: str, corpus: list[tuple[str, str]], where: str) -> None:
    assert corpus, f"nothing captured in {where}"
    hits = _hits(capture.secrets[name], corpus)
    assert not hits, f"{name} leaked into {len(hits)} {where}; first ones:\n" + "\n".join(hits[:5])


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_no_secret_in_any_log_line(capture, name):
    _assert_absent(capture, name, capture.logs, "log lines")


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_no_secret_in_any_response_body(capture, name):
    _assert_absent(capture, name, capture.responses, "responses")


def _paths(value: Any, secret: str, path: str = "") -> list[str]:
    """Where in a Sentry event ``secret`` occurs: ``exception...frames[12](redis.connection.on_connect).vars...``."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            step = f"{path}.{key}"
            if isinstance(item, list) and key == "frames":
                for index, frame in enumerate(item):
                    where = f"{step}[{index}]({frame.get('module')}.{frame.get('function')})"
                    found += _paths(frame, secret, where)
            else:
                found += _paths(item, secret, step)
        return found
    if isinstance(value, list):
        return [hit for index, item in enumerate(value) for hit in _paths(item, secret, f"{path}[{index}]")]
    return [path] if isinstance(value, str) and secret in value else []


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_no_secret_in_any_sentry_event(capture, name):
    corpus = [(str(item["type"]), json.dumps(item["payload"])) for item in capture.sentry_items]
    assert corpus, "no Sentry envelope item captured"
    leaks = []
    for item in capture.sentry_items:
        for path in _paths(item["payload"], capture.secrets[name]):
            tags = item["payload"].get("tags") if isinstance(item["payload"], dict) else None
            leaks.append(f"{item['type']} (tags {tags}): {path}")
    assert not leaks, (
        f"{name} leaked into Sentry events ({len(leaks)} places; Sentry sends frame local variables, and the "
        "scrubber only knows whole secret values and secret-looking keys):\n" + "\n".join(leaks[:6])
    )
    _assert_absent(capture, name, corpus, "Sentry envelope items")


def test_the_sentry_envelope_header_carries_only_the_dsn_it_must(capture):
    """By protocol the header names the DSN (``dsn``) and its public key (``trace.public_key``, the dynamic
    sampling context): that is how Sentry authenticates the sender. Nothing else may be there."""
    assert capture.sentry_headers
    for header in capture.sentry_headers:
        trace = {key: value for key, value in (header.get("trace") or {}).items() if key != "public_key"}
        rest = json.dumps({**{key: value for key, value in header.items() if key not in ("dsn", "trace")}, **trace})
        for name, value in capture.secrets.items():
            assert value not in rest, f"{name} in a Sentry envelope header"


@pytest.mark.parametrize("name", [name for name in SECRET_NAMES if "webhook" not in name.lower()])
def test_no_secret_in_what_is_sent_to_slack_and_discord(capture, name):
    _assert_absent(capture, name, capture.webhook_bodies, "webhook payloads")


def test_the_scrubber_was_exercised(capture):
    """The in-process scenario put every secret into an error, a log line, a context and a breadcrumb."""
    scenario_logs = "\n".join(line for label, line in capture.logs if label == "in-process scenario")
    assert "[redacted]" in scenario_logs
    events = json.dumps([item["payload"] for item in capture.sentry_items])
    assert "failed with [redacted]" in events and "cannot connect with [redacted]" in events
