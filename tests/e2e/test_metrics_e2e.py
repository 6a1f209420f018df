"""The sweep's and the heal run's EMF metrics, checked against what template.yaml's alarms watch."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from samcli.yamlhelper import yaml_parse

from bullmq_scenario import REDIS_URL, cleanup, run_scenario, unique_prefix
from events_loader import load_event
from nextauth_schema import create_prisma_schema

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "ParelMonitoring"
# Units CloudWatch accepts (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html)
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes", "Bits",
    "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second",
    "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
STAGE = TEMPLATE["Parameters"]["Stage"]["Default"]


def emf_documents(lines: list[str]) -> list[dict]:
    documents = []
    for line in lines:
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def assert_valid_emf(document: dict) -> None:
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    for directive in meta["CloudWatchMetrics"]:
        assert directive["Namespace"] == NAMESPACE
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            assert all(isinstance(document[name], str) and document[name] for name in dimension_set)
        for metric in directive["Metrics"]:
            assert metric["Unit"] in UNITS, metric
            values = document[metric["Name"]]
            values = values if isinstance(values, list) else [values]
            assert values and all(isinstance(value, int | float) for value in values)


def emitted(documents: list[dict]) -> set[tuple[str, str, frozenset]]:
    """(namespace, metric, frozenset of (dimension, value)) for every metric the documents carry."""
    found = set()
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = frozenset((name, document[name]) for name in dimension_set)
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], dimensions))
    return found


def resolve(value):
    if isinstance(value, dict) and "Ref" in value:
        return {"Stage": STAGE}.get(value["Ref"], value["Ref"])
    return value


def watched() -> dict[str, tuple[str, str, frozenset]]:
    """alarm logical id -> (namespace, metric, dimensions) for the alarms on our own namespace."""
    alarms = {}
    for name, resource in TEMPLATE["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm" and props.get("Namespace") == NAMESPACE:
            dims = frozenset((d["Name"], resolve(d["Value"])) for d in props["Dimensions"])
            alarms[name] = (NAMESPACE, props["MetricName"], dims)
    return alarms


@pytest.fixture(scope="module")
def sweep_and_heal_metrics(built, tmp_path_factory):
    """Run MonitorFunction and HealFunction under the emulator on real services; their EMF lines."""
    import services
    from lambda_emulator import Emulator, load_function

    admin_url, _ = services.postgres_url()
    name = f"parel_metrics_{unique_prefix('m').split('-')[-1]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_prisma_schema(conn)
    prefix = unique_prefix("metrics")
    run_scenario("populate", prefix, "high-priority", waiting=2, completed=3, failed=1)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "QUEUE_NAMES": "high-priority,default",
        "BULLMQ_PREFIX": prefix,
        "HIGH_PRIORITY_QUEUE": "high-priority",
        "ALERT_TOPIC_ARN": "",
        "STAGE": STAGE,
    }
    lines: list[str] = []
    try:
        for function, event in (("MonitorFunction", "heal-schedule"), ("HealFunction", "heal-schedule")):
            with Emulator(load_function(function, built), extra_env=env) as emulator:
                result = emulator.invoke(load_event(event))
                assert "errorType" not in (result.payload or {}), result.payload
                lines += result.logs
    finally:
        cleanup(prefix)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    return emf_documents(lines)


def test_every_emf_document_is_valid(sweep_and_heal_metrics):
    assert len(sweep_and_heal_metrics) >= 5
    for document in sweep_and_heal_metrics:
        assert_valid_emf(document)


def test_every_alarm_watches_a_metric_the_code_emits(sweep_and_heal_metrics):
    found = emitted(sweep_and_heal_metrics)
    alarms = watched()
    assert len(alarms) >= 12
    missing = {name: metric for name, metric in alarms.items() if metric not in found}
    assert not missing, f"alarms watch metrics nobody emits (name, dimensions): {missing}"


def test_the_sweep_emits_every_metric_of_the_issue(sweep_and_heal_metrics):
    names = {metric for _, metric, _ in emitted(sweep_and_heal_metrics)}
    assert {
        "HealthStatus", "DbQueryTimeMs", "DbConnectionUsagePercent", "QueueWaiting", "QueueActive", "QueueFailed",
        "QueueFailureRatePercent", "HighPriorityLag", "MemoryUsagePercent", "StaleSessionsDeleted",
        "StuckJobsRequeued", "OrphanedRecordsDeleted", "HealDurationMs", "HealFailures",
    } <= names  # fmt: skip
    per_queue = {
        dict(dims).get("Queue") for _, metric, dims in emitted(sweep_and_heal_metrics) if metric == "QueueWaiting"
    }
    assert per_queue == {"high-priority", "default"}


def lambda_metric_alarms(metric: str) -> dict[str, set[str]]:
    """alarm logical id -> the functions whose AWS/Lambda ``metric`` its metric math sums."""
    alarms = {}
    for name, resource in TEMPLATE["Resources"].items():
        queries = (
            resource.get("Properties", {}).get("Metrics", []) if resource["Type"] == "AWS::CloudWatch::Alarm" else []
        )
        stats = [q["MetricStat"]["Metric"] for q in queries if "MetricStat" in q]
        watched_functions = {
            stat["Dimensions"][0]["Value"]["Ref"]
            for stat in stats
            if stat["Namespace"] == "AWS/Lambda" and stat["MetricName"] == metric
        }
        if watched_functions:
            alarms[name] = watched_functions
    return alarms


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_is_covered_by_the_errors_and_throttles_alarms(metric):
    functions = {name for name, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    alarms = lambda_metric_alarms(metric)
    assert {"FunctionErrorsAlarm", "FunctionThrottlesAlarm"} & set(alarms)
    covered = set().union(*alarms.values())
    assert covered == functions, f"{metric}: not watched {sorted(functions - covered)}"


def test_no_metric_math_alarm_exceeds_cloudwatchs_ten_metrics():
    """CloudWatch rejects a metric-math alarm with more than 10 metrics (the deploy fails, not the lint)."""
    for name, resource in TEMPLATE["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            queries = resource["Properties"].get("Metrics", [])
            assert sum("MetricStat" in q for q in queries) <= 10, name


def test_every_alarm_notifies_on_alarm_and_on_recovery():
    for name, resource in TEMPLATE["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            props = resource["Properties"]
            assert props["AlarmActions"] == [{"Ref": "AlertTopic"}] == props["OKActions"], name
