"""A flood on the public health routes: what it costs PostgreSQL and Redis, written into BENCHMARKS.md.

The built bundle is served by the local API (tools/local_api.py: the template's routes, each function
under the Lambda emulator with Lambda's concurrency model) against a throwaway PostgreSQL and a
throwaway Redis on free loopback ports, so nothing but the flood moves their counters. Per route
(``/api/health/db``, ``/api/health/queue``, ``/api/health``) and configuration, from cold (no
execution environment yet, as a flood meets a quiet stack), ``CLIENTS`` keep-alive clients send
anonymous GETs back to back for ``WARMUP`` seconds and then ``SECONDS`` measured seconds:

* **bounded**: the template's defaults (reserved concurrency ``PublicHealthReservedConcurrency``,
  ``HEALTH_CACHE_TTL_S`` unset, i.e. 5 s) and the read-only monitoring role of
  migrations/002_monitoring_role.sql as the database credential;
* **baseline** (measured in the same run): the unbounded, uncached behaviour: every reserved
  concurrency raised to ``BASELINE_ENVIRONMENTS``, ``HEALTH_CACHE_TTL_S=0`` (through the env-vars file,
  as ``sam local`` passes it), the admin credential (the heal's, as before the monitoring role).

Measured server-side, as rates over the measured seconds: PostgreSQL transactions of the flood's own
database (``pg_stat_database`` ``xact_commit + xact_rollback``; each new connection counts one
transaction too, so the db checks are the transactions minus the environments started) and Redis
commands (``total_commands_processed``, the sampler's own INFO calls subtracted); as peaks over the
whole case: client backends (``pg_stat_activity``) and Redis clients (``INFO clients``), sampled every
100 ms. Targets, on the whole bounded run (transactions read after every environment stopped, so every
backend has flushed its counters): at most one database check per execution environment per TTL, and
connections never above the documented bound (the route function's reserved concurrency). Exits
non-zero when a target is MISSED (after writing the section).

The load generator is a subprocess of this script (a thread per client, each with one ``http.client``
keep-alive connection): wrk/hey/ab/locust are not Python packages of this repository, and a client
that only counts statuses and reads two headers needs nothing more; the separate process keeps the
clients off the local API's interpreter lock.

Run (or `make bench`):
``PYTHONPATH=layers/shared:tests:tools:benchmarks .venv/bin/python benchmarks/bench_flood.py [--seconds 15]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from report import missed_status, quick

ROOT = Path(__file__).resolve().parent.parent
MIGRATION = ROOT / "migrations" / "002_monitoring_role.sql"
ROUTES = ("/api/health/db", "/api/health/queue", "/api/health")
CLIENTS = quick(50, 4)
WARMUP = quick(5.0, 3.0)  # at least; then until no environment has started for SETTLED seconds (MAX_WARMUP at most)
SETTLED = 2.0  # a quick run too: the environments started must have finished their cold start
MAX_WARMUP = quick(30.0, 10.0)
SECONDS = quick(15.0, 2.0)
BASELINE_ENVIRONMENTS = 50
FLOOD_DATABASE = "parel_flood"
MONITOR_ROLE = "parel_monitor"
QUEUES = ("high-priority", "default", "low-priority")  # the template's QueueNames default
# Their jobs wait through the whole run with no worker: a week of grace and age keeps the queues healthy
# (issue 15's no-worker and age rules would turn the high-priority queue unhealthy after a minute).
QUIET_QUEUES = {name: "604800" for name in ("QUEUE_NO_WORKER_GRACE_S", "QUEUE_AGE_WARNING_S", "QUEUE_AGE_CRITICAL_S")}
TIMES = "\N{MULTIPLICATION SIGN}"


# --------------------------------------------------------------------------- the load generator (subprocess)


def flood(url: str, path: str, clients: int, max_warmup: float, seconds: float) -> dict[str, Any]:
    """``clients`` threads, each with one keep-alive connection, sending GET ``path`` back to back.

    Prints ``start`` when they start and stops ``seconds`` after a line ``measure`` arrives on stdin (the
    parent's signal that the warm-up is over), or after ``max_warmup`` + ``seconds`` at the latest. Counts
    every request, the warm-up's included.
    """
    parts = urlsplit(url)
    start = threading.Barrier(clients + 1)
    lock = threading.Lock()
    statuses: Counter[int] = Counter()
    totals = {"cached": 0, "errors": 0, "warmup_requests": 0}
    max_ages: set[str] = set()
    latencies: list[float] = []
    window = [math.inf, math.inf]  # measured from, until (monotonic)

    def client() -> None:
        mine: Counter[int] = Counter()
        cached = errors = warm = 0
        ages: set[str] = set()
        times: list[float] = []
        connection: http.client.HTTPConnection | None = None
        start.wait(timeout=60)
        while time.monotonic() < window[1]:
            begun = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                if connection is not None:
                    connection.close()
                connection = None
                continue
            if (response.getheader("connection") or "").lower() == "close":
                connection.close()
                connection = None
            done = time.monotonic()
            if done >= window[1]:
                break
            warm += done < window[0]
            times.append((time.perf_counter() - begun) * 1000)
            mine[response.status] += 1
            if response.status != 429:
                cached += int(response.getheader("age") or 0) >= 1  # Age 0: computed for this request
                if match := re.search(r"max-age=(\d+)", response.getheader("cache-control") or ""):
                    ages.add(match[1])
        if connection is not None:
            connection.close()
        with lock:
            statuses.update(mine)
            totals["cached"] += cached
            totals["errors"] += errors
            totals["warmup_requests"] += warm
            max_ages.update(ages)
            latencies.extend(times)

    def measure() -> None:
        sys.stdin.readline()  # "measure" (or EOF: the parent is gone; measure and stop all the same)
        now = time.monotonic()
        window[:] = [now, now + seconds]

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    threading.Thread(target=measure, daemon=True).start()
    start.wait(timeout=60)
    print("start", flush=True)
    deadline = began + max_warmup
    while window[0] == math.inf and time.monotonic() < deadline:
        time.sleep(0.05)
    if window[0] == math.inf:
        now = time.monotonic()
        window[:] = [now, now + seconds]
    for thread in threads:
        thread.join(timeout=seconds + 60)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] if latencies else None
    return {"statuses": dict(statuses), "p50_ms": p50, "max_age": sorted(max_ages), **totals,
            "warmup_seconds": window[0] - began, "total_seconds": time.monotonic() - began}  # fmt: skip


def run_flood(
    url: str,
    path: str,
    clients: int,
    warmup: float,
    seconds: float,
    started: Callable[[], int],
) -> dict[str, Any]:
    """The load generator in a subprocess: it floods until the environments are warm, then ``seconds`` more.

    Warm: at least ``warmup`` seconds into the flood and no environment started (``started()``) for
    ``SETTLED`` seconds, or ``MAX_WARMUP`` seconds into it.
    """
    command = [sys.executable, __file__, "--client", url, path, str(clients), str(MAX_WARMUP), str(seconds)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    assert process.stdin and process.stdout and process.stderr
    try:
        first = process.stdout.readline()
        if not first.startswith("start"):
            raise RuntimeError(f"load generator did not start: {first}{process.stderr.read()}")
        began = time.monotonic()
        count, changed = started(), began
        while time.monotonic() - began < MAX_WARMUP - 0.5:
            time.sleep(0.1)
            if (now_started := started()) != count:
                count, changed = now_started, time.monotonic()
            if time.monotonic() - began >= warmup and time.monotonic() - changed >= SETTLED:
                break
        out, err = process.communicate("measure\n", timeout=seconds + 120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{err}")
    return json.loads(out)


# --------------------------------------------------------------------------- what the servers saw


class Sampler:
    """Peak client backends of the flood's database and peak Redis clients, every 100 ms, in a thread.

    Every Redis INFO of the benchmark goes through :meth:`info` (one connection, one lock), so the
    commands it adds to ``total_commands_processed`` are known exactly.
    """

    def __init__(self, pg_admin: Any, redis_client: Any, database: str) -> None:
        self.pg, self.redis, self.database = pg_admin, redis_client, database
        self.peak_pg = self.peak_redis = 0
        self.info_calls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def info(self, section: str) -> tuple[dict[str, Any], int]:
        """``(INFO section, INFO calls made before this one)``."""
        with self._lock:
            before = self.info_calls
            self.info_calls += 1
            return self.redis.info(section), before

    def _sample(self) -> None:
        (backends,) = self.pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            (self.database,),
        ).fetchone()
        clients = int(self.info("clients")[0]["connected_clients"]) - 1  # not the benchmark's own
        self.peak_pg, self.peak_redis = max(self.peak_pg, backends), max(self.peak_redis, clients)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()


@dataclass
class Case:
    route: str
    config: str  # "bounded" or "baseline"
    function: str = ""
    limit: int = 0
    ttl_s: str = ""
    seconds: float = 0.0  # the whole case: warm-up + the measured seconds
    warmup_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    cached: int = 0
    errors: int = 0
    p50_ms: float | None = None
    started: int = 0  # environments
    peak_environments: int = 0
    xacts: int = 0  # exact: read after every backend exited
    redis_commands: int = 0
    peak_pg: int = 0
    peak_redis: int = 0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def ran(self) -> int:
        """Requests a function answered (not throttled by the local API)."""
        return sum(count for status, count in self.statuses.items() if status != "429")

    @property
    def uses_db(self) -> bool:
        return self.route != "/api/health/queue"

    @property
    def db_checks(self) -> int:
        """Transactions minus the one each new connection costs."""
        return max(0, self.xacts - self.started) if self.uses_db else 0

    def rate(self, count: float) -> float:
        return count / self.seconds if self.seconds else 0.0

    def allowed_checks(self) -> int | None:
        """At most one check per environment per TTL: each environment's first, then one per elapsed TTL."""
        if not self.ttl_s.isdigit() or int(self.ttl_s) == 0:
            return None
        return self.started * (math.floor(self.seconds / int(self.ttl_s)) + 1)


# --------------------------------------------------------------------------- one case


def pg_xacts(pg_admin: Any, database: str) -> int:
    row = pg_admin.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (database,)
    ).fetchone()
    return int(row[0])


def wait_for_no_backends(pg_admin: Any, database: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        (count,) = pg_admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            (database,),
        ).fetchone()
        if count == 0:
            time.sleep(0.5)  # the exiting backends' statistics are flushed before their slot is freed
            return
        time.sleep(0.1)
    raise RuntimeError(f"backends of {database} still connected {seconds:g} s after the environments stopped")


def snapshot_build(directory: Path, build_dir: Path) -> Path:
    """A copy of `make build`'s output, so a rebuild during the run (another make target) cannot disturb it."""
    import fcntl
    import shutil

    lock_path = Path(os.environ.get("BUILD_LOCK", "/tmp/parel-build.lock"))  # noqa: S108 (flock's, if any)
    target = directory / "build"
    with open(lock_path, "a") if lock_path.parent.is_dir() else open(os.devnull) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build holding it (flock ... make build) finishes first
        if not (build_dir / "template.yaml").exists():
            raise RuntimeError(f"{build_dir} has no template.yaml: run `make build` first")
        shutil.copytree(build_dir, target, symlinks=True)
    return target


def run_case(case: Case, services: dict[str, Any], clients: int, warmup: float, seconds: float) -> Case:
    from local_api import LocalApi

    pg_admin, redis_client = services["pg_admin"], services["redis"]
    if case.config == "baseline":
        overrides = {name: str(BASELINE_ENVIRONMENTS) for name in services["reserved_parameters"]}
        env_vars = {"Parameters": {"HEALTH_CACHE_TTL_S": "0", **QUIET_QUEUES}}
        database_url = services["admin_url"]
    else:
        overrides, env_vars, database_url = {}, {"Parameters": dict(QUIET_QUEUES)}, services["monitor_url"]
    extra_env = {"DATABASE_URL": database_url, "REDIS_URL": services["redis_url"]}
    xacts_before = pg_xacts(pg_admin, FLOOD_DATABASE)
    api = LocalApi(services["build_dir"], env_vars=env_vars, extra_env=extra_env, parameter_overrides=overrides,
                   max_environments=BASELINE_ENVIRONMENTS, request_log=False)  # fmt: skip
    case.function = next(route.function for route in api.routes if route.path == case.route)
    case.limit = api.limits[case.function]
    sampler = Sampler(pg_admin, redis_client, FLOOD_DATABASE)
    stats_before, calls_before = sampler.info("stats")
    try:
        api.start()
        with sampler:
            started = lambda: api.environment_stats()[case.function]["started"]  # noqa: E731
            result = run_flood(api.url, case.route, clients, warmup, seconds, started)
        stats = api.environment_stats()[case.function]
    finally:
        api.stop()
    # Exact once every backend has exited: a busy one may hold its counters back for many seconds.
    wait_for_no_backends(pg_admin, FLOOD_DATABASE)
    case.xacts = pg_xacts(pg_admin, FLOOD_DATABASE) - xacts_before
    stats_after, calls_after = sampler.info("stats")
    # INFO does not count itself in the figure it reports: the INFO calls from the first one on are ours.
    commands = int(stats_after["total_commands_processed"]) - int(stats_before["total_commands_processed"])
    case.redis_commands = commands - (calls_after - calls_before)
    case.seconds, case.warmup_seconds = result["total_seconds"], result["warmup_seconds"]
    case.statuses = {str(k): v for k, v in result["statuses"].items()}
    case.cached, case.errors, case.p50_ms = result["cached"], result["errors"], result["p50_ms"]
    case.ttl_s = ",".join(result["max_age"]) or "0"
    case.started, case.peak_environments = stats["started"], stats["peak"]
    case.peak_pg, case.peak_redis = sampler.peak_pg, sampler.peak_redis
    return case


# --------------------------------------------------------------------------- services


def start_services(build_dir: Path) -> dict[str, Any]:
    import psycopg
    import redis as redis_py

    import services
    from bullmq_scenario import run_scenario
    from lambda_emulator import load_function
    from local_api import LocalApi

    pg_url, pg_where = services.start_throwaway_postgres()
    redis_url, redis_where = services.start_throwaway_redis()
    log(f"PostgreSQL: {pg_where}\nRedis: {redis_where}")
    pg_admin = psycopg.connect(pg_url, autocommit=True)
    pg_admin.execute(f"CREATE DATABASE {FLOOD_DATABASE}")
    base = pg_url.rsplit("/", 1)[0]
    admin_url = f"{base}/{FLOOD_DATABASE}"
    psql = services._find_binary("psql")
    if not psql:
        raise RuntimeError("psql not found (the monitoring role's migration runs through it)")
    migration = subprocess.run(
        [psql, admin_url, "-X", "-q", "-v", f"monitor_role={MONITOR_ROLE}", "-f", str(MIGRATION)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if migration.returncode != 0:
        raise RuntimeError(f"migrations/002 failed:\n{migration.stdout}{migration.stderr}")
    connection_limit = int(re.search(r"CONNECTION LIMIT (\d+)", migration.stdout)[1])
    monitor_url = f"postgresql://{MONITOR_ROLE}@{urlsplit(pg_url).netloc.split('@')[-1]}/{FLOOD_DATABASE}"
    for queue in QUEUES:  # healthy queues, filled by the real bullmq
        run_scenario("populate", "bull", queue, redis_url, completed=3, waiting=2, delayed=1, prioritized=1)

    api = LocalApi(build_dir)
    functions = {route.function for route in api.routes if route.path in ROUTES}
    template = _built_template(build_dir)
    reserved_parameters = set()
    for function in functions:
        node = template["Resources"][function]["Properties"].get("ReservedConcurrentExecutions")
        if isinstance(node, dict) and "Ref" in node:
            reserved_parameters.add(node["Ref"])
        elif node is not None:
            raise RuntimeError(f"{function}: ReservedConcurrentExecutions {node!r} is not a parameter to raise")
    undeclared = [f for f in functions if "HEALTH_CACHE_TTL_S" not in load_function(f, build_dir).environment]
    if undeclared:
        raise RuntimeError(f"HEALTH_CACHE_TTL_S is not declared for {', '.join(sorted(undeclared))}: make build")
    redis_client = redis_py.Redis.from_url(redis_url, single_connection_client=True)  # used under Sampler's lock
    with psycopg.connect(pg_url) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    return {
        "build_dir": build_dir,
        "pg_admin": pg_admin,
        "redis": redis_client,
        "redis_url": redis_url,
        "admin_url": admin_url,
        "monitor_url": monitor_url,
        "connection_limit": connection_limit,
        "reserved_parameters": sorted(reserved_parameters),
        "reserved_defaults": {name: template["Parameters"][name].get("Default") for name in reserved_parameters},
        "pg_version": pg_version,
        "redis_version": redis_client.info("server")["redis_version"],
        "max_connections": int(pg_admin.execute("SHOW max_connections").fetchone()[0]),
    }


def _built_template(build_dir: Path) -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse

    return yaml_parse((build_dir / "template.yaml").read_text())


# --------------------------------------------------------------------------- the section


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ratio(baseline: float, bounded: float) -> str:
    if bounded <= 0:
        return f"{baseline:,.1f} vs 0" if baseline else "\N{EN DASH}"
    return f"{baseline / bounded:,.1f}{TIMES}"


def section(cases: list[Case], services: dict[str, Any], clients: int, warmup: float, seconds: float) -> str:
    from report import table

    rows = []
    for case in cases:
        rows.append([
            f"`{case.route}`", case.config, f"{case.limit}", case.ttl_s, f"{case.rate(case.requests):,.0f}",
            f"{case.rate(case.ran):,.0f}", f"{case.rate(case.statuses.get('429', 0)):,.0f}",
            f"{case.cached / case.ran * 100:.1f} %" if case.ran else "", f"{case.started}",
            f"{case.rate(case.xacts):,.1f}", f"{case.rate(case.db_checks):,.1f}" if case.uses_db else "",
            f"{case.peak_pg}", f"{case.rate(case.redis_commands):,.1f}", f"{case.peak_redis}",
            f"{case.seconds:.1f} ({case.warmup_seconds:.1f})",
        ])  # fmt: skip
    verdicts: list[str] = []
    ratio_rows = []
    for route in ROUTES:
        bounded = next(c for c in cases if c.route == route and c.config == "bounded")
        baseline = next(c for c in cases if c.route == route and c.config == "baseline")
        allowed = bounded.allowed_checks()
        if not bounded.uses_db:
            check_ok = bounded.peak_pg == 0
            check_text = f"no PostgreSQL connection (peak {bounded.peak_pg}); target none"
        else:
            check_ok = allowed is not None and bounded.db_checks <= allowed
            check_text = (
                f"{bounded.db_checks} in {bounded.seconds:.1f} s by {bounded.started} environments; one per "
                f"environment per {bounded.ttl_s} s allows {allowed}"
                if allowed is not None
                else "cache off"
            )
        stores_ok = bounded.peak_pg <= bounded.limit and bounded.peak_redis <= bounded.limit
        verdicts += ["met" if check_ok else "MISSED", "met" if stores_ok else "MISSED"]
        ratio_rows.append([
            f"`{route}`", ratio(baseline.rate(baseline.xacts), bounded.rate(bounded.xacts)),
            ratio(baseline.peak_pg, bounded.peak_pg),
            ratio(baseline.rate(baseline.redis_commands), bounded.rate(bounded.redis_commands)),
            ratio(baseline.peak_redis, bounded.peak_redis),
            f"{check_text}: **{'met' if check_ok else 'MISSED'}**",
            f"PostgreSQL {bounded.peak_pg}, Redis {bounded.peak_redis}; bound {bounded.limit}: "
            f"**{'met' if stores_ok else 'MISSED'}**",
        ])  # fmt: skip
    unexpected = [f"{case.route} {case.config}: {status} {TIMES} {count}" for case in cases
                  for status, count in sorted(case.statuses.items()) if status not in ("200", "429")]  # fmt: skip
    errors = sum(case.errors for case in cases)
    answers = (
        "Every answer a function gave was 200 (healthy), with the monitoring role's rights in the bounded runs"
        if not unexpected
        else "Answers other than 200 and 429: " + "; ".join(unexpected)
    ) + (f"; {errors} requests failed at the connection level." if errors else "; no request failed.")
    parameters = ", ".join(f"`{name}` = {value}" for name, value in services["reserved_defaults"].items())
    overall = "met" if all(v == "met" for v in verdicts) else "MISSED"
    header = ["route", "configuration", "environment limit", "TTL s", "requests/s", "answered by a function /s",
              "throttled (429) /s", "from cache", "environments started", "PostgreSQL transactions/s",
              "db checks/s", "peak PostgreSQL connections", "Redis commands/s", "peak Redis clients",
              "seconds (warm-up)"]  # fmt: skip
    ratio_header = ["route", "PostgreSQL transactions/s", "peak PostgreSQL connections", "Redis commands/s",
                    "peak Redis clients", "database checks (bounded)",
                    "connections ≤ the documented bound (the route function's reserved concurrency)"]  # fmt: skip
    min_warm = min(case.warmup_seconds for case in cases)
    max_warm = max(case.warmup_seconds for case in cases)
    intro = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} ({os.cpu_count()} CPUs), Python "
        f"{sys.version.split()[0]}, throwaway PostgreSQL {services['pg_version']} (`max_connections` "
        f"{services['max_connections']}) and Redis {services['redis_version']} on free loopback ports, through the "
        "local API (`tools/local_api.py`: the built template's routes, each function under the Lambda emulator, "
        f"Lambda's concurrency model). Per route and configuration: {clients} anonymous clients, each on one "
        "keep-alive connection, send GETs back to back from cold (no execution environment yet): a warm-up until "
        f"no environment has started for {SETTLED:g} s (at least {warmup:g} s; it took {min_warm:.0f} to "
        f"{max_warm:.0f} s), then {seconds:g} s more ({seconds:g} s rather than 30 s keeps `make bench` short; "
        f"they span {seconds / 5:g} TTLs). Every figure covers the whole case, warm-up included. **bounded**: the "
        f"template's defaults ({parameters}; `HEALTH_CACHE_TTL_S` unset = 5 s) and the monitoring role of "
        f"`migrations/002_monitoring_role.sql` (CONNECTION LIMIT {services['connection_limit']}). **baseline**, "
        "measured in the same run: the unbounded, uncached behaviour: reserved concurrency raised to "
        f"{BASELINE_ENVIRONMENTS} environments, `HEALTH_CACHE_TTL_S=0`, the admin credential."
    )
    method = (
        "PostgreSQL transactions are `xact_commit + xact_rollback` of the flood's own database, read before the "
        "environments start and after every one has stopped (a busy backend can hold its counters back for many "
        "seconds; an exiting one flushes them), so they are exact; each check is one transaction and each new "
        "connection one more, so db checks = transactions minus environments started (autovacuum's few "
        "transactions in that database count too, so a route without database may show a trace). Connections and "
        "Redis "
        "clients are sampled every 100 ms from `pg_stat_activity` (the flood's database) and `INFO clients`; "
        "Redis commands are the throwaway server's `total_commands_processed`, the benchmark's own INFO calls "
        'subtracted. "From cache": answers with `Age` ≥ 1 (computed for an earlier request). A throttled request '
        "never reaches a function: the local API answers 429 when every environment the function may have is "
        "busy (on AWS, API Gateway answers a request Lambda throttles with 500, and the template's route "
        "throttling, `PublicRouteThrottlingRateLimit` / `PublicRouteThrottlingBurstLimit`, which the local API "
        "does not model, would turn most of this flood away with 429 before Lambda)."
    )
    reading = (
        f"The baseline's rates are what {os.cpu_count()} CPUs can serve with up to {BASELINE_ENVIRONMENTS} "
        "environments sharing them, cold starts included (which lowers them and so understates the ratios); on "
        "Lambda each environment has its own CPU, so the unbounded footprint grows with the flood (and the ratios "
        "with it), while the bounded one does not depend on the request rate at all: at most environments ÷ TTL "
        "database checks per second. The load generator is a subprocess of `bench_flood.py` with one thread and "
        "one `http.client` keep-alive connection per client: wrk/hey are not Python packages of this repository, "
        "and counting statuses and two headers needs nothing more."
    )
    return "\n".join([
        "## Flood on the public health routes (`benchmarks/bench_flood.py`)", "", intro, "",
        *table(header, ["---", "---", *["---:"] * 13], rows), "",
        "Baseline ÷ bounded, and the targets (on the bounded runs):", "",
        *table(ratio_header, ["---", "---:", "---:", "---:", "---:", "---", "---"], ratio_rows), "",
        method, "", reading, "", answers, "",
        "Targets: at most one database check per environment per TTL, and connections never above the documented "
        f"bound: **{overall}**.",
    ])  # fmt: skip


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=float, default=WARMUP, help=f"from cold, before measuring ({WARMUP:g})")
    parser.add_argument(
        "--seconds", type=float, default=SECONDS, help=f"measured, per route and configuration ({SECONDS:g})"
    )
    parser.add_argument("--clients", type=int, default=CLIENTS, help=f"concurrent clients ({CLIENTS})")
    parser.add_argument("--routes", nargs="*", default=list(ROUTES), choices=ROUTES)
    parser.add_argument("--no-write", action="store_true", help="print the section without writing BENCHMARKS.md")
    parser.add_argument("--build-dir", type=Path, help="a `sam build` output (default: make build's .aws-sam/local)")
    parser.add_argument(
        "--client", nargs=5, metavar=("URL", "PATH", "CLIENTS", "WARMUP", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.client:  # the load generator's subprocess
        url, path, clients, warmup, seconds = args.client
        print(json.dumps(flood(url, path, int(clients), float(warmup), float(seconds))))  # warmup: the maximum
        return 0
    if not (1 <= args.clients <= 200 and 0 <= args.warmup <= 30 and 1 <= args.seconds <= 60):
        parser.error("--clients must be 1..200, --warmup 0..30 and --seconds 1..60 (a bounded flood)")

    import tempfile

    with tempfile.TemporaryDirectory(prefix="parel-flood-") as directory:
        return _run(args, Path(directory))


def _run(args: argparse.Namespace, directory: Path) -> int:
    from lambda_emulator import BUILD_DIR

    services = start_services(snapshot_build(directory, (args.build_dir or BUILD_DIR).resolve()))
    cases = []
    for route in args.routes:
        for config in ("baseline", "bounded"):
            log(f"flood: {route} {config}, {args.clients} clients, warm-up ≥ {args.warmup:g} s, {args.seconds:g} s ...")
            case = run_case(Case(route, config), services, args.clients, args.warmup, args.seconds)
            log(f"  {case.rate(case.requests):,.0f} requests/s ({case.statuses}, p50 {case.p50_ms or 0:.1f} ms), "
                f"{case.started} environments, {case.rate(case.xacts):,.1f} PostgreSQL transactions/s, "
                f"{case.db_checks} db checks in {case.seconds:.1f} s, peak {case.peak_pg} connections, "
                f"{case.rate(case.redis_commands):,.1f} Redis commands/s, peak {case.peak_redis} clients")  # fmt: skip
            cases.append(case)
    if set(args.routes) != set(ROUTES):
        return 0  # a partial run (debugging): no section
    body = section(cases, services, args.clients, args.warmup, args.seconds)
    if not args.no_write:
        from bench import write_section

        write_section("health-flood", body)
    print(body)
    return missed_status("MISSED" in body)


if __name__ == "__main__":
    sys.exit(main())
