"""Auth.js databases seeded and verified through the real adapters: runs ``tests/authjs/seed.mjs`` (Node).

    plan = seed("drizzle", database_url)          # {"plan": ..., "present": ...}
    verify("drizzle", database_url, plan["plan"])  # {"failures": [], "checked": n, "present": ...}

Adapters: ``pg``, ``kysely``, ``drizzle`` (tests/authjs/adapters/) and ``prisma`` (tests/authjs/prisma/, its
own package). Node runs in :data:`NODE_TIME_ZONE`. The script's README is its header comment.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "authjs" / "seed.mjs"
NODE_TIME_ZONE = "America/Los_Angeles"
TIMEOUT_S = 120


class AuthjsScenarioError(RuntimeError):
    """seed.mjs failed or printed no JSON answer for its command."""


def run_seed_script(command: str, adapter: str, database_url: str, schema: str | None = None, **options: str) -> dict:
    argv = ["node", str(SEED), command, "--adapter", adapter, "--database-url", database_url]
    if schema is not None:
        argv += ["--schema", schema]
    for name, value in options.items():
        argv += ["--" + name.replace("_", "-"), value]
    env = {**os.environ, "TZ": NODE_TIME_ZONE}
    try:
        result = subprocess.run(argv, cwd=SEED.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise AuthjsScenarioError(f"seed.mjs {command} ({adapter}) timed out: {exc.stderr!r}") from None
    if result.returncode != 0:
        failure = f"seed.mjs {command} ({adapter}) exited {result.returncode}"
        raise AuthjsScenarioError(f"{failure}:\n{result.stderr.strip()}")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        document = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AuthjsScenarioError(f"seed.mjs {command} ({adapter}) printed no JSON:\n{result.stdout}") from None
    if document.get("command") != command:
        raise AuthjsScenarioError(f"seed.mjs {command} answered for {document.get('command')!r}")
    return document


def seed(adapter: str, database_url: str, schema: str | None = None) -> dict[str, Any]:
    return run_seed_script("seed", adapter, database_url, schema)


def create_schema(adapter: str, database_url: str, schema: str | None = None) -> None:
    """Only the adapter's documented schema, as the adapter's own tooling creates it."""
    run_seed_script("create-schema", adapter, database_url, schema)


def verify(adapter: str, database_url: str, plan: dict[str, Any], schema: str | None = None) -> dict[str, Any]:
    return run_seed_script("verify", adapter, database_url, schema, plan=json.dumps(plan))
