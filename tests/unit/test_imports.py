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
