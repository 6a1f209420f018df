"""The test tiers, told apart by folder, and the checks that keep each what it says it is.

* ``tests/unit`` (marker ``unit``): no service. No PostgreSQL, Redis, Lambda emulator or build, no network
  beyond a server the test starts itself on 127.0.0.1 (pytest-httpserver) or a closed loopback port. Enforced
  at collection (``unit_problems``: no service fixture, no import of a service helper) and while each unit test
  runs (``ServiceGuard``: a connection to PostgreSQL's or Redis's port, or off this machine, is refused and
  fails the test), so every run of the unit tier is a run with PostgreSQL and Redis unreachable.
* ``tests/integration`` (marker ``integration``): real PostgreSQL and Redis on 127.0.0.1.
* ``tests/e2e`` (marker ``e2e``): the built functions under the Lambda emulator.

tests/conftest.py gives every test the marker of its folder, so ``pytest -m "not e2e"`` (or ``-m unit``)
selects by tier; a test module outside the three folders is a collection error.
"""

from __future__ import annotations

import ast
import errno
import functools
import ipaddress
import socket
import threading
from pathlib import Path

TIERS = ("unit", "integration", "e2e")
# tests/conftest.py's fixtures that start or reach a service (PostgreSQL, Redis, the emulator and its build).
SERVICE_FIXTURES = frozenset({
    "pg_admin_url", "database_url", "password_protected_postgres", "password_protected_redis", "redis_client",
    "redis_cluster", "prefix", "bullmq_major", "built", "start_function",
})  # fmt: skip
# tests/ and tools/ helpers whose purpose is to reach a service (or run the emulator).
SERVICE_MODULES = frozenset({"services", "bullmq_scenario", "heal_support", "authjs_scenario", "monitoring_role",
                             "local_api"})  # fmt: skip
SERVICE_NAMES = frozenset({("lambda_emulator", "Emulator")})
SERVICE_PORTS = frozenset({5432, 6379})  # PostgreSQL's and Redis's, wherever they listen


def tier_of(path: Path | str) -> str | None:
    """``unit``, ``integration`` or ``e2e`` for a test file under tests/<tier>/; None elsewhere."""
    parts = Path(path).parts
    for index in range(len(parts) - 1):
        if parts[index] == "tests" and parts[index + 1] in TIERS:
            return parts[index + 1]
    return None


@functools.cache
def _service_imports(path: Path) -> tuple[str, ...]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] in SERVICE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in SERVICE_MODULES:
                found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names if (node.module, a.name) in SERVICE_NAMES]
    return tuple(found)


def unit_problems(path: Path, fixturenames: list[str] | tuple[str, ...]) -> list[str]:
    """Why a unit test (in ``path``, using ``fixturenames``) would need a service; empty: it needs none."""
    problems = [f"uses the fixture {name!r}" for name in sorted(SERVICE_FIXTURES & set(fixturenames))]
    problems += [f"imports {name}" for name in _service_imports(Path(path))]
    return problems


class ServiceGuard:
    """While active (any thread of this process): a TCP connection to port 5432 or 6379 on any host, or to an
    address off this machine, is refused (``ConnectionRefusedError``) and recorded in ``attempts``. Loopback
    connections to other ports (a server the test started, a closed port) go through."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._originals: dict[str, object] = {}

    def _blocked(self, address: object) -> tuple[str, int] | None:
        if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int)):
            return None  # a Unix socket or another family: not a network service
        host, port = str(address[0]), address[1]
        try:
            off_machine = not ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:  # a name: socket.connect resolves it; treat as off the machine unless it is localhost
            off_machine = host != "localhost"
        return (host, port) if port in SERVICE_PORTS or off_machine else None

    def __enter__(self) -> ServiceGuard:
        guard = self
        for name in ("connect", "connect_ex"):
            original = getattr(socket.socket, name)
            self._originals[name] = original

            def patched(sock, address, _original=original, _name=name):
                blocked = guard._blocked(address) if sock.family in (socket.AF_INET, socket.AF_INET6) else None
                if blocked:
                    with guard._lock:
                        guard.attempts.append(blocked)
                    if _name == "connect_ex":
                        return errno.ECONNREFUSED
                    raise ConnectionRefusedError(f"unit tests need no service: connection to {blocked} refused")
                return _original(sock, address)

            setattr(socket.socket, name, patched)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, original in self._originals.items():
            setattr(socket.socket, name, original)
