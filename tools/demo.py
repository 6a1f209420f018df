"""`make demo`: invoke the bundle's functions under the Lambda emulator against real services.

Run through `make demo`, which creates the virtualenv, installs the local
runtime client and builds the functions first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lambda_emulator import Emulator, EmulatorError, load_function, read_env_file
from services import ServiceUnavailable, postgres_url, redact, redis_url

ROOT = Path(__file__).resolve().parent.parent


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

    env_vars = read_env_file(str(ROOT / "env.json"))
    try:
        with Emulator(load_function("HealthAppFunction", env_vars=env_vars)) as app:
            event = json.loads((ROOT / "events" / "health-app.json").read_text())
            show("GET /api/health/app (cold start)", app.invoke(event))
            show("GET /api/health/app (warm)", app.invoke(event))
    except EmulatorError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
