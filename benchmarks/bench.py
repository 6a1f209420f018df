"""`make bench`: cold init and warm latency of the functions, written into BENCHMARKS.md.

Cold init: each function, as a plain `sam build` (no make) builds it into a
temporary directory for this machine's architecture, is started fresh under the
Lambda Runtime Interface Emulator several times; the emulator's INIT REPORT
(interpreter start, runtime client, handler import and init code) is collected
and the median compared with its import floor measured in the same run, the same
way (fresh emulator per sample, interleaved): a stub handler on the same built
layer importing only the Powertools Logger, or for the functions that need a
database, queue or HTTP client only the shared logger and those clients.

Warm latency: each function's handler is called directly, many times, in its own
subprocess of the Lambda interpreter (benchmarks/bench_health.py) against the real
PostgreSQL and Redis (20 BullMQ queues populated by the real bullmq under a unique
prefix, removed afterwards), next to the raw round trips it is compared with;
the emulator's REPORT Duration of warm invocations is shown beside it.

Exits non-zero when a target is MISSED (after writing every section). ``--sections cold-init`` runs
only the cold-init section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lambda_emulator import BUILD_DIR, Emulator, FunctionSpec, lambda_python, load_function, read_env_file
from report import QUICK, QUICK_NOTE, log, median, missed_status, output, p99, quick, table
from services import postgres_url, redis_url

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
BENCHMARKS = output(ROOT / "BENCHMARKS.md")  # BENCHMARKS.quick.md in a quick run (QUICK=1)
SCENARIO = ROOT / "tests" / "bullmq" / "scenario.mjs"
TIMES = "\N{MULTIPLICATION SIGN}"  # x in the tables
GENERIC_EVENT = {"version": "2.0", "rawPath": "/bench", "headers": {}, "requestContext": {}}


@dataclass(frozen=True)
class Target:
    """``median ≤ reference + plus_ms`` or ``median ≤ times * reference``."""

    reference: str
    plus_ms: float | None = None
    times: float | None = None

    def limit(self, reference_value: float) -> float:
        if self.plus_ms is not None:
            return reference_value + self.plus_ms
        assert self.times is not None
        return reference_value * self.times

    def describe(self) -> str:
        if self.plus_ms is not None:
            return f"≤ {self.reference} + {self.plus_ms:g} ms"
        return f"≤ {self.times:g} {TIMES} {self.reference}"


# Stub handlers (import floors): the Powertools Logger alone, or the shared logger plus exactly the client
# libraries a function needs.
POWERTOOLS_LOGGER = "stub: Powertools Logger"
STUBS = {
    POWERTOOLS_LOGGER: ("aws_lambda_powertools.logging",),
    "stub: logger + psycopg": ("parel_monitoring.logs", "psycopg"),
    "stub: logger + redis": ("parel_monitoring.logs", "redis"),
    "stub: logger + psycopg + redis": ("parel_monitoring.logs", "psycopg", "redis"),
    "stub: logger + requests + redis": ("parel_monitoring.logs", "requests", "redis"),
}
# Function -> its import floor (the libraries tests/unit/test_imports.py lets it import).
FLOORS = {
    "HealthAppFunction": POWERTOOLS_LOGGER,
    "HealthDbFunction": "stub: logger + psycopg",
    "HealthQueueFunction": "stub: logger + redis",
    "HealthFunction": "stub: logger + psycopg + redis",
    "HealthUptimeFunction": POWERTOOLS_LOGGER,
    "AdminUptimeFunction": POWERTOOLS_LOGGER,
    "DashboardFunction": POWERTOOLS_LOGGER,
    "OpenApiFunction": POWERTOOLS_LOGGER,
    "AlertsFunction": "stub: logger + requests + redis",
    "AdminAuthorizerFunction": POWERTOOLS_LOGGER,
    "HealFunction": "stub: logger + psycopg + redis",
    "MonitorFunction": "stub: logger + psycopg + redis",
    "ProbeFunction": POWERTOOLS_LOGGER,
}
SECTIONS = ("cold-init", "warm-latency")
PLAIN = " (plain sam build)"  # the cold-init rows' suffix: the artifact of a plain `sam build`
# Function row -> its cold-init target (median INIT against its floor measured in the same run).
COLD_INIT_TARGETS = {name + PLAIN: Target(floor, times=1.2) for name, floor in FLOORS.items()}
# Heal and alerts get an event they reject at once (their cold start, not a run, is measured); the sweep and
# the probes (no probe target here) run once.
COLD_EVENTS = {"HealFunction": {}, "AlertsFunction": {}, "MonitorFunction": {}, "ProbeFunction": {}}
# The functions of the warm-latency section (from `make build`).
WARM_FUNCTIONS = ("HealthAppFunction", "HealthDbFunction", "HealthQueueFunction", "HealthFunction")
EVENTS = {
    "HealthAppFunction": "health-app.json",
    "HealthDbFunction": "health-db.json",
    "HealthQueueFunction": "health-queue.json",
    "HealthFunction": "health.json",
}
# Warm targets on the in-process p50 (ms): raw measurement -> limit.
DB_PLUS_MS = 2.0
# The queue target: 2 x PING + 1 ms for the counts, + 0.5 ms for issue 15's CLIENT LIST, INFO memory and ages.
QUEUE_PING_TIMES, QUEUE_PLUS_MS = 2.0, 1.5
# The queues' jobs keep waiting through the run (their workers take nothing): age thresholds of a week keep
# the queue check healthy, so its full path is what is measured.
AGE_THRESHOLD_S = "604800"
QUEUE_COUNT = 20  # a quick run too: fewer queues would raise the failure rate (a degraded check)
HIGH_PRIORITY = "high-priority"


# --------------------------------------------------------------------------- helpers


def fmt(ms: float) -> str:
    return f"{ms:.3f}" if ms >= 0.01 else f"{ms:.4f}"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the ``name`` section of BENCHMARKS.md, keeping the others; a quick run's sections (in
    BENCHMARKS.quick.md) say so under their heading."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n\nProduced by `make bench`.\n"
    if QUICK:
        heading, _, rest = body.partition("\n")
        body = f"{heading}\n\n{QUICK_NOTE} Targets are reported, not enforced.\n{rest}"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def publish(name: str, body: str) -> int:
    """Write ``body`` as the ``name`` section of BENCHMARKS.md, print it; exit status 1 when a target was missed
    (not in a quick run)."""
    write_section(name, body)
    print(body)
    return missed_status("MISSED" in body)


# --------------------------------------------------------------------------- specs


def handler_spec(name: str, directory: Path, source: str, layers: list[Path]) -> FunctionSpec:
    """A one-file function in ``directory``, precompiled as build/Makefile precompiles the real ones."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(source)
    py_compile.compile(str(directory / "app.py"), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return FunctionSpec(name, directory, "app.handler", 256, 10, {}, list(layers))


def bare_spec(directory: Path) -> FunctionSpec:
    return handler_spec("bare", directory, "def handler(e, c):\n    return {}\n", [])


def stub_spec(name: str, modules: tuple[str, ...], directory: Path, layers: list[Path]) -> FunctionSpec:
    source = f"import {', '.join(modules)}  # noqa: F401\n\n\ndef handler(e, c):\n    return {{}}\n"
    return handler_spec(name, directory, source, layers)


def plain_sam_build(directory: Path) -> Path:
    """``sam build`` (no make, nothing cached) of this tree into ``directory``, for this machine's architecture."""
    architecture = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")
    # SAM's builders need python3.13 on PATH; the runtime's interpreter is one.
    env["PATH"] = os.pathsep.join([str(Path(lambda_python()).parent), env.get("PATH", "")])
    command = [str(Path(sys.executable).parent / "sam"), "build", "--build-dir", str(directory / "build"),
               "--cache-dir", str(directory / "cache"),
               "--parameter-overrides", f"Architecture={architecture}"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return directory / "build"


def renamed(spec: FunctionSpec, logical_id: str) -> FunctionSpec:
    return FunctionSpec(logical_id, spec.code_dir, spec.handler, spec.memory_mb, spec.timeout_s, spec.environment,
                        spec.layer_dirs)  # fmt: skip


def event_of(spec: FunctionSpec) -> dict:
    return COLD_EVENTS.get(spec.logical_id.removesuffix(PLAIN), GENERIC_EVENT)


def without_bytecode(spec: FunctionSpec, directory: Path) -> FunctionSpec:
    """A copy of ``spec``'s code and layers with every precompiled .pyc removed."""
    code = directory / "code"
    shutil.copytree(spec.code_dir, code)
    layers = []
    for index, layer in enumerate(spec.layer_dirs):
        shutil.copytree(layer, directory / f"layer{index}")
        layers.append(directory / f"layer{index}")
    for cache in directory.rglob("__pycache__"):
        shutil.rmtree(cache)
    name = spec.logical_id.removesuffix(PLAIN) + " (no .pyc)"
    return FunctionSpec(name, code, spec.handler, spec.memory_mb, spec.timeout_s, spec.environment, layers)


# --------------------------------------------------------------------------- BullMQ queues


def populate_queues(redis: str, prefix: str, names: list[str]) -> float:
    """Fill ``names`` with a few jobs each through the real bullmq (4 at a time); returns seconds."""
    started = time.monotonic()

    def populate(index_name: tuple[int, str]) -> None:
        index, name = index_name
        failed = 1 if index % 10 == 1 else 0  # a low failure rate: the queues stay healthy
        command = ["node", str(SCENARIO), "populate", "--redis", redis, "--prefix", prefix, "--queue", name,
                   "--completed", "3", "--failed", str(failed), "--waiting", "2", "--delayed", "1",
                   "--prioritized", "1"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"populating {prefix}:{name} failed:\n{result.stderr}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(populate, enumerate(names)))
    return time.monotonic() - started


def start_workers(redis: str, prefix: str, names: list[str]) -> subprocess.Popen:
    """One live (idle) bullmq Worker per queue for the whole run (``scenario.mjs workers``): ``CLIENT LIST`` holds
    their 20 named connections, and no queue is left without a worker; they close when stdin closes."""
    command = ["node", str(SCENARIO), "workers", "--redis", redis, "--prefix", prefix, "--queue", names[0],
               "--queues", ",".join(names), "--names", "bench"]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("{"):
        process.kill()
        raise RuntimeError(f"starting the workers failed: {line!r}")
    return process


def remove_queues(redis: str, prefix: str) -> int:
    """SCAN + DEL every key under ``prefix:``; returns how many were removed."""
    import redis as redis_py

    client = redis_py.Redis.from_url(redis)
    removed = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += client.delete(*batch)
                batch = []
        if batch:
            removed += client.delete(*batch)
    finally:
        client.close()
    return removed


# --------------------------------------------------------------------------- cold init


def cold_init(spec: FunctionSpec, extra_env: dict[str, str], event: dict) -> float:
    with Emulator(spec, extra_env=extra_env) as emulator:
        result = emulator.invoke(event)
    if result.init_duration_ms is None:
        raise RuntimeError(f"{spec.logical_id}: no INIT REPORT in\n" + "\n".join(emulator.lines))
    return result.init_duration_ms


def measure_cold(specs: list[FunctionSpec], runs: int, extra_env: dict[str, str]) -> dict[str, list[float]]:
    for spec in specs:  # warm the page cache (and check each one starts)
        cold_init(spec, extra_env, event_of(spec))
    samples: dict[str, list[float]] = {spec.logical_id: [] for spec in specs}
    for round_ in range(runs):
        # Interleave (rotating the order) so machine noise hits every function alike.
        offset = round_ % len(specs)
        for spec in specs[offset:] + specs[:offset]:
            samples[spec.logical_id].append(cold_init(spec, extra_env, event_of(spec)))
    return samples


def cold_section(samples: dict[str, list[float]], runs: int) -> tuple[str, list[str]]:
    medians = {name: median(values) for name, values in samples.items()}
    failed = []
    rows = []
    for name, values in samples.items():
        target = COLD_INIT_TARGETS.get(name)
        compared = target_cell = verdict = ""
        if target is not None:
            reference = medians[target.reference]
            limit = target.limit(reference)
            if target.plus_ms is not None:
                compared = f"{medians[name] - reference:+.1f} ms vs {target.reference}"
            else:
                compared = f"{medians[name] / reference:.2f} {TIMES} {target.reference}"
            target_cell = f"{target.describe()} = {limit:.1f}"
            verdict = "met" if medians[name] <= limit else "MISSED"
            if verdict == "MISSED":
                failed.append(f"cold init {name}")
        elif name != "bare":
            compared = f"{medians[name] - medians['bare']:+.1f} ms vs bare"
        rows.append(
            [name, f"{medians[name]:.1f}", f"{min(values):.1f}", f"{max(values):.1f}", compared, target_cell, verdict]
        )
    stubs = "; ".join(f"`{name}` imports `{', '.join(modules)}`" for name, modules in STUBS.items())
    body = "\n".join(
        [
            "## Cold init under the Lambda emulator (`make bench`)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} ({os.cpu_count()} CPUs), "
            f"{runs} fresh execution environments per row (interleaved, rotating order), Python "
            f"{sys.version.split()[0]}, INIT REPORT `durationMs` of the emulator "
            "(interpreter start + runtime client + handler import + init code). Load average at the end "
            f"(1/5/15 min): {'/'.join(f'{load:.1f}' for load in os.getloadavg())}: other work on the machine "
            "slows every row (interleaved, they share it alike).",
            "",
            *table(
                ["function", "median ms", "min ms", "max ms", "vs reference", "target (ms)", ""],
                ["---", "---:", "---:", "---:", "---", "---", "---"],
                rows,
            ),
            "",
            f"The `{PLAIN.strip(' ()')}` rows are the artifact users deploy: `sam build` with no make and no "
            "cache (only `Architecture` set to this machine's, so the layer's binary wheels load here), whose "
            "makefile builder (build/Makefile) precompiles every module of the functions and the layer. Each "
            "function's target is its import floor: `bare` is `def handler(e, c): return {}` with no layer; the "
            "stubs are the same trivial handler on that built layer, importing only what the function truly "
            f"needs (tests/unit/test_imports.py): {stubs}. The functions run with `DATABASE_URL`, `REDIS_URL` and "
            "`QUEUE_NAMES` set, so their init reads real settings. The `(no .pyc)` row is the same build with "
            "every `.pyc` removed: what a plain `sam build` deployed before it precompiled (Lambda cannot write "
            "`__pycache__` on its read-only code and layer directories).",
        ]
    )
    return body, failed


# --------------------------------------------------------------------------- warm latency


def in_process(spec: FunctionSpec, extra_env: dict[str, str], event_file: Path, invocations: int, raw: str) -> dict:
    """Run benchmarks/bench_health.py for ``spec`` in the Lambda interpreter with the function's environment."""
    environment = Emulator(spec, extra_env=extra_env).environment()
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [lambda_python(), "-S", str(HERE / "bench_health.py"), "--handler", spec.handler,
                   "--event", str(event_file), "--invocations", str(invocations), "--warmup", "50",
                   "--raw", raw, "--out", out.name]  # fmt: skip
        result = subprocess.run(
            command, cwd=spec.code_dir, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"{spec.logical_id}: in-process run failed:\n{result.stderr.decode(errors='replace')}")
        return json.loads(Path(out.name).read_text())


def emulator_warm(specs: list[FunctionSpec], events: dict[str, dict], extra_env: dict[str, str], invocations: int):
    """REPORT Duration of ``invocations`` warm invocations per spec (one environment each, round-robin)."""
    durations: dict[str, list[float]] = {spec.logical_id: [] for spec in specs}
    statuses: dict[str, Any] = {}
    emulators = [Emulator(spec, extra_env=extra_env) for spec in specs]
    try:
        for emulator in emulators:
            emulator.start()
            for _ in range(20):  # the cold invocation, then warm-up
                emulator.invoke(events[emulator.spec.logical_id])
        for _ in range(invocations):
            for emulator in emulators:
                result = emulator.invoke(events[emulator.spec.logical_id])
                if result.duration_ms is None:
                    raise RuntimeError(f"{emulator.spec.logical_id}: no REPORT line\n" + "\n".join(emulator.lines))
                durations[emulator.spec.logical_id].append(result.duration_ms)
                if isinstance(result.payload, dict):
                    statuses[emulator.spec.logical_id] = result.payload.get("statusCode")
    finally:
        for emulator in emulators:
            emulator.stop()
    return durations, statuses


def warm_section(
    measured: dict[str, dict], emulated: dict[str, list[float]], invocations: int, emulator_invocations: int, notes
) -> tuple[str, list[str]]:
    failed = []
    rows = []
    db, queue = measured["HealthDbFunction"], measured["HealthQueueFunction"]
    raw_pg, ping = median(db["raw_ms"]), median(queue["raw_ms"])
    db_limit, queue_limit = raw_pg + DB_PLUS_MS, QUEUE_PING_TIMES * ping + QUEUE_PLUS_MS
    targets = {
        "HealthDbFunction": (f"≤ raw SQL p50 + {DB_PLUS_MS:g} = {db_limit:.3f}", db_limit),
        "HealthQueueFunction": (
            f"≤ {QUEUE_PING_TIMES:g} {TIMES} PING p50 + {QUEUE_PLUS_MS:g} = {queue_limit:.3f}",
            queue_limit,
        ),
    }
    expected_ok = {"HealthDbFunction": "healthy", "HealthQueueFunction": "healthy"}

    def emulator_cells(name: str) -> list[str]:
        values = emulated.get(name)
        return [f"{median(values):.2f}", f"{p99(values):.2f}"] if values else ["", ""]

    for name, result in measured.items():
        values = result["handler_ms"]
        label = f"{name} ({QUEUE_COUNT} queues)" if name in ("HealthQueueFunction", "HealthFunction") else name
        if name == "HealthQueueFunction":
            label = f"{name} ({QUEUE_COUNT} queues, with workers, oldest ages, Redis memory)"
        target_cell = verdict = ""
        if name in targets:
            target_cell, limit = targets[name]
            verdict = "met" if median(values) <= limit else "MISSED"
            if result.get("status") != expected_ok[name] or result.get("status_code") != 200:
                verdict = f"MISSED (answered {result.get('status_code')} {result.get('status')})"
            if verdict != "met":
                failed.append(f"warm latency {name}")
        status = f"{result.get('status_code')} {result.get('status') or ''}".strip() if name != "bare" else ""
        rows.append([label, status, fmt(median(values)), fmt(p99(values)), *emulator_cells(name), target_cell, verdict])
        if result["raw_ms"]:
            raw_label = (
                "raw: `SELECT 1` + `POOL_QUERY` (psycopg, reused connection)"
                if name == "HealthDbFunction"
                else "raw: Redis `PING` (redis-py, reused connection)"
            )
            rows.append([raw_label, "", fmt(median(result["raw_ms"])), fmt(p99(result["raw_ms"])), "", "", "", ""])
        if result.get("counts_ms"):
            counts = result["counts_ms"]
            rows.append(["raw: the counts-and-ages script alone (`job_counts`, 20 queues, one `EVALSHA`)", "",
                         fmt(median(counts)), fmt(p99(counts)), "", "", "", ""])  # fmt: skip
    body = "\n".join(
        [
            "## Warm latency (`make bench`)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} ({os.cpu_count()} CPUs), "
            f"Python {sys.version.split()[0]}, against PostgreSQL and Redis on 127.0.0.1. **In-process**: the "
            f"built handler called directly, {invocations} times after 50 warm-up calls, in a subprocess of the "
            "Lambda interpreter per function with the function's layer and environment (`benchmarks/bench_health.py`); "
            "the raw rows are measured in the same loop, interleaved with the handler calls. **Emulator**: REPORT "
            f"`Duration` of {emulator_invocations} warm invocations per function under the Lambda emulator "
            "(informational: it adds the runtime client's and the emulator's own overhead; compare with `bare`).",
            "",
            *table(
                [
                    "function",
                    "response",
                    "in-process p50 ms",
                    "p99 ms",
                    "emulator p50 ms",
                    "p99 ms",
                    "target (p50, ms)",
                    "",
                ],
                ["---", "---", "---:", "---:", "---:", "---:", "---", "---"],
                rows,
            ),
            "",
            *notes,
        ]
    )
    return body, failed


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=quick(41, 1), help="fresh starts per function (cold init)")
    parser.add_argument(
        "--invocations", type=int, default=quick(500, 30), help="measured in-process calls per function"
    )
    parser.add_argument(
        "--emulator-invocations", type=int, default=quick(200, 20), help="measured warm emulator invocations"
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    args = parser.parse_args(argv)

    database, _ = postgres_url()
    redis, _ = redis_url()
    prefix = f"bench-{os.getpid()}-{int(time.time())}"
    queues = [HIGH_PRIORITY] + [f"queue-{index:02d}" for index in range(1, QUEUE_COUNT)]
    service_env = {
        "DATABASE_URL": database,
        "REDIS_URL": redis,
        "QUEUE_NAMES": ",".join(queues),
        "BULLMQ_PREFIX": prefix,
        "HIGH_PRIORITY_QUEUE": HIGH_PRIORITY,
        "QUEUE_AGE_WARNING_S": AGE_THRESHOLD_S,
        "QUEUE_AGE_CRITICAL_S": AGE_THRESHOLD_S,
        "HEALTH_CACHE_TTL_S": "0",  # every call runs its check: the check is measured, not the route's cache
    }
    env_vars = read_env_file(str(ROOT / "env.json"))
    events = {name: json.loads((ROOT / "events" / file).read_text()) for name, file in EVENTS.items()}
    events["bare"] = GENERIC_EVENT
    failed: list[str] = []
    try:
        log(f"populating {QUEUE_COUNT} BullMQ queues under {prefix}: ...")
        seconds = populate_queues(redis, prefix, queues)
        log(f"  done in {seconds:.1f} s")
        workers = start_workers(redis, prefix, queues)
        with tempfile.TemporaryDirectory() as tmp:
            functions = {name: load_function(name, BUILD_DIR, env_vars=env_vars) for name in WARM_FUNCTIONS}
            bare = bare_spec(Path(tmp) / "bare")
            if "cold-init" in args.sections:
                log("cold init: plain sam build ...")
                plain_dir = plain_sam_build(Path(tmp) / "plain")
                plain = {
                    name: renamed(load_function(name, plain_dir, env_vars=env_vars), name + PLAIN) for name in FLOORS
                }
                layers = plain["HealthDbFunction"].layer_dirs
                stubs = [
                    stub_spec(name, STUBS[name], Path(tmp) / f"stub{index}", layers) for index, name in enumerate(STUBS)
                ]
                nopyc = without_bytecode(plain["HealthAppFunction"], Path(tmp) / "nopyc")
                cold_specs = [bare, *stubs, *plain.values(), nopyc]
                log(f"cold init: {args.runs} x {len(cold_specs)} fresh emulators ...")
                samples = measure_cold(cold_specs, args.runs, service_env)
                # Table order: references first, then each function (HealthAppFunction's no-.pyc copy after it).
                first = "HealthAppFunction" + PLAIN
                order = ["bare", *STUBS, first, nopyc.logical_id, *COLD_INIT_TARGETS]
                samples = {name: samples[name] for name in dict.fromkeys(order)}
                body, cold_failed = cold_section(samples, args.runs)
                write_section("cold-init", body)
                print(body + "\n")
                failed += cold_failed
            if "warm-latency" not in args.sections:
                if failed:
                    print(f"\nMISSED: {', '.join(failed)}")
                return missed_status(bool(failed))

            log(f"warm latency: {args.invocations} in-process calls per function ...")
            raws = {"HealthDbFunction": "pg", "HealthQueueFunction": "redis"}
            measured: dict[str, dict] = {}
            event_dir = Path(tmp) / "events"
            event_dir.mkdir()
            health_functions = [functions[name] for name in EVENTS]
            for spec in [bare, *health_functions]:
                event_file = event_dir / f"{spec.logical_id}.json"
                event_file.write_text(json.dumps(events[spec.logical_id]))
                measured[spec.logical_id] = in_process(
                    spec, service_env, event_file, args.invocations, raws.get(spec.logical_id, "none")
                )
            log(f"warm latency: {args.emulator_invocations} emulator invocations per function ...")
            emulated, statuses = emulator_warm(
                [bare, *health_functions], events, service_env, args.emulator_invocations
            )
            notes = [
                f"The queues: {QUEUE_COUNT} BullMQ queues (`{HIGH_PRIORITY}` is the high-priority one) under a "
                "unique prefix, each filled by the real bullmq (`tests/bullmq/scenario.mjs populate`: 3 completed, "
                "2 waiting, 1 delayed, 1 prioritized job, and 1 failed in two of them), removed after the run. "
                "`HealthFunction` (db + queue + app checks) and `HealthAppFunction` have no warm target. "
                "One idle bullmq Worker (named) per queue stays connected through the run (`scenario.mjs workers`), "
                f"so `CLIENT LIST` holds their connections; `QUEUE_AGE_WARNING_S`/`QUEUE_AGE_CRITICAL_S` are "
                f"{AGE_THRESHOLD_S} s so the waiting jobs, older with every minute of the run, keep the queues "
                "healthy (the ages are read all the same). The queue check's Redis traffic: the counts script "
                "(counts and ages), `CLIENT LIST` and `INFO memory` in one pipeline. `HEALTH_CACHE_TTL_S=0`: "
                "every call runs its checks (the route's cache is measured by `benchmarks/bench_flood.py`).",
            ]
            off = [f"{name} {code}" for name, code in statuses.items() if name != "bare" and code != 200]
            if off:
                notes.append(f"Emulator responses other than 200: {', '.join(off)}.")
            body, warm_failed = warm_section(measured, emulated, args.invocations, args.emulator_invocations, notes)
            write_section("warm-latency", body)
            print(body)
            failed += warm_failed
    finally:
        if "workers" in locals():
            workers.communicate(timeout=60)  # stdin closed: the workers close, the process exits
        removed = remove_queues(redis, prefix)
        log(f"removed {removed} Redis keys under {prefix}:")
    if failed:
        print(f"\nMISSED: {', '.join(failed)}")
    return missed_status(bool(failed))


if __name__ == "__main__":
    start = time.monotonic()
    code = main()
    print(f"\n({time.monotonic() - start:.1f} s)")
    sys.exit(code)
