"""Probe fan-out: one ProbeFunction invocation over 50 targets that each answer after 200 ms, into BENCHMARKS.md.

The built ProbeFunction runs under the Lambda emulator (tools/lambda_emulator.py); the targets are 50 URLs of one
local HTTP server (tests/probe_servers.py, a thread per connection) whose ``/slow/200`` answers after
``DELAY_MS``. Measured, after one warm-up invocation: ``RUNS`` invocations of the 50 targets and, interleaved, of
a single target (the same URL alone: what the slowest single target costs by itself). Per invocation: the
emulator's REPORT ``Duration`` and the largest ``ProbeLatencyMs`` of its EMF lines (the slowest target as
probed in that run). Target: the 50-target invocation's median Duration ≤ 1.3 times the slowest single
target (its ProbeLatencyMs when probed alone, median).

Memory: the REPORT line's ``Max Memory Used`` is printed as the emulator writes it, but the Runtime Interface
Emulator reports the configured memory size there, not a measurement; the peak resident set (``VmHWM``) of the
function's runtime process, read from /proc after the runs, is the real figure.

Run (or `make bench`): ``PYTHONPATH=layers/shared:tests:tools:benchmarks .venv/bin/python benchmarks/bench_probe.py``
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from probe_servers import Sites

from bench import publish
from events_loader import load_event
from lambda_emulator import BUILD_DIR, Emulator, load_function
from report import log, median, quick, table

TARGETS = quick(50, 10)
DELAY_MS = 200
RUNS = quick(5, 2)
GOAL = 1.3
TIMES = "\N{MULTIPLICATION SIGN}"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the process or thread has ended
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def runtime_peak_rss_mb(root_pid: int) -> float | None:
    """The largest VmHWM (peak resident set) of the Python processes under ``root_pid`` (the function's runtime)."""
    pending, peak = [root_pid], None
    while pending:
        pid = pending.pop()
        pending += _children(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        if match and b"python" in command:
            peak = max(peak or 0.0, int(match[1]) / 1024)
    return peak


def max_probe_latency(lines: list[str]) -> float:
    latencies = []
    for line in lines:
        if line.startswith("{") and '"ProbeLatencyMs"' in line:
            value = json.loads(line)["ProbeLatencyMs"]
            latencies += value if isinstance(value, list) else [value]
    return max(latencies)


def invoke(emulator: Emulator, expected: int) -> tuple[float, float, str]:
    result = emulator.invoke(load_event("probe-schedule"))
    if not isinstance(result.payload, dict) or result.payload.get("up") != expected or result.duration_ms is None:
        raise RuntimeError(f"probe invocation failed: {result.payload}\n" + "\n".join(result.logs[-20:]))
    return result.duration_ms, max_probe_latency(result.logs), result.report or ""


def run() -> str:
    spec = load_function("ProbeFunction", BUILD_DIR)
    with Sites(tls=False) as sites:
        url = f"{sites.http.base}/slow/{DELAY_MS}"
        many = json.dumps([{"name": f"target-{i:02d}", "url": url} for i in range(TARGETS)])
        one = json.dumps([{"name": "single", "url": url}])
        with (
            Emulator(spec, extra_env={"PROBE_TARGETS": many, "LOG_LEVEL": "WARNING"}) as fan,
            Emulator(spec, extra_env={"PROBE_TARGETS": one, "LOG_LEVEL": "WARNING"}) as single,
        ):
            invoke(fan, TARGETS), invoke(single, 1)  # warm-up: init and the first imports are not measured
            fan_runs, single_runs = [], []
            for _ in range(RUNS):
                fan_runs.append(invoke(fan, TARGETS))
                single_runs.append(invoke(single, 1))
            peak_fan = runtime_peak_rss_mb(fan.process.pid)
            peak_single = runtime_peak_rss_mb(single.process.pid)
    reported = re.search(r"Max Memory Used: (\d+ MB)", fan_runs[-1][2])
    fan_ms, single_ms = median([r[0] for r in fan_runs]), median([r[0] for r in single_runs])
    slowest_alone = median([r[1] for r in single_runs])  # the target's own latency, probed alone
    ratio = fan_ms / slowest_alone
    verdict = "met" if ratio <= GOAL else "MISSED"
    rows = [
        [f"{TARGETS} targets", f"{fan_ms:.1f}", f"{max(r[0] for r in fan_runs):.1f}",
         f"{median([r[1] for r in fan_runs]):.1f}", f"{peak_fan:.1f}" if peak_fan else "n/a"],
        ["1 target (the same URL alone)", f"{single_ms:.1f}", f"{max(r[0] for r in single_runs):.1f}",
         f"{median([r[1] for r in single_runs]):.1f}", f"{peak_single:.1f}" if peak_single else "n/a"],
    ]  # fmt: skip
    return "\n".join(
        [
            "## Probe fan-out (`benchmarks/bench_probe.py`)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} ({os.cpu_count()} CPUs), "
            f"Python {sys.version.split()[0]}: the built ProbeFunction ({spec.memory_mb} MB) under the Lambda "
            f"emulator, {RUNS} warm invocations each (after one warm-up), interleaved: {TARGETS} targets that "
            f"each answer after {DELAY_MS} ms (one local HTTP server, a thread per connection), and the same "
            "target alone.",
            "",
            *table(
                [
                    "invocation",
                    "Duration p50 ms",
                    "Duration max ms",
                    "slowest ProbeLatencyMs p50",
                    "runtime peak RSS MB",
                ],
                ["---", "---:", "---:", "---:", "---:"],
                rows,
            ),
            "",
            f"Duration is the emulator's REPORT `Duration`; the REPORT line's `Max Memory Used` reads "
            f"{reported[1] if reported else 'n/a'}, which the Runtime Interface Emulator fills with the configured "
            "memory size rather than a measurement, so the peak resident set (`VmHWM`) of the function's runtime "
            "process is shown instead.",
            "",
            f"Target: the {TARGETS}-target invocation's Duration ≤ {GOAL:g}{TIMES} the slowest single target "
            f"(its ProbeLatencyMs probed alone, p50): **{verdict}** ({fan_ms:.1f} ms vs {slowest_alone:.1f} ms, "
            f"{ratio:.2f}{TIMES}). The invocation of that one target alone takes {single_ms:.1f} ms "
            f"({single_ms / slowest_alone:.2f}{TIMES}); the {TARGETS}-target one's extra time is its "
            f"{TARGETS} threads and connections (the local server's too, on the same CPUs) and its "
            f"{TARGETS + 1} EMF documents.",
        ]
    )


def main() -> int:
    log(f"probe fan-out: {TARGETS} targets of {DELAY_MS} ms, {RUNS} runs ...")
    body = run()
    return publish("probe-fanout", body)


if __name__ == "__main__":
    sys.exit(main())
