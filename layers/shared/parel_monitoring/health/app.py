"""Application health: uptime, memory and runtime of this execution environment.

Python counterparts of the seed's Node fields (see README, "GET /api/health/app"):
``memory.process.rss`` is the resident set size (VmRSS); ``heapUsed`` is the
anonymous resident memory (RssAnon: the interpreter's heap, object arenas and
native allocations, without mapped code). ``memory.system`` is the function's
configured memory inside Lambda (AWS_LAMBDA_FUNCTION_MEMORY_SIZE) with
``free = configured - rss``; outside Lambda it is the machine's MemTotal and
MemAvailable.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from parel_monitoring import ENVIRONMENT_STARTED
from parel_monitoring.clock import utc_now_iso
from parel_monitoring.health import HEALTHY, UNHEALTHY
from parel_monitoring.settings import env_float

MB = 1024 * 1024
GB = 1024 * MB


@dataclass(frozen=True)
class AppHealthSettings:
    memory_threshold_pct: float

    @classmethod
    def from_env(cls) -> AppHealthSettings:
        return cls(memory_threshold_pct=env_float("MEMORY_THRESHOLD_PCT", 90.0, 0.0, 100.0))


def _proc_kib(path: str, fields: tuple[str, ...]) -> dict[str, int]:
    """Read ``Name:  123 kB`` lines of a /proc file, in bytes."""
    found: dict[str, int] = {}
    with open(path) as proc_file:
        for line in proc_file:
            name, _, rest = line.partition(":")
            if name in fields:
                found[name] = int(rest.split()[0]) * 1024
    return found


def megabytes(size: float) -> str:
    return f"{size / MB:.2f} MB"


def gigabytes(size: float) -> str:
    return f"{size / GB:.2f} GB"


def memory_usage() -> dict[str, Any]:
    """Process and system memory, plus the raw usage ratio the status is based on."""
    process = _proc_kib("/proc/self/status", ("VmRSS", "RssAnon"))
    rss = process.get("VmRSS", 0)
    configured_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if configured_mb.isdigit():
        total = int(configured_mb) * MB
        free = max(total - rss, 0)
        scope = "function"
    else:
        system = _proc_kib("/proc/meminfo", ("MemTotal", "MemAvailable"))
        total, free = system["MemTotal"], system["MemAvailable"]
        scope = "machine"
    usage_pct = (total - free) / total * 100 if total else 0.0
    return {
        "process": {"rss": megabytes(rss), "heapUsed": megabytes(process.get("RssAnon", rss))},
        "system": {
            "total": gigabytes(total),
            "free": gigabytes(free),
            "usagePercent": f"{usage_pct:.2f}",
            "scope": scope,
        },
        "_usage_pct": usage_pct,
    }


def uptime() -> dict[str, int]:
    elapsed_ms = int((time.monotonic() - ENVIRONMENT_STARTED) * 1000)
    return {
        "ms": elapsed_ms,
        "seconds": elapsed_ms // 1000,
        "minutes": elapsed_ms // 60_000,
        "hours": elapsed_ms // 3_600_000,
    }


def runtime_info(context: Any, cold_start: bool) -> dict[str, Any]:
    version = sys.version_info
    return {
        "python": f"{version.major}.{version.minor}.{version.micro}",
        "implementation": sys.implementation.name,
        "architecture": os.uname().machine,
        "functionName": getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "functionVersion": getattr(context, "function_version", None) or os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
        "memoryLimitMB": int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0")) or None,
        "region": os.environ.get("AWS_REGION"),
        "coldStart": cold_start,
        "pid": os.getpid(),
    }


def check_app_health(settings: AppHealthSettings, context: Any = None, cold_start: bool = False) -> dict[str, Any]:
    memory = memory_usage()
    usage_pct = memory.pop("_usage_pct")
    return {
        "status": UNHEALTHY if usage_pct > settings.memory_threshold_pct else HEALTHY,
        "timestamp": utc_now_iso(),
        "uptime": uptime(),
        "memory": memory,
        "thresholds": {"memoryPercent": settings.memory_threshold_pct},
        "runtime": runtime_info(context, cold_start),
    }
