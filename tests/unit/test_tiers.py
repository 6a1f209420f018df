"""The tiers are what they say (tests/tiers.py): markers from the folder, unit tests need no service."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tiers import ServiceGuard, tier_of, unit_problems

ROOT = Path(__file__).resolve().parents[2]


def test_the_tier_is_the_folder():
    assert tier_of(ROOT / "tests/unit/test_tiers.py") == "unit"
    assert tier_of(ROOT / "tests/integration/test_faults.py") == "integration"
    assert tier_of(ROOT / "tests/e2e/test_heal_e2e.py") == "e2e"
    assert tier_of(ROOT / "tests/bullmq_scenario.py") is None


def test_this_test_carries_the_unit_marker(request):
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None


@pytest.mark.parametrize(("marker", "path", "selected"), [
    ("not unit", "tests/unit/test_tiers.py", False),
    ("unit", "tests/unit/test_tiers.py", True),
    ("not e2e", "tests/integration/test_db_connection.py", True),
    ("integration", "tests/integration/test_db_connection.py", True),
    ("e2e", "tests/integration/test_db_connection.py", False),
])  # fmt: skip
def test_pytest_selects_a_tier_by_its_marker(marker, path, selected):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker, path],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert bool(collected) is selected, result.stdout[-2000:] + result.stderr[-2000:]


def test_a_unit_module_that_needs_a_service_is_named(tmp_path):
    module = tmp_path / "test_needs_services.py"
    module.write_text("from bullmq_scenario import run_scenario\nimport heal_support\n"
                      "from lambda_emulator import Emulator, load_function\n")  # fmt: skip
    problems = unit_problems(module, ["monkeypatch", "database_url", "start_function"])
    assert problems == [
        "uses the fixture 'database_url'", "uses the fixture 'start_function'", "imports bullmq_scenario",
        "imports heal_support", "imports lambda_emulator.Emulator",
    ]  # fmt: skip
    clean = tmp_path / "test_pure.py"
    clean.write_text("from lambda_emulator import load_function\nimport json\n")
    assert unit_problems(clean, ["monkeypatch", "closed_port", "fake_aws"]) == []


def test_every_unit_module_needs_no_service():
    modules = sorted((ROOT / "tests" / "unit").glob("test_*.py"))
    assert len(modules) > 10
    assert {module.name: unit_problems(module, []) for module in modules if unit_problems(module, [])} == {}


@pytest.mark.parametrize("port", [5432, 6379])
def test_a_unit_test_cannot_reach_postgresql_or_redis(port):
    """Both listen on 127.0.0.1 while the suite runs: the guard refuses the connection and records it."""
    with ServiceGuard() as guard:
        with pytest.raises(ConnectionRefusedError, match="need no service"):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        with socket.socket() as sock:
            assert sock.connect_ex(("localhost", port)) == errno.ECONNREFUSED
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("192.0.2.1", 80), timeout=2)  # off this machine (TEST-NET-1)
    assert ("127.0.0.1", port) in guard.attempts and ("192.0.2.1", 80) in guard.attempts


def test_a_server_the_test_started_on_loopback_is_reachable():
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        ServiceGuard() as guard,
        socket.create_connection(server.getsockname(), timeout=2),
    ):
        pass
    assert guard.attempts == []
