"""Alert fan-out latency against webhooks that answer after 200 ms, written into BENCHMARKS.md.

Two local HTTP/1.1 servers stand in for Slack and Discord; each answers every POST after
``DELAY_S`` (keep-alive, as the platforms do). For each alert, interleaved: ``fan_out`` to both
channels (the AlertsFunction's path: both formatted and sent concurrently) and a sequential
baseline measured in the same run (the same alert formatted and sent with ``send``, Slack then
Discord). Target: fan-out p50 ≤ 230 ms, i.e. one webhook's 200 ms plus at most 30 ms.

Run: ``PYTHONPATH=layers/shared:tests:tools:benchmarks .venv/bin/python benchmarks/bench_alerts.py``
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench import publish
from parel_monitoring.notify.delivery import FORMATTERS, Channel, DeliveryResult, DeliverySettings, fan_out, send
from parel_monitoring.notify.model import SEVERITIES, Alert
from report import log, median, p99, quick, table

DELAY_S = 0.2
TIMES = "\N{MULTIPLICATION SIGN}"
TARGET_MS = 230.0
ALERTS, WARMUP = quick(30, 5), quick(3, 1)
SETTINGS = DeliverySettings()  # the defaults: 3 s connect, 5 s read, 4 attempts


class _Webhook(BaseHTTPRequestHandler):
    """Reads the payload, waits ``DELAY_S``, answers like the platform (Slack 200 "ok", Discord 204)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server: _WebhookServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen(self.client_address)
        time.sleep(DELAY_S)
        body = self.server.body
        self.send_response(200 if body else 204)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Webhook)
        self.body = body
        self.requests = 0
        self.clients: set[tuple[str, int]] = set()  # one per TCP connection opened
        self._lock = threading.Lock()

    def seen(self, client: tuple[str, int]) -> None:
        with self._lock:
            self.requests += 1
            self.clients.add(client)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


def sample_alert(index: int) -> Alert:
    return Alert(
        severity=SEVERITIES[index % len(SEVERITIES)],
        title=f"High Queue Lag #{index}",
        message="High-priority queue has 87 waiting jobs",
        metadata={"queue": "high-priority", "waiting": 87, "index": index},
        timestamp=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        correlation_id=f"bench-{index}",
        source="bench_alerts",
    )


def send_one_after_another(
    alert: Alert, channels: list[Channel], deadline: float, settings: DeliverySettings
) -> list[DeliveryResult]:
    """The baseline: what fan_out does, without the threads."""
    return [send(channel, FORMATTERS[channel.name](alert), deadline, settings) for channel in channels]


def timed(deliver: Callable[..., list[DeliveryResult]], alert: Alert, channels: list[Channel]) -> float:
    started = time.perf_counter()
    results = deliver(alert, channels, time.monotonic() + 10, SETTINGS)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if not all(result.delivered for result in results):
        raise RuntimeError(f"not delivered: {[result.to_dict() for result in results]}")
    return elapsed_ms


def run() -> str:
    """Measure both paths; returns the BENCHMARKS.md section (its last line says met or MISSED)."""
    slack_server, discord_server = _WebhookServer(b"ok"), _WebhookServer(b"")
    for server in (slack_server, discord_server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    channels = [
        Channel("slack", slack_server.url("/services/T0001/B0001/bench")),
        Channel("discord", discord_server.url("/api/webhooks/1/bench")),
    ]
    fanned: list[float] = []
    sequential: list[float] = []
    try:
        for index in range(WARMUP + ALERTS):
            alert = sample_alert(index)
            fan_ms = timed(fan_out, alert, channels)
            sequential_ms = timed(send_one_after_another, alert, channels)
            if index >= WARMUP:
                fanned.append(fan_ms)
                sequential.append(sequential_ms)
    finally:
        for server in (slack_server, discord_server):
            server.shutdown()
            server.server_close()

    fan_p50, sequential_p50 = median(fanned), median(sequential)
    verdict = "met" if fan_p50 <= TARGET_MS else "MISSED"
    connections = len(slack_server.clients) + len(discord_server.clients)
    requests_sent = slack_server.requests + discord_server.requests
    rows = [
        ["`fan_out` (Slack and Discord concurrently)", f"{fan_p50:.1f}", f"{p99(fanned):.1f}", f"{min(fanned):.1f}",
         f"≤ {TARGET_MS:g}", verdict],
        ["sequential baseline (Slack, then Discord)", f"{sequential_p50:.1f}", f"{p99(sequential):.1f}",
         f"{min(sequential):.1f}", "", ""],
    ]  # fmt: skip
    return "\n".join(
        [
            "## Alert fan-out (`benchmarks/bench_alerts.py`)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} ({os.cpu_count()} CPUs), "
            f"Python {sys.version.split()[0]}: {ALERTS} alerts after {WARMUP} warm-up ones, each formatted and "
            f"sent to two local webhook servers (HTTP/1.1) that answer after {DELAY_S * 1000:g} ms; both paths "
            "measured in the same run, interleaved per alert, with the default delivery settings.",
            "",
            *table(
                ["path", "p50 ms", "p99 ms", "min ms", "target (p50, ms)", ""],
                ["---", "---:", "---:", "---:", "---", "---"],
                rows,
            ),
            "",
            f"Fan-out is {sequential_p50 / fan_p50:.2f}{TIMES} faster than the sequential baseline at p50. "
            f"{requests_sent} requests went over {connections} TCP connections (one `requests.Session` per "
            "webhook URL, kept alive across alerts).",
            "",
            f"Target: fan-out p50 ≤ {TARGET_MS:g} ms: **{verdict}** ({fan_p50:.1f} ms).",
        ]
    )


def main() -> int:
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # one "Alert delivered" line per send would drown the table
    log(f"alert fan-out: {WARMUP + ALERTS} alerts, both paths ...")
    body = run()
    return publish("alert-fanout", body)


if __name__ == "__main__":
    sys.exit(main())
