"""The README's local commands, run as a new user runs them: in a fresh copy of the repository with
nothing installed or built (its own venv, Lambda runtime client and `sam build`), so a green suite
cannot hide a documented command that only works from this checkout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from nextauth_schema import create_prisma_schema
from report import QUICK_NOTE
from tree_copy import copy_as_clone

# Every function with the event the README's `make invoke FN=... EVENT=...` pairs it with.
INVOCATIONS = {
    "HealthAppFunction": "events/health-app.json",
    "HealthDbFunction": "events/health-db.json",
    "HealthQueueFunction": "events/health-queue.json",
    "HealthFunction": "events/health.json",
    "HealthUptimeFunction": "events/health-uptime.json",
    "DashboardFunction": "events/dashboard.json",
    "OpenApiFunction": "events/openapi.json",
    "AdminAuthorizerFunction": "events/admin-authorizer.json",
    "AlertsFunction": "events/alerts-api.json",
    "HealFunction": "events/heal-api.json",
    "MonitorFunction": "events/monitor-schedule.json",
    "ProbeFunction": "events/probe-schedule.json",
}
MAKE_TIMEOUT_S = 900  # the first command creates the venv and builds everything


def _clean_environment() -> dict[str, str]:
    """The caller's environment without the settings and paths this checkout's venv put there."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTEST_"))}
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if "/.venv/" not in part + "/")
    for name in ("DATABASE_URL", "REDIS_URL", "PYTHONPATH"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """What `git clone` of this tree gives: the tracked files (as they are now) and nothing else."""
    clone = copy_as_clone(tmp_path_factory.mktemp("readme") / "parel-monitoring")
    assert not (clone / ".venv").exists() and not (clone / ".aws-sam").exists()
    return clone


def make(clone: Path, *arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", *arguments],
        cwd=clone, env=_clean_environment(), capture_output=True, text=True, timeout=MAKE_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"make {' '.join(arguments)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def payload(stdout: str) -> dict:
    """The response `make invoke` prints last (indented JSON), after whatever the build printed."""
    lines = stdout.splitlines()
    start = max(index for index, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


@pytest.fixture
def local_env(fresh_clone, database_url, prefix):
    """env.local.json (documented: `make invoke` and `make api` prefer it) pointing at a database of this
    test's own with the official Auth.js Prisma schema (the heal finds it with no settings) and at this
    test's own BullMQ prefix; everything else as env.json ships it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_prisma_schema(conn)
    env = json.loads((fresh_clone / "env.json").read_text())
    env["Parameters"].update({"DATABASE_URL": database_url, "BULLMQ_PREFIX": prefix})
    path = fresh_clone / "env.local.json"
    path.write_text(json.dumps(env))
    yield path
    path.unlink()


def test_make_invoke_runs_every_function_from_a_fresh_clone(fresh_clone, local_env):
    for function, event in INVOCATIONS.items():
        result = make(fresh_clone, "invoke", f"FN={function}", f"EVENT={event}")
        response = payload(result.stdout)
        assert "errorType" not in response, f"{function}: {response}"
        if function == "AdminAuthorizerFunction":
            assert response["isAuthorized"] is True, response
        elif function == "MonitorFunction":
            assert set(response) >= {"status", "app", "db", "queue"}, response
        elif function == "ProbeFunction":
            assert set(response) >= {"targets", "up", "down", "slow"}, response
        else:
            assert response["statusCode"] == 200, f"{function}: {response}"
        if function == "HealFunction":
            body = json.loads(response["body"])
            assert body["routines"]["sessions"]["status"] == "ok", body
        assert "REPORT RequestId" in result.stderr, f"{function}: no emulator REPORT line"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_api_answers_and_make_smoke_passes_against_it(fresh_clone, local_env, webhooks):
    """`make api`, then the README's `make smoke` against it: health, auth, a test alert that reaches both
    webhook stand-ins (HTTP servers on 127.0.0.1), and a heal dry run."""
    env = json.loads(local_env.read_text())
    slack, discord = webhooks
    env["Parameters"]["SLACK_WEBHOOK_URL"] = slack.url_for("/services/T0/B0/readme-slack")
    env["Parameters"]["DISCORD_WEBHOOK_URL"] = discord.url_for("/api/webhooks/0/readme-discord")
    local_env.write_text(json.dumps(env))
    for server in webhooks:
        server.expect_request("", method="POST").respond_with_data("ok")
    port = _free_port()
    server = subprocess.Popen(
        ["make", "--no-print-directory", "-s", "api", f"PORT={port}"],
        cwd=fresh_clone, env=_clean_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + MAKE_TIMEOUT_S
        while True:
            assert server.poll() is None, f"make api exited: {server.stdout.read().decode()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{base}/api/health/app", timeout=30) as response:  # noqa: S310
                    status, body = response.status, json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "make api never answered"
                time.sleep(1)
        assert status == 200 and body["status"] == "healthy"
        token = json.loads((fresh_clone / "env.json").read_text())["Parameters"]["ADMIN_API_TOKEN"]
        smoke = make(fresh_clone, "smoke", f"URL={base}", f"TOKEN={token}")
        assert "FAIL" not in smoke.stdout, smoke.stdout
        assert len(slack.log) == 1 and len(discord.log) == 1, "the smoke test alert did not reach both channels"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_make_demo_heals_what_it_seeded_from_a_fresh_clone(fresh_clone):
    """`make demo` installs its Node tooling in the clone, seeds rot, and the heal it shows removes it."""
    output = make(fresh_clone, "demo").stdout
    assert "=== POST /api/admin/heal\nHTTP 200" in output, output[-3000:]
    healed = re.search(r"(\d+) stale sessions, (\d+) stuck jobs and (\d+) orphaned records healed", output)
    assert healed and all(int(count) > 0 for count in healed.groups()), output[-3000:]
    assert "HTTP 5" not in output, "a demo step answered with a server error"


# What `make bench` writes: each script's sections (their write_section/publish names), in the Makefile's order.
BENCH_SECTIONS = ("cold-init", "warm-latency", "heal-jobs", "heal-sessions", "alert-fanout", "health-flood",
                  "probe-fanout")  # fmt: skip


def _bench_sections(text: str) -> dict[str, str]:
    return dict(re.findall(r"<!-- bench:([\w-]+) -->\n(.*?)\n<!-- /bench:\1 -->", text, re.S))


def _markdown_section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {heading!r} in:\n{text[:3000]}"
    return match[1]


def test_make_bench_quick_runs_every_benchmark_from_a_fresh_clone(fresh_clone):
    """`make bench QUICK=1` (the README's quick check of `make bench`): every benchmark script runs with small sizes
    and writes its sections, each marked as a quick run, into BENCHMARKS.quick.md; the committed BENCHMARKS.md is
    left alone. Checked: the sections and their figures and what each run must get right, never a speed (a
    quick run reports its targets without enforcing them)."""
    committed = (fresh_clone / "BENCHMARKS.md").read_text()
    make(fresh_clone, "bench", "QUICK=1")
    assert (fresh_clone / "BENCHMARKS.md").read_text() == committed, "a quick run changed BENCHMARKS.md"
    sections = _bench_sections((fresh_clone / "BENCHMARKS.quick.md").read_text())
    assert tuple(sections) == BENCH_SECTIONS
    for name, body in sections.items():
        assert QUICK_NOTE in body, f"{name}: not marked as a quick run"
        assert re.search(r"Measured \d{4}-\d\d-\d\d \d\d:\d\d UTC", body), name
    number = r"\d[\d,]*(?:\.\d+)?"
    cold = sections["cold-init"]
    for function in INVOCATIONS:  # each function's INIT REPORT, as a plain `sam build` builds it
        assert re.search(rf"^\| {function} \(plain sam build\) \| {number} \|", cold, re.M), function
    warm = sections["warm-latency"]
    for function in ("HealthAppFunction", "HealthDbFunction", "HealthQueueFunction", "HealthFunction"):
        row = re.search(rf"^\| {function}(?: \([^|]*\))? \| 200 (\w+) \| {number} \| {number} \|", warm, re.M)
        # healthy, or "pass" where the aggregate route answers in the health+json vocabulary
        assert row and row[1] in ("healthy", "pass"), f"{function}: {row[0] if row else 'no row'}"
    jobs = sections["heal-jobs"]
    stuck = int(re.search(r"healStuckJobs: ([\d,]+) stuck jobs", jobs)[1].replace(",", ""))
    assert re.search(rf"^\| heal \| {stuck} \| ", jobs, re.M) and "as expected" in jobs, jobs
    sessions = sections["heal-sessions"]
    kept = re.findall(r"\| ([\d,]+) deleted, ([\d,]+) live kept: (\w+) \|", sessions)
    assert len(kept) == 5 and all(verdict == "met" for *_, verdict in kept), sessions  # 3 + 2 strategies
    fanout = sections["alert-fanout"]
    assert re.search(rf"^\| `fan_out` [^|]* \| {number} \| {number} \|", fanout, re.M), fanout
    assert re.search(r"[1-9]\d* requests went over [1-9]\d* TCP connections", fanout), fanout
    flood = sections["health-flood"]
    cases = re.findall(rf"^\| `(/api/health[^`]*)` \| (baseline|bounded) \| \d+ \| \d+ \| {number} \|", flood, re.M)
    assert len(cases) == 6, flood  # 3 routes x 2 configurations
    assert "Every answer a function gave was 200" in flood, flood
    probe = sections["probe-fanout"]
    assert re.search(rf"^\| \d+ targets \| {number} \|", probe, re.M), probe
    assert re.search(rf"^\| 1 target \(the same URL alone\) \| {number} \|", probe, re.M), probe


def test_make_reliability_quick_writes_its_sections_from_a_fresh_clone(fresh_clone):
    """`make reliability QUICK=1 SECTIONS=load,checkov,schemathesis`: the parts only `make reliability` runs (its
    `tests` group is modules of this suite), with small sizes, into RELIABILITY.quick.md, the committed
    RELIABILITY.md left alone; the command fails on any failed case, so its exit status is checked too."""
    committed = (fresh_clone / "RELIABILITY.md").read_text()
    make(fresh_clone, "reliability", "QUICK=1", "SECTIONS=load,checkov,schemathesis")
    assert (fresh_clone / "RELIABILITY.md").read_text() == committed, "a quick run changed RELIABILITY.md"
    text = (fresh_clone / "RELIABILITY.quick.md").read_text()
    assert QUICK_NOTE in text
    assert "Not run (`--skip-tests`, or `--sections` without `tests`)." in _markdown_section(text, "Faults")
    load = _markdown_section(text, "Load")
    row = re.search(r"^\| Load: 8 concurrent clients [^|]*\| [^|]* \| (\w+) \| ([\d,]+) requests in ", load, re.M)
    assert row and row[1] == "met" and int(row[2].replace(",", "")) > 0, load
    heal = re.search(r"^\| Heal on large data \(([\d,]+) expired of ([\d,]+) sessions\)[^|]*\| [^|]* \| (\w+) \| "
                     r"[^|]*; left: ([\d,]+) live, 0 expired", load, re.M)  # fmt: skip
    assert heal and heal[3] == "met", load
    expired, total, live = (int(heal[i].replace(",", "")) for i in (1, 2, 4))
    assert live == total - expired > 0, load
    checkov = _markdown_section(text, "Checkov")
    assert re.search(r"\d+ checks passed, \d+ findings", checkov), checkov
    fuzz = re.search(r"^\| (\d+) of \1 \| ([\d,]+) \| ([\d,]+) \| 0 \| 0 \|", _markdown_section(text, "Schemathesis"),
                     re.M)  # fmt: skip
    assert fuzz and int(fuzz[2].replace(",", "")) > 0, text[-3000:]
