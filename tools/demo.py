"""`make demo`: invoke the bundle's functions under the Lambda emulator against real services.

Run through `make demo`, which creates the virtualenv, installs the local
runtime client and builds the functions first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lambda_emulator import Emulator, EmulatorError, load_function, read_env_file
from services import ServiceUnavailable, postgres_url, redact, redis_url

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "bullmq" / "scenario.mjs"
DEMO_PREFIX = "parel-demo"
DEMO_QUEUES = ("high-priority", "default", "low-priority")


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
        print(f"HTTP {payload['statusCode']}  x-correlation-id: {payload.get('headers', {}).get('x-correlation-id')}")
        try:
            print(json.dumps(json.loads(payload.get("body") or "null"), indent=2))
        except ValueError:
            print(payload.get("body"))
    else:
        print(json.dumps(payload, indent=2))
    if invocation.init_duration_ms is not None:
        print(f"INIT REPORT Init Duration: {invocation.init_duration_ms:.2f} ms")
    print(invocation.report)


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

    env_vars = read_env_file(str(ROOT / "env.json"))
    services_env = {
        "DATABASE_URL": database_url,
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
    try:
        for function, event_name, title in routes:
            event = json.loads((ROOT / "events" / f"{event_name}.json").read_text())
            with Emulator(load_function(function, env_vars=env_vars), extra_env=services_env) as emulator:
                show(f"{title} (cold start)", emulator.invoke(event))
                if function == "HealthAppFunction":
                    show(f"{title} (warm)", emulator.invoke(event))
    except EmulatorError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
