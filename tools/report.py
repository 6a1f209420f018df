"""Figures and Markdown tables shared by the report writers (`make bench`, `make reliability`)."""

from __future__ import annotations

import math
import os
import statistics
import sys
from pathlib import Path
from typing import TypeVar

# `make bench QUICK=1` / `make reliability QUICK=1` set BENCH_QUICK=1: every script runs with small sizes and
# rounds (a smoke run of the whole command), marks each section it writes and writes it next to the committed
# report (output()), never into it. The one place the knob is read.
QUICK = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
QUICK_NOTE = (
    "**Quick run** (`QUICK=1`): sizes and rounds reduced to check that the command works end to end; the "
    "figures are not comparable with a full run's."
)


T = TypeVar("T")


def quick(full: T, small: T) -> T:
    """``small`` in a quick run (``BENCH_QUICK=1``), ``full`` otherwise."""
    return small if QUICK else full


def output(path: Path) -> Path:
    """Where a report is written: ``path``, or in a quick run its ``.quick`` sibling (BENCHMARKS.quick.md)."""
    return path.with_suffix(".quick" + path.suffix) if QUICK else path


def missed_status(missed: bool) -> int:
    """A benchmark's exit status: 1 when a target was missed, except in a quick run, whose figures (and so
    verdicts) mean nothing; a failure of the script itself still ends it non-zero."""
    return 1 if missed and not QUICK else 0


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
