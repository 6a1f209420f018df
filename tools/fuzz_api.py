"""Schemathesis against the local API: inputs derived from openapi.yaml, answers checked against it.

The API is `make api`'s (tools/local_api.py: the built functions under the Lambda emulator) with everything
of its own: a fresh PostgreSQL database with the Auth.js Prisma schema (the heal route deletes in it and
nowhere else), a BullMQ prefix of its own with both watched queues, a webhook sink on 127.0.0.1 standing in for
Slack and Discord (the alerts route delivers there), and a random admin token that Schemathesis sends where the
contract names the ``adminToken`` scheme (tools/schemathesis.toml). Requests that find every execution
environment of a function busy wait for one instead of being throttled, so the answers are the functions' own.

Checks (``CHECKS``): ``not_a_server_error`` (a documented 503 allowed), ``status_code_conformance``,
``content_type_conformance``, ``response_headers_conformance``, ``response_schema_conformance``,
``negative_data_rejection`` (input the contract forbids is a 4xx), ``positive_data_acceptance``,
``missing_required_header`` and ``ignored_auth`` (an admin route called without the token or with a wrong one).
Not ``unsupported_method``: it wants 405 for a method no route has, where API Gateway answers 404 (so does the
local API); nor the stateful checks (the contract has no links). Exits non-zero on any failure or error, each
printed by Schemathesis with its reproduction (curl, the token filtered).

    PYTHONPATH=layers/shared:tests:tools .venv/bin/python tools/fuzz_api.py [--max-examples N] [--workers N]
        [--seed N] [--phases examples,coverage,fuzzing]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "openapi.yaml"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "ignored_auth",
)
PHASES = ("examples", "coverage", "fuzzing")
QUEUES = ("high-priority", "default")
# What Schemathesis found here and how it was fixed (RELIABILITY.md lists them; each has a regression test).
FIXED = (
    "`TRACE` (and `QUERY`) on any route: the local API answered http.server's 501 HTML page; now 404 "
    '`{"message":"Not Found"}` as API Gateway does for a method no route has (tools/local_api.py; '
    "`test_unknown_routes_are_404`).",
    "`POST /api/admin/alerts` with a non-string `source` or `timestamp` (`{}`, `5`, `null`) was accepted and the "
    "field silently replaced; now a 400 naming the field (notify/intake.py; `test_bad_bodies_are_a_400_naming_the_"
    "field`).",
    "`GET /api/health` as `application/health+json` with the admin token: `redis:evictionPolicy`'s `observedValue` "
    "is the policy's name, a string the contract did not allow; the contract now does (openapi.yaml; "
    "`test_health_json_documents_conform_to_the_contract`).",
)
# Two passes on one API: every operation with the admin token wherever the contract names its scheme (so the health
# routes answer their full documents), then the health routes anonymously (their public documents).
PASSES = (
    ("", ()),
    (" (anonymous)", ("--include-tag", "health")),
)
TOKEN_VARIABLE = "PAREL_FUZZ_ADMIN_TOKEN"  # noqa: S105 (a variable name, read by tools/schemathesis.toml)
WAIT_FOR_ENVIRONMENT_S = 120.0  # a request queues behind a busy pool instead of a 429
MAX_EXAMPLES, WORKERS, REQUEST_TIMEOUT_S = 50, 2, 60.0


@dataclass
class FuzzResult:
    """One Schemathesis run: its figures, from its JSON report and its summary."""

    returncode: int
    seconds: float
    operations: int = 0
    operations_tested: int = 0
    cases: int = 0
    seed: str = ""
    checks: dict[str, list[int]] = field(default_factory=dict)  # check -> [run, failed]
    statuses: dict[str, Counter] = field(default_factory=dict)  # operation (and pass) -> answer -> count
    commands: list[str] = field(default_factory=list)  # one per pass (PASSES)
    failures: list[str] = field(default_factory=list)  # "title (count) in operations"
    errors: list[str] = field(default_factory=list)
    webhook_posts: int = 0
    output: str = ""  # Schemathesis's terminal output (failures with their curl reproduction)

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.failures and not self.errors and self.cases > 0

    @property
    def checks_run(self) -> int:
        return sum(run for run, _ in self.checks.values())


class _Sink(BaseHTTPRequestHandler):
    """Slack's and Discord's webhook stand-in: every POST accepted."""

    server: _SinkServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.server.lock:
            self.server.posts += 1
        self.send_response(204 if "discord" in self.path else 200)
        self.send_header("content-length", "0" if "discord" in self.path else "2")
        self.end_headers()
        if "discord" not in self.path:
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    posts = 0
    lock = threading.Lock()


@contextmanager
def webhook_sink():
    server = _SinkServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="webhook-sink", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def fresh_database(admin_url: str):
    """A database of the run's own with the Auth.js Prisma schema, dropped afterwards."""
    import psycopg
    from psycopg import sql

    from nextauth_schema import create_prisma_schema

    name = f"parel_fuzz_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            create_prisma_schema(conn)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def bullmq_prefix(redis: str):
    """Both watched queues under a prefix of the run's own (real BullMQ), its keys deleted afterwards."""
    from bullmq_scenario import cleanup, run_scenario, unique_prefix

    prefix = unique_prefix("fuzz")
    try:
        for queue in QUEUES:
            run_scenario("populate", prefix, queue, redis, completed=2)
        yield prefix
    finally:
        cleanup(prefix, redis)


def forget_heal_positions(redis: str, database: str) -> None:
    """The heal's resume positions for the run's database (written by a partial walk only; they expire anyway)."""
    import redis as redis_client

    from parel_monitoring.heal.positions import KEY_PREFIX

    client = redis_client.Redis.from_url(redis, socket_timeout=5)
    try:
        for key in client.scan_iter(match=f"{KEY_PREFIX}:{database}:*"):
            client.delete(key)
    finally:
        client.close()


def read_events(path: Path, suffix: str = "") -> tuple[dict[str, list[int]], dict[str, Counter]]:
    """From Schemathesis's NDJSON events: check -> [run, failed], and operation (+ ``suffix``) -> Counter of the
    answers' statuses (``"404 (other methods)"`` for a request whose method is not the operation's)."""
    checks: dict[str, list[int]] = {}
    statuses: dict[str, Counter] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        recorder = (event.get("ScenarioFinished") or {}).get("recorder")
        if not recorder:
            continue
        for results in recorder.get("checks", {}).values():
            for check in results:
                figures = checks.setdefault(check["name"], [0, 0])
                figures[0] += 1
                figures[1] += check["status"] == "failure"
        for interaction in recorder.get("interactions", {}).values():
            status = str((interaction.get("response") or {}).get("status_code", 0))
            if (interaction.get("request") or {}).get("method", "").upper() != recorder["label"].split()[0]:
                status += " (other methods)"  # the coverage phase's probes of a method the route does not have
            statuses.setdefault(recorder["label"] + suffix, Counter())[status] += 1
    return checks, statuses


class NotReady(RuntimeError):
    pass


def preflight(api) -> None:
    """GET /api/health/app answers 200 before the run (a broken build or runtime is said as such, not fuzzed)."""
    from local_api import Request

    request = Request("GET", "/api/health/app", [], b"", "127.0.0.1", "HTTP/1.1", 0)
    response = api.respond(request)
    if response.status != 200:
        raise NotReady(f"GET /api/health/app answered {response.status}: {response.problem or response.body[:300]!r}")


def schemathesis_arguments(config: Path, url: str, max_examples: int, workers: int, seed: int,
                           phases: tuple[str, ...], selection: tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """The CLI's arguments (after the executable) for a run against ``url``."""
    return ["--config-file", str(config), "--no-color", "run", str(CONTRACT), "--url", url, *selection,
            "--checks", ",".join(CHECKS), "--phases", ",".join(phases), "--max-examples", str(max_examples),
            "--workers", str(workers), "--request-timeout", f"{REQUEST_TIMEOUT_S:g}", "--seed", str(seed)]  # fmt: skip


def anonymous_config(path: Path) -> Path:
    """tools/schemathesis.toml without its ``[auth...]`` tables, written to ``path``."""
    text = re.sub(r"(?ms)^\[auth\.[^\]]*\]\n.*?(?=^\[|\Z)", "", CONFIG.read_text())
    path.write_text(text)
    return path


def _schemathesis(command: list[str], cwd: str, token: str, echo: bool) -> tuple[int, str]:
    lines = []
    with subprocess.Popen(
        command, cwd=cwd, env={**os.environ, TOKEN_VARIABLE: token, "COLUMNS": "160"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as process:  # fmt: skip
        for line in process.stdout:
            lines.append(line)
            if echo:
                sys.stderr.write(line)
    return process.returncode, "".join(lines)


def _add_pass(result: FuzzResult, report: Path, events: Path, suffix: str) -> None:
    """A pass's figures into ``result`` (operations: the first pass's, every operation)."""
    if not report.exists():
        result.errors.append(f"pass{suffix or ' with the token'}: no JSON report, Schemathesis did not finish")
        return
    document = json.loads(report.read_text())
    if not result.operations:
        operations = document.get("operations") or {}
        result.operations, result.operations_tested = operations.get("selected", 0), operations.get("tested", 0)
    result.cases += (document.get("test_cases") or {}).get("generated", 0)
    result.failures += [f"{f['title']} ({f['count']}) in {', '.join(f['operations'])}{suffix}"
                        for f in document.get("failures") or []]  # fmt: skip
    result.errors += [f"{e['title']} ({e['count']}){suffix}" for e in document.get("errors") or []]
    if events.exists():
        checks, statuses = read_events(events, suffix)
        for name, (run, failed) in checks.items():
            figures = result.checks.setdefault(name, [0, 0])
            figures[0] += run
            figures[1] += failed
        result.statuses.update(statuses)


def fuzz(max_examples: int = MAX_EXAMPLES, workers: int = WORKERS, seed: int | None = None,
         phases: tuple[str, ...] = PHASES, build_dir: Path | None = None, echo: bool = False,
         reports: Path | None = None) -> FuzzResult:  # fmt: skip
    """Start the local API with services of its own, run Schemathesis's passes against it, tear everything down
    (``reports``: where Schemathesis's JSON and NDJSON reports are kept; a temporary directory otherwise)."""
    from lambda_emulator import BUILD_DIR
    from local_api import LocalApi
    from services import postgres_url, redis_url

    admin_url, _ = postgres_url()
    redis, _ = redis_url()
    token = secrets.token_urlsafe(24)
    seed = secrets.randbelow(2**63) if seed is None else seed  # one seed for both passes, reported
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="parel-fuzz-") as tmp:
        database = stack.enter_context(fresh_database(admin_url))
        stack.callback(forget_heal_positions, redis, database.rsplit("/", 1)[1])
        prefix = stack.enter_context(bullmq_prefix(redis))
        sink = stack.enter_context(webhook_sink())
        sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
        env = {
            "DATABASE_URL": database,
            "REDIS_URL": redis,
            "QUEUE_NAMES": ",".join(QUEUES),
            "BULLMQ_PREFIX": prefix,
            "ADMIN_API_TOKEN": token,
            "ALERT_TOPIC_ARN": "",
            "SLACK_WEBHOOK_URL": f"{sink_url}/services/T0/B0/fuzz",
            "DISCORD_WEBHOOK_URL": f"{sink_url}/api/webhooks/0/discord-fuzz",
        }
        api = stack.enter_context(LocalApi(build_dir or BUILD_DIR, extra_env=env, request_log=False,
                                           wait_for_environment_s=WAIT_FOR_ENVIRONMENT_S))  # fmt: skip
        preflight(api)
        reports = Path(reports or tmp)
        reports.mkdir(parents=True, exist_ok=True)
        result = FuzzResult(returncode=0, seconds=0.0, seed=str(seed))
        started = time.monotonic()
        for index, (suffix, selection) in enumerate(PASSES):
            config = CONFIG if index == 0 else anonymous_config(Path(tmp) / "anonymous.toml")
            arguments = schemathesis_arguments(config, api.url, max_examples, workers, seed, phases, selection)
            report, events = reports / f"run{index + 1}.json", reports / f"events{index + 1}.ndjson"
            command = [str(Path(sys.executable).with_name("schemathesis")), *arguments, "--report", "json,ndjson",
                       "--report-json-path", str(report), "--report-ndjson-path", str(events)]  # fmt: skip
            returncode, output = _schemathesis(command, tmp, token, echo)
            result.returncode = result.returncode or returncode
            result.output += output
            shown = " ".join(["schemathesis", *arguments]).replace(api.url, "$API_URL").replace(f"{ROOT}/", "")
            result.commands.append(shown.replace(str(config), "(tools/schemathesis.toml without its auth table)"))
            _add_pass(result, report, events, suffix)
        result.seconds = time.monotonic() - started
        result.webhook_posts = sink.posts
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=MAX_EXAMPLES, help="cases per operation and phase")
    parser.add_argument("--workers", type=int, default=WORKERS, help="concurrent Schemathesis workers")
    parser.add_argument("--seed", type=int, help="Hypothesis seed (a failure's seed reproduces it)")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated Schemathesis phases")
    parser.add_argument("--reports", type=Path, help="keep Schemathesis's run.json and events.ndjson here")
    args = parser.parse_args(argv)
    result = fuzz(args.max_examples, args.workers, args.seed, tuple(args.phases.split(",")), echo=True,
                  reports=args.reports)  # fmt: skip
    print(f"fuzz: {result.operations} operations, {result.cases} cases, {result.checks_run} checks, "
          f"{len(result.failures)} failures, {len(result.errors)} errors in {result.seconds:.0f} s",
          file=sys.stderr)  # fmt: skip
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
