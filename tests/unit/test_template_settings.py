"""Every setting the code reads can be set at deploy time (a stack parameter) and locally (env.json),
without editing template.yaml, and the README documents it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from samcli.yamlhelper import yaml_parse

from lambda_emulator import load_function
from settings_catalog import variables_read

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
PARAMETERS = set(TEMPLATE["Parameters"])
GLOBAL_VARIABLES = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
FUNCTIONS = {
    name: resource["Properties"]
    for name, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
}
# Set by Lambda itself, not by operators.
RUNTIME_PROVIDED = re.compile(r"AWS_.*")
# Direct secret values: empty in AWS (secrets arrive by ARN), set only by env.json for local runs.
LOCAL_SECRET_VALUES = {"DATABASE_URL", "REDIS_URL", "SENTRY_DSN", "SLACK_WEBHOOK_URL", "DISCORD_WEBHOOK_URL",
                       "ADMIN_API_TOKEN"}  # fmt: skip
# Wired by the template to its own resources or names.
TEMPLATE_WIRED = {"ALERT_TOPIC_ARN", "POWERTOOLS_SERVICE_NAME"}


def declared(function: str) -> dict:
    return {**GLOBAL_VARIABLES, **FUNCTIONS[function].get("Environment", {}).get("Variables", {})}


def parameters_behind(value) -> set[str]:
    """The stack parameters a declared value comes from: ``!Ref P``, or an ``!If`` choosing between parameters
    (or AWS::NoValue); empty when anything else (a fixed value) is involved."""
    if isinstance(value, dict) and value.get("Ref") in PARAMETERS:
        return {value["Ref"]}
    if isinstance(value, dict) and "Fn::If" in value:
        branches = value["Fn::If"][1:]
        if all(branch == {"Ref": "AWS::NoValue"} or parameters_behind(branch) for branch in branches):
            return set().union(*(parameters_behind(branch) for branch in branches))
    return set()


def handler_file(function: str) -> Path:
    return ROOT / FUNCTIONS[function]["CodeUri"] / (FUNCTIONS[function]["Handler"].split(".")[0] + ".py")


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_setting_a_function_reads_is_declared_for_it(function):
    read = {name for name in variables_read(handler_file(function)) if not RUNTIME_PROVIDED.fullmatch(name)}
    assert read, "the catalog found no settings at all: it is broken"
    missing = sorted(read - set(declared(function)))
    assert not missing, f"{function} reads {missing}, which template.yaml does not declare for it"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_declared_setting_comes_from_a_stack_parameter(function):
    for name, value in declared(function).items():
        if name in LOCAL_SECRET_VALUES:
            assert value == "", f"{name} must stay empty in the template (secrets arrive by ARN)"
        elif name not in TEMPLATE_WIRED:
            assert parameters_behind(value), f"{function}: {name} is fixed in template.yaml; make it a stack parameter"


def test_a_parameter_override_reaches_the_function_environment():
    """What `sam deploy --parameter-overrides` / samconfig.toml does, read as the emulator reads the template."""
    overrides = {"SessionSchema": "pg-adapter", "QueueLagWarning": "7", "HealLock": "redis", "LogFormat": "text"}
    heal = load_function("HealFunction", ROOT, parameter_overrides=overrides)
    queue = load_function("HealthQueueFunction", ROOT, parameter_overrides=overrides)
    assert heal.environment["SESSION_SCHEMA"] == "pg-adapter"
    assert heal.environment["HEAL_LOCK"] == "redis"
    assert queue.environment["QUEUE_LAG_WARNING"] == "7"
    assert queue.environment["LOG_FORMAT"] == "text"
    assert load_function("HealFunction", ROOT).environment["SESSION_BATCH_SIZE"] == "", "empty = the code's default"


def test_a_conditional_variable_takes_the_branch_the_parameters_choose():
    """The monitoring credential replaces the main one for the health routes; the admin token reaches them
    only when they show details to authorized callers."""
    given = {"DatabaseUrlSecretArn": "arn:main", "MonitorDatabaseUrlSecretArn": "arn:monitor",
             "AdminApiTokenSecretArn": "arn:token"}  # fmt: skip
    health_db = load_function("HealthDbFunction", ROOT, parameter_overrides=given).environment
    assert health_db["DATABASE_URL_SECRET_ARN"] == "arn:monitor"
    assert health_db["ADMIN_API_TOKEN_SECRET_ARN"] == "arn:token"
    assert load_function("HealFunction", ROOT, parameter_overrides=given).environment[
        "DATABASE_URL_SECRET_ARN"] == "arn:main"  # fmt: skip
    fallback = {**given, "MonitorDatabaseUrlSecretArn": "", "HealthShowDetails": "always"}
    health_db = load_function("HealthDbFunction", ROOT, parameter_overrides=fallback).environment
    assert health_db["DATABASE_URL_SECRET_ARN"] == "arn:main"
    assert "ADMIN_API_TOKEN_SECRET_ARN" not in health_db


def test_env_json_sets_only_declared_variables():
    """sam local ignores an env.json variable the template does not declare: it would silently do nothing."""
    env = json.loads((ROOT / "env.json").read_text())
    everywhere = set(GLOBAL_VARIABLES).union(*(declared(function) for function in FUNCTIONS))
    assert not set(env["Parameters"]) - everywhere
    for function, variables in env.items():
        if function != "Parameters":
            assert function in FUNCTIONS, f"env.json names no function {function}"
            assert not set(variables) - set(declared(function)), function
    local = load_function("HealFunction", ROOT, env_vars={"HealFunction": {"ORPHAN_RULES": "[]"}})
    assert local.environment["ORPHAN_RULES"] == "[]"


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    read = set().union(*(variables_read(handler_file(function)) for function in FUNCTIONS))
    undocumented = sorted(name for name in read if not RUNTIME_PROVIDED.fullmatch(name) and f"`{name}`" not in readme)
    assert not undocumented, f"README's Settings table lacks {undocumented}"


def test_readme_maps_every_setting_parameter_to_its_variables():
    readme = (ROOT / "README.md").read_text()
    uses: dict[str, set[str]] = {}
    for function in FUNCTIONS:
        for name, value in declared(function).items():
            for parameter in parameters_behind(value):
                uses.setdefault(parameter, set()).add(name)
    for parameter, variables in uses.items():
        row = f"| `{parameter}` | {' / '.join(f'`{name}`' for name in sorted(variables))} |"
        assert row in readme, f"README's parameter table lacks or misstates {row}"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_environment_leaves_room_under_lambdas_4_kb_limit(function):
    """Lambda rejects a function whose variables exceed 4 KB in all; keep 1.5 KB for operators' values
    (ARNs, ORPHAN_RULES)."""
    environment = load_function(function, ROOT).environment
    assert sum(len(name) + len(value) for name, value in environment.items()) < 4096 - 1536
