"""The queue-liveness alarms of template.yaml (issue 15): they use the very parameters the queue check reads, watch
the high-priority queue the check calls high priority, and the no-worker alarm's metric math fires exactly when the
check's rule does (no live worker while the oldest job has waited the grace), evaluated on the template's own
expression. tests/e2e/test_metrics_e2e.py checks that the metrics they watch are the ones the sweep emits."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from samcli.yamlhelper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]
# alarm -> the setting whose stack parameter must be its threshold
THRESHOLD_ALARMS = {
    "HighPriorityOldestAgeWarningAlarm": "QUEUE_AGE_WARNING_S",
    "HighPriorityOldestAgeCriticalAlarm": "QUEUE_AGE_CRITICAL_S",
    "RedisMemoryWarningAlarm": "REDIS_MEMORY_WARNING_PCT",
    "RedisMemoryCriticalAlarm": "REDIS_MEMORY_CRITICAL_PCT",
}
NEW_ALARMS = {*THRESHOLD_ALARMS, "HighPriorityNoWorkerAlarm", "RedisEvictionPolicyAlarm"}


def parameter_of(setting: str, function: str = "MonitorFunction") -> str:
    """The stack parameter behind ``setting`` in the environment of ``function`` (the sweep whose metrics the
    alarms watch) and of the health routes."""
    variables = {
        **TEMPLATE["Globals"]["Function"]["Environment"]["Variables"],
        **RESOURCES[function]["Properties"]["Environment"]["Variables"],
    }
    value = variables[setting]
    assert isinstance(value, dict) and "Ref" in value, f"{setting} of {function} is not a parameter: {value}"
    return value["Ref"]


def test_every_new_alarm_notifies_on_alarm_and_recovery_and_is_named_for_its_severity():
    for name in NEW_ALARMS:
        props = RESOURCES[name]["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlertTopic"}] == props["OKActions"], name
        assert re.search(r"-(warning|critical)$", props["AlarmName"]["Fn::Sub"]), name


@pytest.mark.parametrize("alarm", sorted(THRESHOLD_ALARMS))
def test_threshold_alarms_use_the_checks_parameters(alarm):
    setting = THRESHOLD_ALARMS[alarm]
    for function in ("MonitorFunction", "HealthQueueFunction", "HealthFunction"):
        assert RESOURCES[alarm]["Properties"]["Threshold"] == {"Ref": parameter_of(setting, function)}, function
    assert RESOURCES[alarm]["Properties"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"  # the check's >=


def queue_dimension(metric: dict) -> object:
    return {d["Name"]: d["Value"] for d in metric["Dimensions"]}.get("Queue")


def test_the_queue_alarms_watch_the_high_priority_queue():
    high = {"Ref": parameter_of("HIGH_PRIORITY_QUEUE")}
    for name in ("HighPriorityOldestAgeWarningAlarm", "HighPriorityOldestAgeCriticalAlarm"):
        assert queue_dimension(RESOURCES[name]["Properties"]) == high, name
    stats = [q["MetricStat"]["Metric"] for q in RESOURCES["HighPriorityNoWorkerAlarm"]["Properties"]["Metrics"]
             if "MetricStat" in q]  # fmt: skip
    assert {m["MetricName"] for m in stats} == {"QueueWorkers", "QueueOldestWaitingAgeSeconds"}
    assert all(queue_dimension(m) == high for m in stats)


# --------------------------------------------------------------------------- the no-worker rule, evaluated


def evaluate(expression: str, variables: dict[str, float | None]) -> float | None:
    """The metric math the no-worker alarm uses: IF(condition, a, b), == != < <= > >=, AND / OR, numbers and query
    ids; a query without a datapoint (None) leaves the result without one. Anything else fails."""
    if any(value is None for name, value in variables.items() if re.search(rf"\b{name}\b", expression)):
        return None
    source = re.sub(r"\bAND\b", " and ", re.sub(r"\bOR\b", " or ", expression))
    compare = {ast.Eq: float.__eq__, ast.NotEq: float.__ne__, ast.Lt: float.__lt__, ast.LtE: float.__le__,
               ast.Gt: float.__gt__, ast.GtE: float.__ge__}  # fmt: skip

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "IF" and len(node.args) == 3:
            return walk(node.args[1]) if walk(node.args[0]) else walk(node.args[2])
        if isinstance(node, ast.BoolOp):
            values = [walk(value) for value in node.values]
            return float(all(values) if isinstance(node.op, ast.And) else any(values))
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in compare:
            return float(compare[type(node.ops[0])](walk(node.left), walk(node.comparators[0])))
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in variables:
            return float(variables[node.id])  # type: ignore[arg-type]
        raise ValueError(f"not metric math this evaluator knows: {ast.unparse(node)!r} in {expression!r}")

    return walk(ast.parse(source, mode="eval"))


def no_worker_state(workers: float | None, age: float | None, grace: float | None = None) -> str:
    """ALARM / OK / missing for one period of the sweep's datapoints (``grace``: QueueNoWorkerGraceSeconds)."""
    props = RESOURCES["HighPriorityNoWorkerAlarm"]["Properties"]
    (expression,) = [q["Expression"] for q in props["Metrics"] if "Expression" in q]
    grace_parameter = parameter_of("QUEUE_NO_WORKER_GRACE_S")
    assert f"${{{grace_parameter}}}" in expression["Fn::Sub"], "the grace is not the check's parameter"
    grace = PARAMETERS[grace_parameter]["Default"] if grace is None else grace
    text = expression["Fn::Sub"].replace(f"${{{grace_parameter}}}", str(grace))
    ids = {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in props["Metrics"] if "MetricStat" in q}
    values = {"QueueWorkers": workers, "QueueOldestWaitingAgeSeconds": age}
    value = evaluate(text, {query_id: values[metric] for query_id, metric in ids.items()})
    if value is None:
        return props["TreatMissingData"]
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    return "ALARM" if value >= props["Threshold"] else "OK"


def test_the_no_worker_alarm_fires_when_jobs_wait_past_the_grace_with_no_worker():
    grace = float(PARAMETERS[parameter_of("QUEUE_NO_WORKER_GRACE_S")]["Default"])
    assert grace == 60  # the default
    assert no_worker_state(0, grace) == "ALARM"
    assert no_worker_state(0, 3600) == "ALARM"
    assert no_worker_state(0, grace - 0.1) == "OK"  # within the grace: a deploy restarting its workers
    assert no_worker_state(0, 0) == "OK"  # nothing waits (the sweep emits age 0): no worker needed
    assert no_worker_state(1, 3600) == "OK"  # a live worker: the age alarms speak for a slow one
    assert no_worker_state(0, 10, grace=5) == "ALARM"  # the grace follows its parameter
    # CLIENT LIST refused: the sweep leaves QueueWorkers out, and an unknown count never alarms by itself.
    assert no_worker_state(None, 3600) == "missing"
