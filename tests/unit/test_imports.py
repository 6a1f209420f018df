"""Cold start: importing a handler imports only what that function uses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from samcli.yamlhelper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
# botocore counts once its session machinery loads: Powertools' user-agent hook imports only
# the light ``botocore`` package itself (0.3 ms), which the Lambda runtime already has.
HEAVY = {"psycopg", "redis", "requests", "boto3", "botocore.session", "sentry_sdk", "urllib3"}
# Heavy libraries each function genuinely needs (everything else must stay unimported).
NEEDS: dict[str, set[str]] = {
    "HealthAppFunction": set(),
    "HealthDbFunction": {"psycopg"},
    "HealthQueueFunction": {"redis"},
    "HealthFunction": {"psycopg", "redis"},
    "HealthUptimeFunction": set(),
    "HealFunction": {"psycopg", "redis"},
    "AdminAuthorizerFunction": set(),
    "AdminUptimeFunction": set(),  # boto3 at the first request only (an admin-only route)
    "AlertsFunction": {"requests", "urllib3", "redis"},
    "DashboardFunction": set(),
    "OpenApiFunction": set(),
    "MonitorFunction": {"psycopg", "redis"},
    "ProbeFunction": set(),  # the standard library's socket, ssl and http.client only
}


def functions():
    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def imported_modules(properties, extra_env=None) -> set[str]:
    module, _ = properties["Handler"].rsplit(".", 1)
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(ROOT / properties['CodeUri'])!r}, {str(ROOT / 'layers' / 'shared')!r}]\n"
        f"import {module}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SENTRY_", "DATABASE_", "REDIS_"))}
    env.update(extra_env or {})
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


# Standard-library modules a function without a client library leaves to the paths that use them: hashlib and
# hmac (the admin token check) only for a request with an Authorization header, urllib.parse (and the ipaddress
# it imports) only for a URL setting or probe target, a thread pool only when a check or probe runs, and no
# uuid module for correlation IDs. The authorizer checks a token on every request; OpenAPI's ETag is a hash.
LAZY_STDLIB = {"hashlib", "hmac", "urllib.parse", "ipaddress", "concurrent.futures", "uuid"}
LAZY_STDLIB_NEEDED = {"AdminAuthorizerFunction": {"hashlib", "hmac"}, "OpenApiFunction": {"hashlib"}}
LIGHT = sorted(name for name, needs in NEEDS.items() if not needs)


def compiled_failure_patterns(properties) -> int | None:
    """How many failure-message patterns importing the handler compiled (None: it does not import failures)."""
    module, _ = properties["Handler"].rsplit(".", 1)
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT / properties['CodeUri'])!r}, {str(ROOT / 'layers' / 'shared')!r}]\n"
        f"import {module}\n"
        "failures = sys.modules.get('parel_monitoring.failures')\n"
        "print(None if failures is None else failures._messages.cache_info().currsize)\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SENTRY_", "DATABASE_", "REDIS_"))}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1].replace("None", "null"))


# A configured function (env.json's settings, as `sam local` and the benchmarks run them).
CONFIGURED = {key: str(value) for key, value in json.loads((ROOT / "env.json").read_text())["Parameters"].items()}


def test_every_function_is_listed():
    assert set(functions()) == set(NEEDS)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_handler_imports_no_library_it_does_not_use(name):
    imported = imported_modules(functions()[name]) & HEAVY
    assert imported <= NEEDS[name], f"{name} imports {sorted(imported - NEEDS[name])} at init"


def test_sentry_is_imported_once_a_dsn_is_configured():
    """The check above can fail: with a DSN the same import pulls sentry_sdk in."""
    imported = imported_modules(functions()["HealthAppFunction"], {"SENTRY_DSN": "http://public@127.0.0.1:9/1"})
    assert "sentry_sdk" in imported


@pytest.mark.parametrize("name", LIGHT)
def test_light_function_leaves_standard_library_modules_to_their_paths(name):
    imported = imported_modules(functions()[name]) & LAZY_STDLIB
    allowed = LAZY_STDLIB_NEEDED.get(name, set())
    assert imported <= allowed, f"{name} imports {sorted(imported - allowed)} at init"


def test_a_probe_target_url_brings_urllib_parse_to_init():
    """The check above can fail: with APP_BASE_URL the uptime route validates its targets' URLs at init."""
    imported = imported_modules(functions()["HealthUptimeFunction"], {"APP_BASE_URL": "https://example.com"})
    assert "urllib.parse" in imported


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_failure_patterns_are_compiled_by_the_first_failure_not_at_init(name):
    assert compiled_failure_patterns(functions()[name]) in (None, 0)


def test_categorising_a_failure_compiles_the_patterns():
    from parel_monitoring.failures import CONNECTION_REFUSED, _messages, category

    assert category(ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")) == (
        CONNECTION_REFUSED
    )
    assert _messages.cache_info().currsize == 1


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_configured_handler_leaves_powertools_to_the_first_log_line(name):
    """The Powertools package (about 20 ms) comes with the first line logged at the level (parel_monitoring.logs;
    tests/unit/test_logs.py shows that line importing it): a configured handler's import logs nothing, so it
    never needs it. (A configuration error is logged at init, and imports it then.)"""
    assert "aws_lambda_powertools" not in imported_modules(functions()[name], CONFIGURED)


def test_a_configuration_error_at_init_is_logged_through_powertools():
    """The check above can fail: HealFunction without DATABASE_URL logs its configuration error at init."""
    assert "aws_lambda_powertools" in imported_modules(functions()["HealFunction"])
