"""Figures and Markdown tables shared by the report writers (`make bench`, `make reliability`)."""

from __future__ import annotations

import math
import statistics
import sys


def median(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]
