"""`make demo`: invoke the bundle's functions under the Lambda emulator against real services.

Run through `make demo`, which creates the virtualenv, installs the local
runtime client and builds the functions first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from psycopg import sql

from lambda_emulator import Emulator, EmulatorError, load_function, read_env_file
from local_api import LocalApi
from nextauth_schema import create_prisma_schema
from services import ServiceUnavailable, postgres_url, redact, redis_url

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "bullmq" / "scenario.mjs"
DEMO_PREFIX = "parel-demo"
DEMO_QUEUES = ("high-priority", "default", "low-priority", "mailer")
DEMO_DATABASE = "parel_demo"


def scenario(command: str, redis: str, queue: str, *options: str) -> dict:
    """Run the real BullMQ (Node) scenario script, the way the app's workers would write."""
    args = ["node", str(SCENARIO), command, "--redis", redis, "--prefix", DEMO_PREFIX, "--queue", queue, *options]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


def seed_queues(redis: str) -> None:
    """Queues as a busy app leaves them: finished jobs, a backlog, delayed and prioritized work."""
    for queue in DEMO_QUEUES:
        scenario("obliterate", redis, queue)
    scenario("populate", redis, "high-priority", "--completed", "40", "--failed", "1", "--waiting", "12",
             "--prioritized", "3")  # fmt: skip
    scenario("populate", redis, "default", "--completed", "25", "--failed", "2", "--waiting", "5", "--delayed", "4")
    scenario("populate", redis, "low-priority", "--completed", "10", "--waiting", "30")


def show(title: str, invocation) -> None:
    payload = invocation.payload
    print(f"\n=== {title}")
    if isinstance(payload, dict) and "statusCode" in payload:
        headers = payload.get("headers") or {}
        cache = f"  cache-control: {headers['cache-control']}" if "cache-control" in headers else ""
        age = f"  age: {headers['age']}" if "age" in headers else ""
        print(f"HTTP {payload['statusCode']}  x-correlation-id: {headers.get('x-correlation-id')}{cache}{age}")
        try:
            print(json.dumps(json.loads(payload.get("body") or "null"), indent=2))
        except ValueError:
            print(payload.get("body"))
    else:
        print(json.dumps(payload, indent=2))
    if invocation.init_duration_ms is not None:
        print(f"INIT REPORT Init Duration: {invocation.init_duration_ms:.2f} ms")
    print(invocation.report)


class WebhookSink:
    """A local stand-in for Slack's and Discord's webhooks that keeps what it receives."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                received.append((self.path.strip("/"), json.loads(self.rfile.read(length) or b"null")))
                self.send_response(204 if self.path == "/discord" else 200)
                self.end_headers()
                if self.path != "/discord":
                    self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def show(self) -> None:
        for channel, payload in self.received:
            print(f"--- {channel} received:")
            print(json.dumps(payload, indent=2, ensure_ascii=False))
        self.received.clear()


def heal_summary_notification(summary: dict) -> dict:
    """The SNS event AlertsFunction gets when the heal run publishes its summary (as the layer's alerts do)."""
    event = json.loads((ROOT / "events" / "sns-alert.json").read_text())
    alert = {
        "severity": "WARNING",
        "title": "Self-healing run finished",
        "message": f"{summary['staleSessions']} stale sessions, {summary['stuckJobs']} stuck jobs and "
        f"{summary['orphanedRecords']} orphaned records healed in {summary['duration']} ms.",
        "metadata": {key: summary[key] for key in ("staleSessions", "stuckJobs", "orphanedRecords", "duration")},
    }
    record = event["Records"][0]["Sns"]
    record["MessageId"] = str(uuid.uuid4())
    record["Message"] = json.dumps(alert)
    record["MessageAttributes"]["x-correlation-id"]["Value"] = summary["correlationId"]
    return event


def seed_database(server_url: str) -> str:
    """A fresh NextAuth (Prisma, relationMode "prisma") database with the rot an app accumulates."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=DEMO_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt")
                        SELECT 'user-' || g, 'user' || g || '@example.com', now()
                        FROM generate_series(1, 50) g""")
        conn.execute("""INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt")
                        SELECT 'token-' || g, 'user-' || (g % 60 + 1),
                               now() AT TIME ZONE 'UTC' + (CASE WHEN g % 3 = 0 THEN interval '30 days'
                                                             ELSE interval '-2 days' END), now()
                        FROM generate_series(1, 300) g""")  # 200 expired; users 51-60 do not exist
        conn.execute("""INSERT INTO "VerificationToken"(identifier, token, expires)
                        SELECT 'user' || g || '@example.com', 'verify-' || g,
                               now() AT TIME ZONE 'UTC' - interval '1 day'
                        FROM generate_series(1, 12) g""")
        conn.execute("""INSERT INTO "Account"("userId", type, provider, "providerAccountId", "updatedAt")
                        SELECT 'user-' || g, 'oauth', 'github', g::text, now()
                        FROM generate_series(1, 58) g""")  # 8 accounts of deleted users
    return url


def main() -> int:
    try:
        database_url, database_where = postgres_url()
        redis, redis_where = redis_url()
    except ServiceUnavailable as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"PostgreSQL: {redact(database_url)} ({database_where})")
    print(f"Redis:      {redact(redis)} ({redis_where})")

    print(f"Seeding BullMQ queues {', '.join(DEMO_QUEUES)} (prefix {DEMO_PREFIX}) with the real bullmq (Node)...")
    seed_queues(redis)
    print(f"Seeding rot into database {DEMO_DATABASE}: expired sessions and tokens, orphaned rows...")
    demo_database_url = seed_database(database_url)
    print("Crashing a bullmq worker with 3 jobs in flight on 'mailer' (their locks expire in 1 s)...")
    scenario("crash-active", redis, "mailer", "--count", "3", "--lock-duration", "1000", "--kill", "exit")
    time.sleep(1.5)

    env_vars = read_env_file(str(ROOT / "env.json"))
    services_env = {
        "DATABASE_URL": demo_database_url,
        "REDIS_URL": redis,
        "BULLMQ_PREFIX": DEMO_PREFIX,
        "QUEUE_NAMES": ",".join(DEMO_QUEUES),
    }
    routes = [
        ("HealthAppFunction", "health-app", "GET /api/health/app"),
        ("HealthDbFunction", "health-db", "GET /api/health/db"),
        ("HealthQueueFunction", "health-queue", "GET /api/health/queue"),
        ("HealthFunction", "health", "GET /api/health (Accept: application/health+json)"),
    ]

    # The figures of the health routes are for the admin token (HEALTH_SHOW_DETAILS=when-authorized).
    admin = {"authorization": f"Bearer {env_vars['Parameters']['ADMIN_API_TOKEN']}"}

    def event(name: str, headers: dict | None = None) -> dict:
        loaded = json.loads((ROOT / "events" / f"{name}.json").read_text())
        if headers:
            loaded["headers"] = {**loaded["headers"], **headers}
        for record in loaded.get("Records", []):  # a new SNS message each run (AlertsFunction remembers ids)
            record["Sns"]["MessageId"] = str(uuid.uuid4())
        return loaded

    try:
        for function, event_name, title in routes:
            with Emulator(load_function(function, env_vars=env_vars), extra_env=services_env) as emulator:
                show(f"{title} (cold start, anonymous: statuses only)", emulator.invoke(event(event_name)))
                show(f"{title} (warm, admin token: the full document, the result reused for HEALTH_CACHE_TTL_S)",
                     emulator.invoke(event(event_name, admin)))  # fmt: skip

        with Emulator(load_function("AdminAuthorizerFunction", env_vars=env_vars)) as authorizer:
            show(
                "Authorizer for POST /api/admin/heal with the admin token", authorizer.invoke(event("admin-authorizer"))
            )
            no_token = {**event("admin-authorizer"), "headers": {"x-correlation-id": "demo-auth-0002"}}
            show("Authorizer without a token", authorizer.invoke(no_token))
        # The demo's worker crashed seconds ago: heal anything active for more than 1 s.
        heal_env = {**services_env, "STUCK_JOB_THRESHOLD_MS": "1000", "ALERT_TOPIC_ARN": ""}
        with Emulator(load_function("HealFunction", env_vars=env_vars), extra_env=heal_env) as heal:
            dry_run = {
                **event("heal-api"),
                "queryStringParameters": {"dryRun": "true"},
                "rawQueryString": "dryRun=true",
            }
            show("POST /api/admin/heal?dryRun=true", heal.invoke(dry_run))
            healed = heal.invoke(event("heal-api"))
            show("POST /api/admin/heal", healed)
        for function, event_name, title in routes[1:3]:
            with Emulator(load_function(function, env_vars=env_vars), extra_env=services_env) as emulator:
                show(f"{title} (after healing, admin token)", emulator.invoke(event(event_name, admin)))

        sink = WebhookSink()
        alerts_env = {
            "REDIS_URL": redis,
            "SLACK_WEBHOOK_URL": f"{sink.url}/slack",
            "DISCORD_WEBHOOK_URL": f"{sink.url}/discord",
            "ALERT_DEDUP_WINDOW_S": "0",
        }
        with Emulator(load_function("AlertsFunction", env_vars=env_vars), extra_env=alerts_env) as alerts:
            summary = json.loads(healed.payload["body"])
            show("SNS: the heal summary -> AlertsFunction", alerts.invoke(heal_summary_notification(summary)))
            sink.show()
            show("POST /api/admin/alerts (a test alert)", alerts.invoke(event("alerts-api")))
            sink.show()
            show("SNS: a CloudWatch alarm -> AlertsFunction", alerts.invoke(event("sns-cloudwatch-alarm")))
            sink.show()
        with (
            LocalApi(env_vars=env_vars, extra_env=services_env) as api,
            urllib.request.urlopen(f"{api.url}/admin/monitor", timeout=30) as page,  # noqa: S310 - local URL
        ):
            print(f"\n=== GET /admin/monitor through the local API: HTTP {page.status}, {len(page.read())} bytes")
        print("\nThe monitoring dashboard: run `make api`, then open http://127.0.0.1:3000/admin/monitor")
    except EmulatorError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
