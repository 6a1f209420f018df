"""Warm latency of one built function, in-process (run by benchmarks/bench.py, one subprocess per function).

Started by ``bench.py`` with the Lambda interpreter (``python3.13 -S``) and the very
environment the emulator would give the function (task root, layer directories and
runtime client on ``PYTHONPATH``, the function's variables), so ``import app`` is the
built handler module and its settings are read at import exactly as in Lambda. The
handler is then called directly, ``--warmup`` times unmeasured and ``--invocations``
times measured; with ``--raw pg`` or ``--raw redis`` the raw round trips the handler's
target is compared with are measured in the same loop, interleaved with the handler
calls (same process, same library versions, same noise):

* ``pg``: ``SELECT 1`` then the health check's ``POOL_QUERY``, on one reused psycopg
  connection (autocommit), each result fetched;
* ``redis``: one ``PING`` on one reused redis-py connection; and, also interleaved, the queue check's
  counts-and-ages script alone (``job_counts`` of ``QUEUE_NAMES``, one ``EVALSHA``) on another.

The samples (milliseconds) and the last response's status are written as JSON to
``--out`` (stdout belongs to the function's own log lines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# This script's directory (tools/) is not part of a Lambda execution environment.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]


class Context:
    """The attributes of the Lambda context object the handlers read."""

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "bench")
    function_version = "$LATEST"
    memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"))
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = f"/aws/lambda/{function_name}"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def raw_pg() -> Any:
    import psycopg

    from parel_monitoring.health.db import POOL_QUERY

    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)

    def round_trips() -> None:
        conn.execute("SELECT 1").fetchone()
        conn.execute(POOL_QUERY).fetchone()

    return round_trips


def raw_redis() -> Any:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return client.ping


def raw_counts() -> Any:
    import redis

    from parel_monitoring.bullmq import job_counts

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    names = [name for name in os.environ["QUEUE_NAMES"].split(",") if name]
    prefix = os.environ.get("BULLMQ_PREFIX", "bull")
    return lambda: job_counts(client, prefix, names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handler", default="app.handler")
    parser.add_argument("--event", required=True, help="event JSON file")
    parser.add_argument("--invocations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--raw", choices=("none", "pg", "redis"), default="none")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    module_name, _, function_name = args.handler.rpartition(".")
    event = json.loads(Path(args.event).read_text())
    handler = getattr(__import__(module_name), function_name)
    raw = {"none": None, "pg": raw_pg, "redis": raw_redis}[args.raw]
    raw_call = raw() if raw else None
    counts_call = raw_counts() if args.raw == "redis" else None
    counts_ns: list[int] = []
    context = Context()
    clock = time.perf_counter_ns
    handler_ns: list[int] = []
    raw_ns: list[int] = []
    response: Any = None
    for index in range(args.warmup + args.invocations):
        if raw_call is not None:
            started = clock()
            raw_call()
            elapsed = clock() - started
            if index >= args.warmup:
                raw_ns.append(elapsed)
        if counts_call is not None:
            started = clock()
            counts_call()
            elapsed = clock() - started
            if index >= args.warmup:
                counts_ns.append(elapsed)
        started = clock()
        response = handler(event, context)
        elapsed = clock() - started
        if index >= args.warmup:
            handler_ns.append(elapsed)
    status_code = response.get("statusCode") if isinstance(response, dict) else None
    try:
        status = json.loads(response["body"]).get("status")
    except (KeyError, TypeError, ValueError, AttributeError):
        status = None
    result = {
        "handler_ms": [ns / 1e6 for ns in handler_ns],
        "raw_ms": [ns / 1e6 for ns in raw_ns],
        "counts_ms": [ns / 1e6 for ns in counts_ns],
        "status_code": status_code,
        "status": status,
        "body": response.get("body") if isinstance(response, dict) else None,
    }
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
