"""Every setting of every function fails the documented way: a malformed value never crashes the import
(Lambda's init); it is answered with ``500 {"error": "configuration", "variable": NAME}`` on the HTTP routes,
a denial by the authorizer, and a ConfigurationError naming it on the other triggers (Lambda retries)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from settings_catalog import variables_read

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("configuration_scenario.py")
# function directory -> the events it is invoked with
EVENTS = {
    "health_app": ["health-app"], "health_db": ["health-db"], "health_queue": ["health-queue"],
    "health": ["health"], "dashboard": ["dashboard"], "openapi": ["openapi"], "admin_authorizer": ["admin-authorizer"],
    "alerts": ["alerts-api", "sns-alert"], "heal": ["heal-api", "heal-schedule"], "monitor": ["monitor-schedule"],
    "probe": ["probe-schedule"],
}  # fmt: skip
MALFORMED = "\u2603 malformed"
# Free text where any value is a value (names, labels, tokens): not rejected, and never a crash.
FREE_TEXT = {
    "STAGE", "SENTRY_RELEASE", "QUEUE_NAMES", "BULLMQ_PREFIX", "HIGH_PRIORITY_QUEUE", "DB_APPLICATION_NAME",
    "AUTH_TABLES_SCHEMA", "SESSION_TABLE", "SESSION_EXPIRES_COLUMN", "VERIFICATION_TOKEN_TABLE",
    "VERIFICATION_TOKEN_EXPIRES_COLUMN", "ADMIN_API_TOKEN", "AWS_LAMBDA_FUNCTION_NAME", "ALERT_TOPIC_ARN",
    "SECRETS_MAX_AGE_S",  # read only when a secret comes from AWS
}  # fmt: skip

# What a function's modules can read but its code path never does (the alerts build their own Redis settings).
UNUSED = {"alerts": {"REDIS_CONNECT_TIMEOUT_S", "REDIS_SOCKET_TIMEOUT_S"}}


def baseline(closed_port: int) -> dict[str, str]:
    """Valid settings whose stores refuse connections at once: invocations end fast, without services."""
    return {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": f"postgresql://monitor:pw@127.0.0.1:{closed_port}/app",
        "REDIS_URL": f"redis://127.0.0.1:{closed_port}/0",
        "QUEUE_NAMES": "default",
        "HEALTH_CACHE_TTL_S": "0",
    }


def run(function: str, cases: list[dict[str, str]], env: dict[str, str]) -> list[dict]:
    result = subprocess.run(
        [sys.executable, str(SCENARIO), f"functions/{function}", json.dumps(EVENTS[function]), json.dumps(cases)],
        env=env, capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
    )  # fmt: skip
    outcomes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"import"')]
    assert len(outcomes) == len(cases), result.stdout[-2000:] + result.stderr[-2000:]
    return outcomes


def configuration_errors(outcome: dict) -> list[str | None]:
    """The variable each invocation's answer names as misconfigured (None: no configuration error)."""
    named = []
    for answer in outcome["answers"]:
        assert "raised" not in answer, f"{answer['event']}: {answer['raised']}"
        if "configuration" in answer:
            named.append(answer["configuration"])
            continue
        response = answer["answer"]
        if isinstance(response, dict) and "isAuthorized" in response:  # the authorizer
            reason = response["context"]["reason"]
            named.append(reason.split()[1] if reason.startswith("configuration: ") else None)
            assert response["isAuthorized"] is False or named[-1] is None
            continue
        if isinstance(response, dict) and "statusCode" in response:
            assert MALFORMED not in response["body"]
            if "json" not in response["headers"]["content-type"]:  # the monitoring page
                named.append(None)
                continue
            body = json.loads(response["body"])
            assert response["statusCode"] != 500 or body.get("error") == "configuration", (answer["event"], body)
            named.append(body.get("variable") if body.get("error") == "configuration" else None)
            continue
        named.append(None)  # a schedule's or SNS's own result
    return named


@pytest.mark.parametrize("function", sorted(EVENTS))
def test_every_setting_fails_the_documented_way(function, closed_port):
    variables = sorted(variables_read(ROOT / "functions" / function / "app.py") | {"POWERTOOLS_LOG_LEVEL", "LOG_LEVEL"})
    env = baseline(closed_port)
    outcomes = run(function, [{}, *({name: MALFORMED} for name in variables)], env)
    assert outcomes[0]["import"] is None and set(configuration_errors(outcomes[0])) == {None}, outcomes[0]
    for name, outcome in zip(variables, outcomes[1:], strict=True):
        assert outcome["import"] is None, f"{name}: the import raised {outcome['import']}\n{outcome['trace']}"
        named = set(configuration_errors(outcome))
        lenient = name in FREE_TEXT or name in UNUSED.get(function, ())
        assert named <= {None, name} and (lenient or named == {name}), f"{name}: {outcome['answers']}"


BAD_DSNS = (
    "not-a-dsn",
    "https://public@o1.ingest.sentry.io:port/1",
    "https://public@o1.ingest.sentry.io/project",
    "ftp://k@h/1",
)


@pytest.mark.parametrize("function", sorted(EVENTS))
def test_a_malformed_sentry_dsn_is_a_configuration_error_not_an_init_crash(function, closed_port):
    """sentry_sdk.init raises BadDsn (or ValueError) on these: that crashed every function's import."""
    outcomes = run(function, [{"SENTRY_DSN": dsn} for dsn in BAD_DSNS], baseline(closed_port))
    for dsn, outcome in zip(BAD_DSNS, outcomes, strict=True):
        assert outcome["import"] is None, f"{dsn}: {outcome['import']}"
        assert set(configuration_errors(outcome)) == {"SENTRY_DSN"}, (dsn, outcome["answers"])
        assert dsn not in json.dumps(outcome)
