"""`make bench`: cold-init benchmark of every function, written into BENCHMARKS.md.

Each function is started fresh under the Lambda Runtime Interface Emulator
several times; the emulator's INIT REPORT (interpreter start, runtime client,
handler import and init code) is collected and the median compared with a bare
``def handler(e, c): return {}`` measured in the same run, the same way.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from lambda_emulator import BUILD_DIR, Emulator, FunctionSpec, load_function, read_env_file

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"

# Function -> the most its median cold init may exceed the bare handler's, in ms.
COLD_INIT_BUDGET_MS = {"HealthAppFunction": 60.0}


def cold_inits(spec: FunctionSpec, runs: int, event: dict) -> list[float]:
    samples = []
    for _ in range(runs):
        with Emulator(spec) as emulator:
            result = emulator.invoke(event)
        if result.init_duration_ms is None:
            raise RuntimeError(f"{spec.logical_id}: no INIT REPORT in\n" + "\n".join(emulator.lines))
        samples.append(result.init_duration_ms)
    return samples


def bare_spec(directory: Path) -> FunctionSpec:
    (directory / "app.py").write_text("def handler(e, c):\n    return {}\n")
    return FunctionSpec("BareFunction", directory, "app.handler", 256, 10, {}, [])


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
    return FunctionSpec(spec.logical_id + " (no .pyc)", code, spec.handler, spec.memory_mb, spec.timeout_s,
                        spec.environment, layers)  # fmt: skip


def write_section(name: str, body: str) -> None:
    """Replace (or append) the ``name`` section of BENCHMARKS.md, keeping the others."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n\nProduced by `make bench`.\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="fresh starts per function")
    args = parser.parse_args(argv)

    env_vars = read_env_file(str(ROOT / "env.json"))
    functions = list(COLD_INIT_BUDGET_MS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bare = bare_spec(Path(tmp))
        specs = [load_function(name, BUILD_DIR, env_vars=env_vars) for name in functions]
        specs.append(without_bytecode(specs[0], Path(tmp) / "nopyc"))
        event = {"version": "2.0", "rawPath": "/bench", "headers": {}, "requestContext": {}}
        cold_inits(bare, 2, event)  # warm the page cache
        # Interleave so machine noise hits every function alike.
        samples: dict[str, list[float]] = {"bare": [], **{spec.logical_id: [] for spec in specs}}
        for _ in range(args.runs):
            samples["bare"] += cold_inits(bare, 1, event)
            for spec in specs:
                samples[spec.logical_id] += cold_inits(spec, 1, event)
    bare_median = statistics.median(samples["bare"])
    failed = []
    for name, values in samples.items():
        median = statistics.median(values)
        budget = COLD_INIT_BUDGET_MS.get(name)
        delta = median - bare_median
        verdict = "" if budget is None else ("met" if delta <= budget else "MISSED")
        if verdict == "MISSED":
            failed.append(name)
        delta_cell = "" if name == "bare" else f"{delta:+.1f}"
        budget_cell = "" if budget is None else f"≤ +{budget:.0f}"
        cells = [name, f"{median:.1f}", f"{min(values):.1f}", f"{max(values):.1f}", delta_cell, budget_cell, verdict]
        rows.append("| " + " | ".join(cells) + " |")
    body = "\n".join(
        [
            "## Cold init under the Lambda emulator (`make bench`)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
            f"{args.runs} fresh execution environments per function (interleaved), Python "
            f"{sys.version.split()[0]} on the host, INIT REPORT `durationMs` of the emulator "
            "(interpreter start + runtime client + handler import + init code).",
            "",
            "| function | median ms | min ms | max ms | vs bare ms | budget | |",
            "|---|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
            "`bare` is `def handler(e, c): return {}` with no layer. The `(no .pyc)` row is the same build with the "
            "precompiled bytecode removed: what a plain `sam build` deploys (Lambda cannot write `__pycache__` on its "
            "read-only code and layer directories), which is why `make build`/`make build-deploy` precompile.",
        ]
    )
    write_section("cold-init", body)
    print(body)
    return 1 if failed else 0


if __name__ == "__main__":
    start = time.monotonic()
    code = main()
    print(f"\n({time.monotonic() - start:.1f} s)")
    sys.exit(code)
