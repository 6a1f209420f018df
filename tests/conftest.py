"""Shared fixtures. Tiers (tests/tiers.py): tests/unit (no service), tests/integration (real services on
127.0.0.1), tests/e2e (built functions under the Lambda emulator); each test carries its folder's marker."""

from __future__ import annotations

import logging
import socket
import uuid

import psycopg
import pytest
from psycopg import sql

import services
from parel_monitoring import correlation, logs
from settings_catalog import all_variables_read
from tiers import tier_of, unit_problems

# Every setting any function's code reads (found statically, so a new one is covered the day it is added),
# with the secret-by-reference forms and what Lambda itself sets: cleared so that nothing in the developer's
# shell (their own SLACK_WEBHOOK_URL, ...) can change a test's outcome.
_LAMBDA_VARIABLES = {"LOG_LEVEL", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_SERVICE_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                     "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_INITIALIZATION_TYPE"}  # fmt: skip
_READ_VARIABLES = sorted(
    {variant for name in all_variables_read() for variant in (name, f"{name}_SECRET_ARN", f"{name}_PARAMETER")}
    | _LAMBDA_VARIABLES
)


def pytest_collection_modifyitems(config, items):
    """Every test gets its tier's marker from its folder (``pytest -m "not e2e"``); a test outside the three
    tiers, or a unit test that needs a service (a service fixture, a service helper), stops the run."""
    problems = []
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            problems.append(f"{item.nodeid}: not under tests/unit, tests/integration or tests/e2e")
            continue
        item.add_marker(getattr(pytest.mark, tier))
        if tier == "unit":
            for why in unit_problems(item.path, item.fixturenames):  # an import: once for its module
                problems.append(f"{item.nodeid if why.startswith('uses') else item.nodeid.split('::')[0]} {why}")
    if problems:
        raise pytest.UsageError(
            "tests/unit needs no service (tests/tiers.py): move these to tests/integration or tests/e2e\n  "
            + "\n  ".join(dict.fromkeys(problems))
        )


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch):
    for name in _READ_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    correlation._current = None
    logs.create_logger.cache_clear()
    # Loggers write to the sys.stdout of their creation; rebuild them under this test's capture.
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and (getattr(logger, "init", False) or logger.name.startswith("parel.")):
            logger.handlers.clear()
            for attribute in ("init", "powertools_handler"):
                logger.__dict__.pop(attribute, None)
    logs.bind_invocation()
    yield


# Real services (integration and e2e tiers): a missing one is a failure, not a skip.


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url, _ = services.postgres_url()
    return url


@pytest.fixture
def database_url(pg_admin_url):
    """A database of this test's own, dropped afterwards (with whatever still connects to it)."""
    name = f"parel_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg_admin_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def password_protected_postgres() -> str:
    """A throwaway server that really checks passwords (the shared one trusts everyone)."""
    url, _ = services.start_throwaway_postgres(password="right-Pa55word")
    return url


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake_aws(monkeypatch):
    """moto's AWS for the test: fake credentials and region, Powertools' and our client caches cleared."""
    from aws_lambda_powertools.utilities.parameters import base
    from moto import mock_aws

    from parel_monitoring import alerts

    for name in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "us-east-1" if name == "AWS_DEFAULT_REGION" else "testing")
    base.clear_caches()
    alerts._sns_client.cache_clear()
    with mock_aws():
        yield
    alerts._sns_client.cache_clear()


@pytest.fixture
def webhooks():
    """Two real HTTP servers standing in for Slack's and Discord's webhooks."""
    from pytest_httpserver import HTTPServer

    slack, discord = HTTPServer(host="127.0.0.1"), HTTPServer(host="127.0.0.1")
    slack.start(), discord.start()
    yield slack, discord
    slack.stop(), discord.stop()


# The built functions under the Lambda emulator (e2e tier, and the fault tests).


@pytest.fixture(scope="session")
def built():
    from lambda_emulator import BUILD_DIR, RUNTIME_DIR

    # A missing build is a failure, not a skip: `make test` builds before pytest runs.
    assert (BUILD_DIR / "template.yaml").exists(), f"{BUILD_DIR} missing: run `make build`"
    assert (RUNTIME_DIR / "awslambdaric").exists(), f"{RUNTIME_DIR} missing: run `make runtime`"
    return BUILD_DIR


@pytest.fixture
def start_function(built):
    """``start_function("HealthAppFunction", VAR="value")``: a warm environment, stopped after the test."""
    from lambda_emulator import Emulator, load_function

    started: list[Emulator] = []

    def start(logical_id: str, **env: str) -> Emulator:
        emulator = Emulator(load_function(logical_id, built), extra_env=env).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def redis_client():
    """A client of the shared Redis on 127.0.0.1:6379 (tests use their own key prefixes)."""
    import redis

    connection = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=2, socket_timeout=5)
    assert connection.ping(), "Redis at 127.0.0.1:6379 does not answer"
    yield connection
    connection.close()


@pytest.fixture
def prefix(request):
    """A BullMQ key prefix of this test's own (tagged with its module); its keys are deleted afterwards."""
    from bullmq_scenario import cleanup, unique_prefix

    name = unique_prefix(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")[:12])
    yield name
    cleanup(name)


@pytest.fixture(params=[5, 6], ids=["bullmq5", "bullmq6"])
def bullmq_major(request, monkeypatch) -> int:
    """Runs the test once per supported bullmq major: scenario.mjs (and any Node child) uses it."""
    monkeypatch.setenv("BULLMQ_MAJOR", str(request.param))
    return request.param


@pytest.fixture
def throwaway_redis(tmp_path):
    """``throwaway_redis("maxmemory-policy allkeys-lru", 'rename-command CLIENT ""', ...)``: a redis-server of the
    test's own (never the shared one on 6379) started from a config file holding those lines; its URL. Killed
    after the test, with its data."""
    import shutil
    import subprocess

    binary = shutil.which("redis-server")
    assert binary, "redis-server not found (apt-get install redis-server)"
    started: list[subprocess.Popen] = []

    def start(*lines: str) -> str:
        port = services._free_port()
        config = tmp_path / f"redis-{port}.conf"
        base = [f"port {port}", "bind 127.0.0.1", 'save ""', "appendonly no", f"dir {tmp_path}"]
        config.write_text("\n".join([*base, *lines]) + "\n")
        started.append(subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        services._wait_listening(port, "Redis")
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def password_protected_redis():
    """A throwaway ``redis-server --requirepass right-Pa55word`` (the shared one has no password): its URL."""
    import shutil
    import subprocess
    import tempfile

    binary = shutil.which("redis-server")
    assert binary, "redis-server not found (apt-get install redis-server)"
    port, work_dir = services._free_port(), tempfile.mkdtemp(prefix="parel-redis-auth-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "right-Pa55word", "--save", "",
         "--appendonly", "no", "--dir", work_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        services._wait_listening(port, "Redis")
        yield f"redis://default:right-Pa55word@127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster():
    """A throwaway 3-master Redis Cluster on loopback ports (``services.start_redis_cluster``), stopped at the
    end of the session; a missing ``redis-server`` or ``redis-cli`` fails the tests that use it, saying so."""
    cluster = services.start_redis_cluster(masters=3)
    try:
        yield cluster
    finally:
        cluster.stop()
