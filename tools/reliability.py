"""`make reliability`: proof under faults, load and hostile input, written into RELIABILITY.md.

1. The quick cases: pytest on the fault, hostile-input, auth, injection and secret-leak modules (those that
   exist) with ``--junitxml``; every test function becomes a row: the case (its name), the expected
   behaviour (its docstring, read from the test file's AST), what was observed (passed, or failed with the
   failure message's first line; parametrized variants are folded into one row) and the duration.
2. Load: the warm health routes through the local API (tools/local_api.py, the template's HttpApi under the
   Lambda emulator) on 127.0.0.1, from a bounded, self-stopping pool of 8 workers (a fixed request count or
   20 s, whichever comes first): requests/s, p50/p99 and error rate per route, and the PostgreSQL
   connections of the functions (``pg_stat_activity`` sampled every 0.5 s) -- they must not grow with the
   request count.
3. checkov on the transformed template (tools/checkov_review.py): every finding listed as fixed, or accepted
   with its reason (the accepted list is in that module); a finding that is neither fails the run.
4. Heal on large data: a fresh database with 1,000,000 expired among 2,000,000 Prisma sessions, healed
   through ``POST /api/admin/heal?dryRun=false&routines=sessions`` (again while the API budget leaves it
   partial) while every health route is polled every 0.25 s: health keeps answering within its timeout.

5. Schemathesis (tools/fuzz_api.py): requests generated from openapi.yaml against the local API with services
   of its own (fresh database, BullMQ prefix, webhook sink, admin token); operations, cases, checks run and
   failures (zero), per check and per operation.

Exits non-zero when a test failed, a load/heal target was missed, a checkov finding is neither fixed nor
accepted or Schemathesis found a failure (after writing RELIABILITY.md). ``--sections`` runs only the named
groups (tests, load, checkov, schemathesis) and replaces only their sections of RELIABILITY.md, keeping the others
(`make reliability SECTIONS=schemathesis`).

    PYTHONPATH=layers/shared:tests:tools .venv/bin/python tools/reliability.py [--skip-load] [--skip-tests]
        [--skip-checkov] [--skip-schemathesis] [--sections tests,load,checkov,schemathesis]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import http.client
import itertools
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from checkov_review import Review, review_template
from psycopg import sql

from lambda_emulator import BUILD_DIR, load_function
from local_api import LocalApi
from nextauth_schema import create_prisma_schema, load_prisma_sessions
from report import QUICK, QUICK_NOTE, log, median, output, p99, quick, table
from services import postgres_url, redis_url

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = output(ROOT / "RELIABILITY.md")  # RELIABILITY.quick.md in a quick run (QUICK=1)

# Test module -> its section in RELIABILITY.md (only the modules that exist are run).
TEST_MODULES = {
    "tests/integration/test_faults.py": "Faults",
    "tests/unit/test_hostile_input.py": "Hostile input & auth",
    "tests/unit/test_auth.py": "Hostile input & auth",
    "tests/e2e/test_admin_authorizer_e2e.py": "Hostile input & auth",
    "tests/integration/test_injection.py": "Injection & secrets",
    "tests/integration/test_no_secret_leaks.py": "Injection & secrets",
}
SECTIONS = ("Faults", "Hostile input & auth", "Injection & secrets", "Load")
# --sections: each group and the RELIABILITY.md sections it writes.
SECTION_GROUPS = {
    "tests": ("Faults", "Hostile input & auth", "Injection & secrets"),
    "load": ("Load",),
    "checkov": ("Checkov",),
    "schemathesis": ("Schemathesis",),
}
FUZZ_MAX_EXAMPLES, FUZZ_WORKERS = quick(100, 5), 2  # Schemathesis: cases per operation and phase; concurrent workers
PYTEST_TIMEOUT_S = 240

HEALTH_ROUTES = ("/api/health/app", "/api/health/db", "/api/health/queue", "/api/health")
QUEUES = ("high-priority", "default")
APP_NAME_PATTERN = "parel-monitoring:%"
# The functions that hold a PostgreSQL connection (one each, reused across invocations).
DB_FUNCTIONS = {"HealthDbFunction", "HealthFunction", "HealFunction"}

LOAD_WORKERS, LOAD_REQUESTS, LOAD_SECONDS = 8, quick(4000, 200), quick(20.0, 5.0)
SAMPLE_EVERY_S = 0.5
MAX_ERROR_RATE = 0.0  # warm health routes against healthy services: no error at all

SESSIONS, EXPIRED = quick(2_000_000, 100_000), quick(1_000_000, 50_000)
POLL_EVERY_S = 0.25
MAX_HEAL_RUNS = 20
HEAL_ID_ORDER = "uuid()"  # random session tokens: the heal's slowest case (IO-bound key walk), the longest window


# --------------------------------------------------------------------------- quick cases (pytest)


@dataclass
class CaseRow:
    section: str
    case: str
    expected: str
    observed: str
    seconds: float
    passed: bool


def _docstrings(path: Path) -> dict[str, str]:
    """``name`` / ``Class.name`` of every test function in ``path`` -> the first paragraph of its docstring."""
    found: dict[str, str] = {}

    def visit(nodes: list[ast.stmt], prefix: str) -> None:
        for node in nodes:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                doc = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
                if not doc:  # no docstring: the test's name is the sentence (test_x_is_y -> "X is y.")
                    words = node.name.removeprefix("test_").replace("_", " ")
                    doc = words[:1].upper() + words[1:] + "."
                found[prefix + node.name] = doc

    with contextlib.suppress(OSError, SyntaxError):
        text = path.read_text()
        visit(ast.parse(text).body, "")
    return found


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _case_name(name: str) -> str:
    return name.removeprefix("test_").replace("_", " ")


def outcome(case: ET.Element) -> tuple[bool, str]:
    """A junit ``testcase``: (passed, what was observed). Only a run that passed counts: a skipped test proves
    nothing, so it is not passed."""
    problem = case.find("failure")
    if problem is None:
        problem = case.find("error")
    if problem is not None:
        message = (problem.get("message") or problem.text or "").strip().splitlines() or [""]
        return False, message[0]
    skipped = case.find("skipped")
    if skipped is not None:
        reason = (skipped.get("message") or "").strip().splitlines()
        return False, f"skipped: {reason[0]}" if reason else "skipped"
    return True, ""


def run_tests(modules: list[str]) -> tuple[list[CaseRow], str]:
    """pytest on ``modules``; one row per test function; the summary line."""
    with tempfile.TemporaryDirectory(prefix="parel-reliability-") as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", *modules, f"--junitxml={junit}", "-q", "-p", "no:cacheprovider",
                   "-o", "junit_family=xunit2", "-o", "junit_logging=no"]  # fmt: skip
        log(f"reliability: {' '.join(command[1:])}")
        try:
            completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_S)
            output = completed.stdout
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            output += f"\npytest timed out after {PYTEST_TIMEOUT_S} s"
        summary = next((line.strip("= ") for line in reversed(output.splitlines()) if line.strip()), "")
        if not junit.exists():
            return [CaseRow("Faults", "pytest run", "the modules collect and run", _cell(summary), 0, False)], summary
        root = ET.parse(junit).getroot()  # noqa: S314 (pytest's own report)

    # (module path, qualified function name) -> [(variant, passed, message, seconds)]
    grouped: dict[tuple[str, str], list[tuple[str, bool, str, float]]] = defaultdict(list)
    for case in root.iter("testcase"):
        parts = case.get("classname", "").split(".")
        name = case.get("name", "")
        # classname is the dotted module path, then any classes (capitalised by convention)
        split = next((i for i, part in enumerate(parts) if part[:1].isupper()), len(parts))
        module, classes = "/".join(parts[:split]) + ".py", parts[split:]
        function, _, variant = name.partition("[")
        passed, text = outcome(case)
        qualified = ".".join([*classes, function])
        grouped[(module, qualified)].append((variant.rstrip("]"), passed, text, float(case.get("time") or 0)))

    docs: dict[str, dict[str, str]] = {}
    rows = []
    for (module, qualified), variants in grouped.items():
        if module not in docs:
            docs[module] = _docstrings(ROOT / module)
        failed = [v for v in variants if not v[1]]
        count = len(variants)
        if failed:
            ids = ", ".join(f"[{v[0]}]" for v in failed) if count > 1 else ""
            word = "SKIPPED" if all(v[2].startswith("skipped") for v in failed) else "FAILED"  # either: not passed
            head = f"{word} {len(failed)}/{count}" if count > 1 else word
            observed = f"{head}{' ' + ids if ids else ''}: {failed[0][2]}"
        else:
            observed = f"passed {count}/{count}" if count > 1 else "passed"
        case = _case_name(qualified.split(".")[-1])
        if count > 1:
            case += f" ({count} variants)"
        rows.append(
            CaseRow(
                TEST_MODULES.get(module, "Faults"),
                f"{case} (`{Path(module).name}`)",
                docs[module].get(qualified, "(no docstring)"),
                observed,
                sum(v[3] for v in variants),
                not failed,
            )
        )
    return rows, summary


# --------------------------------------------------------------------------- HTTP and the database sampler


@dataclass
class Hit:
    route: str
    status: int  # 0: no HTTP answer
    ms: float
    at: float  # time.monotonic() at the start
    error: str = ""


class Client:
    """One keep-alive connection to the local API (reopened after any failure)."""

    def __init__(self, url: str, timeout_s: float = 60) -> None:
        self.host = url.removeprefix("http://")
        self.timeout_s = timeout_s
        self.connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[Hit, bytes]:
        started = time.monotonic()
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, timeout=self.timeout_s)
            self.connection.request(method, path, headers=headers or {})
            response = self.connection.getresponse()
            body = response.read()
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return Hit(path.split("?")[0], response.status, (time.monotonic() - started) * 1000, started), body
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            hit = Hit(path.split("?")[0], 0, (time.monotonic() - started) * 1000, started, type(exc).__name__)
            return hit, b""

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class ConnectionSampler:
    """Client backends of the functions (``application_name`` like ``parel-monitoring:%``) on one database."""

    def __init__(self, admin_url: str, database: str, every_s: float = SAMPLE_EVERY_S) -> None:
        self.admin_url, self.database, self.every_s = admin_url, database, every_s
        self.samples: list[tuple[float, int]] = []  # (monotonic, connections)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, application_name="parel-reliability-sampler") as conn:
            while not self._stop.is_set():
                count = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND datname = %s AND application_name LIKE %s",
                    (self.database, APP_NAME_PATTERN),
                ).fetchone()[0]
                self.samples.append((time.monotonic(), count))
                self._stop.wait(self.every_s)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def between(self, start: float, end: float) -> list[int]:
        return [count for at, count in self.samples if start <= at <= end]


class FreshDatabase:
    """A database of this run's own on the local PostgreSQL, dropped afterwards."""

    def __init__(self, admin_url: str, tag: str) -> None:
        self.admin_url = admin_url
        self.name = f"parel_reliability_{tag}_{uuid.uuid4().hex[:8]}"
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name

    def __enter__(self) -> FreshDatabase:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))


class _QuietRequestLog:
    """stderr without the local API's one line per request (thousands under load); everything else passes."""

    PATTERN = re.compile(r"^(GET|POST) /\S* \d{3} \d+ ms")

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        kept = "".join(line for line in text.splitlines(keepends=True) if not self.PATTERN.match(line))
        return self.stream.write(kept) if kept else len(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def api_env(database_url: str, redis: str, prefix: str, token: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis,
        "QUEUE_NAMES": ",".join(QUEUES),
        "BULLMQ_PREFIX": prefix,
        "ADMIN_API_TOKEN": token,
        "ALERT_TOPIC_ARN": "",
    }


def remove_prefix(redis: str, prefix: str) -> None:
    from bullmq_scenario import cleanup

    try:
        cleanup(prefix, redis)
    except Exception as exc:  # best effort: the keys are under a unique prefix
        log(f"  (could not remove {prefix}:* from Redis: {exc})")


def warm_up(api: LocalApi) -> dict[str, int]:
    """One request per health route (the cold starts, excluded from the figures); route -> status."""
    client = Client(api.url)
    try:
        return {route: client.request("GET", route)[0].status for route in HEALTH_ROUTES}
    finally:
        client.close()


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "-"


# --------------------------------------------------------------------------- load


@dataclass
class Finding:
    """One load/heal case as a RELIABILITY.md row."""

    case: str
    expected: str
    observed: str
    figures: str
    passed: bool
    details: list[str] = field(default_factory=list)  # markdown lines after the summary table


def run_load(admin_url: str, redis: str) -> Finding:
    prefix = f"reliability-{uuid.uuid4().hex[:8]}"
    token = secrets.token_urlsafe(24)
    started_case = time.monotonic()
    with (
        FreshDatabase(admin_url, "load") as db,
        # One execution environment per health function, requests queued for it rather than throttled
        # (the local API models Lambda's reserved concurrency): the connection bound below is one per function.
        LocalApi(
            BUILD_DIR,
            extra_env=api_env(db.url, redis, prefix, token),
            wait_for_environment_s=60,
            parameter_overrides={"PublicHealthReservedConcurrency": "1"},
        ) as api,
    ):
        warm = warm_up(api)
        log(f"load: warm-up {warm}; {LOAD_WORKERS} workers, {LOAD_REQUESTS} requests or {LOAD_SECONDS:g} s")
        counter = itertools.count()
        lock = threading.Lock()
        hits: list[Hit] = []
        done = [0]  # completed requests, for the connection-vs-request-count curve

        with ConnectionSampler(admin_url, db.name) as sampler:
            time.sleep(SAMPLE_EVERY_S * 2)  # the warm baseline
            start = time.monotonic()
            deadline = start + LOAD_SECONDS
            progress: list[tuple[float, int]] = []

            def worker() -> None:
                client = Client(api.url, timeout_s=30)
                try:
                    while time.monotonic() < deadline:
                        with lock:
                            index = next(counter)
                        if index >= LOAD_REQUESTS:
                            return
                        hit, _ = client.request("GET", HEALTH_ROUTES[index % len(HEALTH_ROUTES)])
                        with lock:
                            hits.append(hit)
                            done[0] += 1
                            progress.append((time.monotonic(), done[0]))
                finally:
                    client.close()

            threads = [threading.Thread(target=worker, name=f"load-{i}") for i in range(LOAD_WORKERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - start
            time.sleep(SAMPLE_EVERY_S * 2)  # after the run: the connections must still be there, not more
        during = sampler.between(start, start + elapsed)
        final = sampler.samples[-1][1] if sampler.samples else -1

    remove_prefix(redis, prefix)
    db_limit = len(DB_FUNCTIONS & {"HealthDbFunction", "HealthFunction"})
    # connections at each quarter of the requests: they must not grow with the count
    quarters = []
    for q in (1, 2, 3, 4):
        until = next((at for at, n in progress if n >= len(hits) * q / 4), start + elapsed)
        window = [c for at, c in sampler.samples if start <= at <= until]
        quarters.append(max(window) if window else 0)
    rows = []
    all_ok = True
    for route in HEALTH_ROUTES:
        mine = [h for h in hits if h.route == route]
        errors = [h for h in mine if not 200 <= h.status < 300]
        latencies = [h.ms for h in mine]
        statuses = defaultdict(int)
        for h in mine:
            statuses[h.status or h.error] += 1
        rate = len(errors) / len(mine) if mine else 1.0
        all_ok &= rate <= MAX_ERROR_RATE and bool(mine)
        rows.append([
            f"`GET {route}`", f"{len(mine):,}", f"{len(mine) / elapsed:.1f}",
            f"{median(latencies):.1f}" if mine else "-", f"{p99(latencies):.1f}" if mine else "-",
            f"{max(latencies):.1f}" if mine else "-",
            f"{_pct(len(errors), len(mine))} ({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items(), key=str))})",
        ])  # fmt: skip
    total_errors = sum(1 for h in hits if not 200 <= h.status < 300)
    max_conn = max(during) if during else -1
    connections_ok = 0 < max_conn <= db_limit and final <= db_limit and quarters[-1] <= max(quarters[0], 1)
    rps = len(hits) / elapsed
    all_latencies = [h.ms for h in hits]
    figures = (
        f"{len(hits):,} requests in {elapsed:.1f} s = {rps:.1f} req/s; p50 {median(all_latencies):.1f} ms, "
        f"p99 {p99(all_latencies):.1f} ms; errors {total_errors} ({_pct(total_errors, len(hits))}); "
        f"PostgreSQL connections max {max_conn}, final {final} (limit {db_limit}); per quarter of the requests "
        f"{' / '.join(map(str, quarters))}"
    )
    details = [
        f"### Load: warm health routes, {LOAD_WORKERS} concurrent clients",
        "",
        f"{LOAD_WORKERS} worker threads, each with its own keep-alive HTTP connection to the local API on "
        f"127.0.0.1, took request numbers from a shared counter and sent `GET` to the four health routes in "
        f"turn until {LOAD_REQUESTS:,} requests or {LOAD_SECONDS:g} s, whichever came first; one request per "
        "route beforehand started the execution environments (cold starts excluded). The local API runs one warm "
        "environment per function and one invocation at a time in each (like one Lambda instance per function: "
        "reserved concurrency 1), so the 8 clients queue per route: the latency includes that queueing. "
        f"Services: PostgreSQL (a fresh database of this run) and Redis ({len(QUEUES)} empty BullMQ queues under "
        f"a unique prefix) on 127.0.0.1. Run took {time.monotonic() - started_case:.0f} s including the set-up.",
        "",
        *table(
            ["route", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "error rate (status: count)"],
            ["---", "---:", "---:", "---:", "---:", "---:", "---"],
            rows,
        ),
        "",
        f"PostgreSQL client backends with `application_name` like `{APP_NAME_PATTERN}` on the run's database, "
        f"sampled every {SAMPLE_EVERY_S:g} s ({len(during)} samples during the run): max {max_conn}, final "
        f"{final} (after the run), max per quarter of the requests {' / '.join(map(str, quarters))}. Limit: "
        f"{db_limit}, one per database-using function served (`HealthDbFunction`, `HealthFunction`): each keeps "
        "one connection per execution environment and reuses it, so the count is flat in the request count.",
    ]
    return Finding(
        f"Load: {LOAD_WORKERS} concurrent clients on the 4 warm health routes",
        f"every request answered 2xx; PostgreSQL connections ≤ {db_limit} and not growing with the request count",
        ("met" if all_ok and connections_ok else "MISSED")
        + (f" ({total_errors} errors)" if total_errors else "")
        + ("" if connections_ok else f" (connections max {max_conn}, final {final}, quarters {quarters})"),
        figures,
        all_ok and connections_ok,
        details,
    )


# --------------------------------------------------------------------------- heal on large data under polling


def load_sessions(url: str) -> float:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        load_prisma_sessions(conn, SESSIONS, EXPIRED, HEAL_ID_ORDER)
        conn.execute('VACUUM ANALYZE "Session"')
    return time.monotonic() - started


def sessions_left(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE expires < now() AT TIME ZONE 'UTC') FROM "Session" """
        ).fetchone()


def connections_within(samples: list[int], limit: int) -> bool:
    """The connection bound holds: there are samples (none proves nothing), some connection was seen (the heal
    and the health routes hold one while they run) and none exceeds ``limit``."""
    return bool(samples) and 0 < max(samples) <= limit


def run_heal_under_load(admin_url: str, redis: str) -> Finding:
    prefix = f"reliability-{uuid.uuid4().hex[:8]}"
    token = secrets.token_urlsafe(24)
    started_case = time.monotonic()
    db_timeout_s = load_function("HealthDbFunction", BUILD_DIR).timeout_s
    health_timeout_s = {
        route: load_function(fn, BUILD_DIR).timeout_s
        for route, fn in zip(
            HEALTH_ROUTES,
            ("HealthAppFunction", "HealthDbFunction", "HealthQueueFunction", "HealthFunction"),
            strict=True,
        )
    }
    with FreshDatabase(admin_url, "heal") as db:
        log(f"heal: loading {SESSIONS:,} sessions ({EXPIRED:,} expired, {HEAL_ID_ORDER} ids) ...")
        load_s = load_sessions(db.url)
        log(f"  loaded in {load_s:.1f} s")
        env = api_env(db.url, redis, prefix, token)
        with LocalApi(BUILD_DIR, extra_env=env) as api, ConnectionSampler(admin_url, db.name) as sampler:
            warm_up(api)
            auth = {"Authorization": f"Bearer {token}"}
            heal_client = Client(api.url, timeout_s=150)
            heal_client.request("POST", "/api/admin/heal?dryRun=maybe", auth)  # warm HealFunction: a 400 at once
            hits: list[Hit] = []
            stop = threading.Event()

            def poll(route: str) -> None:
                client = Client(api.url, timeout_s=30)
                try:
                    while not stop.is_set():
                        hit, _ = client.request("GET", route)
                        hits.append(hit)
                        stop.wait(max(0.0, POLL_EVERY_S - hit.ms / 1000))
                finally:
                    client.close()

            pollers = [threading.Thread(target=poll, args=(route,), name=f"poll{route}") for route in HEALTH_ROUTES]
            for thread in pollers:
                thread.start()
            time.sleep(2)  # a baseline of polls before the heal
            heal_start = time.monotonic()
            runs: list[dict] = []
            while len(runs) < MAX_HEAL_RUNS:
                hit, body = heal_client.request("POST", "/api/admin/heal?dryRun=false&routines=sessions", auth)
                try:
                    result = json.loads(body)
                except ValueError:
                    result = {}
                sessions = (result.get("routines") or {}).get("sessions") or {}
                runs.append({"status": hit.status, "ms": hit.ms, "count": sessions.get("count", 0),
                             "batches": sessions.get("batches", 0), "partial": bool(result.get("partial")),
                             "state": result.get("status") or result.get("error") or hit.error})  # fmt: skip
                log(f"  heal run {len(runs)}: HTTP {hit.status} in {hit.ms:.0f} ms, {runs[-1]}")
                if hit.status == 409:
                    time.sleep(1)
                    continue
                if hit.status != 200 or not result.get("partial"):
                    break
            heal_end = time.monotonic()
            time.sleep(2)  # and after it
            stop.set()
            for thread in pollers:
                thread.join()
            heal_client.close()
            # Two sampling intervals either side too: a heal shorter than the interval (a quick run's) still has
            # samples, and around it the health routes hold theirs, under the same bound.
            connections = sampler.between(heal_start - 2 * SAMPLE_EVERY_S, heal_end + 2 * SAMPLE_EVERY_S)
        remaining = sessions_left(db.url)
    remove_prefix(redis, prefix)

    heal_s = heal_end - heal_start
    deleted = sum(run["count"] for run in runs)
    completed = bool(runs) and runs[-1]["status"] == 200 and not runs[-1]["partial"] and remaining == (
        SESSIONS - EXPIRED, 0)  # fmt: skip
    rows = []
    health_ok = True
    db_max = 0.0
    for route in HEALTH_ROUTES:
        during = [h for h in hits if heal_start <= h.at <= heal_end]
        mine = [h for h in during if h.route == route]
        bad = [h for h in mine if not 200 <= h.status < 300]
        latencies = [h.ms for h in mine]
        worst = max(latencies) if latencies else 0.0
        if route == "/api/health/db":
            db_max = worst
        # Each route is polled every POLL_EVERY_S: a heal of at least two intervals must have seen its polls (a
        # shorter one, a quick run's, may fall between two).
        polled = bool(mine) or heal_end - heal_start < 2 * POLL_EVERY_S
        within = polled and worst < health_timeout_s[route] * 1000
        health_ok &= within and not bad
        statuses = sorted({str(h.status or h.error) for h in bad})
        rows.append([
            f"`GET {route}`", str(len(mine)), f"{median(latencies):.1f}" if mine else "-",
            f"{worst:.1f}" if mine else "-", f"{health_timeout_s[route]:g} s",
            f"{len(bad)}{' (' + ', '.join(statuses) + ')' if statuses else ''}",
        ])  # fmt: skip
    max_conn = max(connections) if connections else -1
    conn_limit = len(DB_FUNCTIONS) + 1  # + the heal's lock connection, open while the run lasts
    connections_ok = connections_within(connections, conn_limit)
    passed = completed and health_ok and connections_ok
    run_list = "; ".join(
        f"run {i}: HTTP {r['status']} in {r['ms'] / 1000:.1f} s, {r['count']:,} deleted in {r['batches']} batches"
        f"{', partial' if r['partial'] else ''}"
        for i, r in enumerate(runs, 1)
    )
    figures = (
        f"{len(runs)} heal run(s), {deleted:,} deleted in {heal_s:.1f} s; left: {remaining[0]:,} live, "
        f"{remaining[1]:,} expired; `/api/health/db` max {db_max:.0f} ms during the heal (timeout "
        f"{db_timeout_s:g} s); non-2xx during the heal: {sum(1 for h in hits if heal_start <= h.at <= heal_end and not 200 <= h.status < 300)}; "  # noqa: E501
        f"PostgreSQL connections max {max_conn} (limit {conn_limit})"
    )
    details = [
        f"### Heal on large data while the health routes are polled ({SESSIONS:,} sessions, {EXPIRED:,} expired)",
        "",
        f'A fresh database with the Prisma adapter\'s schema (relationMode = "prisma", no expires index) and '
        f"{SESSIONS:,} sessions with {HEAL_ID_ORDER} ids (random order: the heal's slowest, IO-bound case; see "
        f"BENCHMARKS.md), the first {EXPIRED:,} expired, loaded with `generate_series` in {load_s:.0f} s and "
        "vacuumed. The four health routes were polled through the local API, each by its own client every "
        f"{POLL_EVERY_S:g} s, from 2 s before the heal to 2 s after it; the heal ran through the local API "
        "(`POST /api/admin/heal?dryRun=false&routines=sessions` with the admin token, authorizer included), "
        f"again while the 25 s API budget left it partial (at most {MAX_HEAL_RUNS} runs). All runs: {run_list}. "
        f"Case took {time.monotonic() - started_case:.0f} s including the load.",
        "",
        *table(
            ["route (during the heal)", "polls", "p50 ms", "max ms", "function timeout", "non-2xx"],
            ["---", "---:", "---:", "---:", "---:", "---"],
            rows,
        ),
        "",
        f"Sessions left afterwards: {remaining[0]:,} (all live), {remaining[1]:,} expired. PostgreSQL client "
        f"backends of the functions on that database during the heal (and {2 * SAMPLE_EVERY_S:g} s either side): "
        f"max {max_conn} (limit {conn_limit}: "
        "`HealthDbFunction`, `HealthFunction`, `HealFunction`, one each, and the heal run's lock connection).",
    ]
    return Finding(
        f"Heal on large data ({EXPIRED:,} expired of {SESSIONS:,} sessions) while health is polled every "
        f"{POLL_EVERY_S:g} s",
        "the heal completes (every expired session deleted, no live one); every health poll answers 2xx within "
        f"its function timeout; PostgreSQL connections ≤ {conn_limit}",
        ("met" if passed else "MISSED")
        + ("" if completed else " (heal incomplete)")
        + ("" if health_ok else " (a health poll failed or was slow)")
        + ("" if connections_ok else f" ({max_conn} connections)" if connections else " (no connection sample)"),
        figures,
        passed,
        details,
    )


# --------------------------------------------------------------------------- checkov


def checkov_section(result: Review | None, error: str = "") -> list[str]:
    lines = ["", "## Checkov", ""]
    if result is None:
        return [*lines, f"Not run: {error}" if error else "Not run (`--skip-checkov`)."]
    lines += [
        f"checkov {result.version} (`tools/checkov_review.py`) on the transformed template (SAM's transform of "
        "template.yaml, as JSON, CloudFormation framework): "
        f"{result.passed} checks passed, {result.failed} findings (a failed check on one resource). Each finding "
        "is fixed, or accepted for the reason given (the accepted list is in `tools/checkov_review.py`); one "
        f"that is neither fails this run: {len(result.problems)}.",
        "",
    ]
    lines += table(
        ["check", "verdict", "resources", "reason"],
        ["---"] * 4,
        [[f"{v.check_id}: {_cell(v.check_name, 120)}", v.verdict, _cell(", ".join(v.resources), 600),
          _cell(v.reason, 800)] for v in result.verdicts],
    )  # fmt: skip
    return lines


# --------------------------------------------------------------------------- Schemathesis


def schemathesis_section(result, error: str = "") -> list[str]:
    """RELIABILITY.md's Schemathesis section of a ``fuzz_api.FuzzResult`` (None: not run, ``error`` says why)."""
    from fuzz_api import CHECKS, FIXED

    lines = ["", "## Schemathesis", ""]
    if result is None:
        return [*lines, f"Not run: {error}" if error else "Not run (`--skip-schemathesis`)."]
    from importlib.metadata import version

    lines += [
        f"Schemathesis {version('schemathesis')} (`tools/fuzz_api.py`, settings in `tools/schemathesis.toml`) "
        "generated requests from `openapi.yaml` (examples, coverage and fuzzing phases, valid and invalid data) "
        "and sent them to the local API (`make api`'s routes, the built functions under the Lambda emulator) "
        "with services of the run's own: a fresh PostgreSQL database with the Auth.js Prisma schema (the heal "
        "route deletes there and nowhere else), a BullMQ prefix of its own with both queues, a webhook sink on "
        "127.0.0.1 standing in for Slack and Discord, and a random admin token sent where the contract names the "
        "`adminToken` scheme (the admin routes, and the health routes' full documents); a second pass calls the "
        "health routes without it (their public documents, rows marked anonymous). A request that finds every "
        "environment of its function busy waits for one (no 429 from the local gateway). Measured "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {result.seconds:.0f} s, seed {result.seed or '-'} "
        "(`tools/fuzz_api.py --seed` replays it).",
    ]
    totals = [f"{result.operations_tested} of {result.operations}", f"{result.cases:,}", f"{result.checks_run:,}",
              str(len(result.failures)), str(len(result.errors)), str(result.webhook_posts)]  # fmt: skip
    checks = [[f"`{name}`", f"{result.checks.get(name, [0, 0])[0]:,}", str(result.checks.get(name, [0, 0])[1])]
              for name in CHECKS]  # fmt: skip
    by_path = sorted(result.statuses.items(), key=lambda item: (item[0].split()[1], item[0]))  # anonymous after
    operations = [[f"`{label}`", f"{sum(counts.values()):,}",
                   ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))]
                  for label, counts in by_path]  # fmt: skip
    headers = ["operations tested", "cases generated", "checks run", "failures", "errors", "webhook deliveries"]
    lines += ["", *table(headers, ["---:"] * 6, [totals]), ""]
    lines += [*table(["check", "run", "failed"], ["---", "---:", "---:"], checks), ""]
    lines += table(["operation", "requests", "answers (status: count)"], ["---", "---:", "---"], operations)
    if result.failures or result.errors:
        lines += ["", "Failures and errors (Schemathesis's reproductions are in the run's output):", ""]
        lines += [f"- {_cell(problem, 600)}" for problem in [*result.failures, *result.errors]]
    commands = " then ".join(f"`{command}`" for command in result.commands)
    lines += ["", f"Command: `make reliability SECTIONS=schemathesis`, which runs {commands} (`$API_URL`: the local "
              "API it starts; the token comes from `PAREL_FUZZ_ADMIN_TOKEN`). The bounded run of `make test` is "
              "`tests/e2e/test_schemathesis_e2e.py`.", "",
              "Found by Schemathesis and fixed, each with a regression test:", ""]  # fmt: skip
    lines += [f"- {finding}" for finding in FIXED]
    return lines


def _blocks(text: str) -> list[tuple[str, str]]:
    """(heading, text) of each ``## `` section of a report, in order; the text before the first has heading ''."""
    parts = re.split(r"(?m)^(?=## )", text)
    return [(part.splitlines()[0][3:].strip() if part.startswith("## ") else "", part.strip("\n")) for part in parts]


def merge_sections(old: str, new: str, headings: list[str]) -> str:
    """``old`` with the sections named ``headings`` taken from ``new`` (appended when ``old`` lacks them)."""
    fresh = dict(_blocks(new))
    merged = [fresh[heading] if heading in headings and heading in fresh else block for heading, block in _blocks(old)]
    present = {heading for heading, _ in _blocks(old)}
    merged += [fresh[heading] for heading in headings if heading not in present and heading in fresh]
    return "\n\n".join(block for block in merged if block) + "\n"


# --------------------------------------------------------------------------- report


def report(rows: list[CaseRow], findings: list[Finding], summary: str, modules: list[str], missing: list[str],
           started: datetime, seconds: float, versions: str, checkov: list[str] | None = None,
           fuzz: list[str] | None = None) -> str:  # fmt: skip
    lines = [
        "# Reliability: faults, hostile input, injection, secrets and load",
        "",
        "Produced by `make reliability` (`tools/reliability.py`); do not edit by hand. Every row is a case that "
        "was actually run: the quick cases are tests of the normal suite (`make test` runs them too), the "
        "load and heal-on-large-data cases run only here.",
        *(["", QUICK_NOTE] if QUICK else []),
        "",
        "## How to reproduce",
        "",
        "```bash",
        "make reliability   # venv, Lambda runtime, node deps, sam build, then tools/reliability.py",
        "```",
        "",
        "It needs PostgreSQL and Redis on 127.0.0.1 (or `DATABASE_URL` / `REDIS_URL`; throwaway servers are "
        "started from local binaries otherwise). It exits non-zero when any case failed.",
        "",
        "## When and where",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {platform.machine()} ({os.cpu_count()} CPUs), {versions}, "
        f"in {seconds:.0f} s. Test modules run: {', '.join(f'`{m}`' for m in modules) or 'none'}"
        + (f"; not present (not run): {', '.join(f'`{m}`' for m in missing)}" if missing else "")
        + f". pytest: {summary or 'not run'}.",
        "",
        "Expected behaviour = the test function's docstring; observed = passed, or FAILED with the first line of "
        "the failure message (parametrized variants are one row; the failing ones are named).",
    ]
    for section in SECTIONS:
        lines += ["", f"## {section}", ""]
        mine = [r for r in rows if r.section == section]
        if section == "Load":
            if findings:
                lines += table(
                    ["case", "expected behaviour", "observed", "figures"],
                    ["---"] * 4,
                    [[_cell(f.case), _cell(f.expected), f.observed, f.figures] for f in findings],
                )
                for finding in findings:
                    lines += ["", *finding.details]
            else:
                lines.append("Not run (`--skip-load`).")
            if not mine:
                continue
            lines.append("")
        if not mine:
            lines.append("No test module of this group exists yet." if modules else
                         "Not run (`--skip-tests`, or `--sections` without `tests`).")  # fmt: skip
            continue
        failed = sum(1 for r in mine if not r.passed)
        lines += [f"{len(mine)} cases, {failed} failed.", ""]
        lines += table(["case", "expected behaviour", "observed", "duration s"], ["---", "---", "---", "---:"],
                       [[_cell(r.case), _cell(r.expected), _cell(r.observed, 400), f"{r.seconds:.2f}"]
                        for r in mine])  # fmt: skip
    lines += checkov or []
    lines += fuzz or []
    return "\n".join(lines) + "\n"


def versions(admin_url: str) -> str:
    with psycopg.connect(admin_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    return f"Python {platform.python_version()}, PostgreSQL {pg}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-tests", action="store_true", help="only the load and heal cases")
    parser.add_argument("--skip-load", action="store_true", help="only the test modules")
    parser.add_argument("--skip-checkov", action="store_true", help="no checkov review")
    parser.add_argument("--skip-schemathesis", action="store_true", help="no Schemathesis run")
    parser.add_argument("--sections", help=f"only these groups ({', '.join(SECTION_GROUPS)}, comma-separated); "
                        "their sections of RELIABILITY.md are replaced, the others kept")  # fmt: skip
    args = parser.parse_args(argv)
    if args.sections:
        chosen = [name.strip() for name in args.sections.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in SECTION_GROUPS]
        if unknown or not chosen:
            known = ", ".join(SECTION_GROUPS)
            parser.error(f"--sections: unknown {', '.join(unknown) or '(none given)'}; known: {known}")
        for group in SECTION_GROUPS:
            if group not in chosen:
                setattr(args, f"skip_{group}", True)
    started_at, started = datetime.now(UTC), time.monotonic()
    modules = [m for m in TEST_MODULES if (ROOT / m).exists()]
    missing = [m for m in TEST_MODULES if m not in modules]
    rows: list[CaseRow] = []
    summary = ""
    if not args.skip_tests and modules:
        rows, summary = run_tests(modules)
        log(f"reliability: pytest: {summary}")
    checkov, checkov_error = None, ""
    if not args.skip_checkov:
        try:
            checkov = review_template()
            log(f"reliability: checkov: {checkov.failed} findings, {len(checkov.problems)} neither fixed nor accepted")
        except Exception as exc:  # reported as a failed section; the other cases still run
            checkov_error = f"checkov failed: {_cell(repr(exc))}"
            log(f"reliability: {checkov_error}")
    admin_url, _ = postgres_url()
    redis, _ = redis_url()
    findings: list[Finding] = []
    if not args.skip_load:
        sys.stderr = quiet = _QuietRequestLog(sys.stderr)
        try:
            for case in (run_load, run_heal_under_load):
                try:
                    findings.append(case(admin_url, redis))
                except Exception as exc:  # a crashed case is a failed row, and the others still run
                    log(f"reliability: {case.__name__} crashed: {exc!r}")
                    findings.append(Finding(case.__name__, "runs to the end", f"MISSED: crashed: {_cell(repr(exc))}",
                                            "-", False))  # fmt: skip
                log(f"reliability: {findings[-1].case}: {findings[-1].observed}; {findings[-1].figures}")
        finally:
            sys.stderr = quiet.stream
    fuzzed, fuzz_error = None, ""
    if not args.skip_schemathesis:
        from fuzz_api import fuzz

        try:
            fuzzed = fuzz(FUZZ_MAX_EXAMPLES, FUZZ_WORKERS)
            log(
                f"reliability: schemathesis: {fuzzed.operations} operations, {fuzzed.cases} cases, "
                f"{fuzzed.checks_run} checks, {len(fuzzed.failures)} failures, {len(fuzzed.errors)} errors"
            )
            if not fuzzed.passed:
                log(fuzzed.output[-20000:])  # the failures with their reproductions
        except Exception as exc:  # reported as a failed section; the report is still written
            fuzz_error = f"Schemathesis run failed: {_cell(repr(exc))}"
            log(f"reliability: {fuzz_error}")
    text = report(rows, findings, summary, modules if not args.skip_tests else [], missing, started_at,
                  time.monotonic() - started, versions(admin_url), checkov_section(checkov, checkov_error),
                  schemathesis_section(fuzzed, fuzz_error))  # fmt: skip
    if args.sections and OUTPUT.exists():
        headings = [heading for name in chosen for heading in SECTION_GROUPS[name]]
        text = merge_sections(OUTPUT.read_text(), text, headings)
    OUTPUT.write_text(text)
    failed = [r.case for r in rows if not r.passed] + [f.case for f in findings if not f.passed]
    if fuzz_error:
        failed.append(fuzz_error)
    if fuzzed is not None and not fuzzed.passed:
        failed += [f"schemathesis: {problem}" for problem in [*fuzzed.failures, *fuzzed.errors]] or [
            f"schemathesis: exit status {fuzzed.returncode}, {fuzzed.cases} cases"]  # fmt: skip
    if checkov_error:
        failed.append(checkov_error)
    failed += [
        f"checkov {v.check_id} {v.verdict}: {', '.join(v.resources)}" for v in (checkov.problems if checkov else [])
    ]
    log(f"reliability: wrote {OUTPUT.name} in {time.monotonic() - started:.0f} s; {len(failed)} failed")
    for case in failed:
        log(f"  FAILED: {case}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
