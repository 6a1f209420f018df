"""The uptime probes' place in template.yaml: their schedule runs and their alarms exist only when something is
probed, every alarm on the probe metrics is named for its severity, and the dashboard's error budget and the
burn-rate alarms use the same objective (SloTargetPct)."""

from __future__ import annotations

import copy
import json
from functools import cache

import pytest

from sam_template import Evaluator, load, transform

TEMPLATE = load()
PROBE_METRICS = {"ProbeSuccess", "ProbeSlow", "ProbeLatencyMs", "CertificateDaysLeft"}
NO_TARGETS = {"AppBaseUrl": "", "ProbeTargets": ""}


@cache
def transformed() -> dict:
    return transform(TEMPLATE)


def probe_metrics_watched(resource: dict) -> set[str]:
    props = resource.get("Properties", {})
    names = {props.get("MetricName")}
    names |= {q["MetricStat"]["Metric"]["MetricName"] for q in props.get("Metrics", []) if "MetricStat" in q}
    return names & PROBE_METRICS


def probe_alarms(template: dict) -> dict[str, dict]:
    """Every alarm on a probe metric, and every composite alarm (the burn-rate pairs)."""
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::CompositeAlarm"
        or (resource["Type"] == "AWS::CloudWatch::Alarm" and probe_metrics_watched(resource))
    }


def unconditional(template: dict) -> list[str]:
    return sorted(name for name, r in probe_alarms(template).items() if r.get("Condition") != "HasProbeTargets")


def schedule_state(parameters: dict[str, str]) -> str:
    template = transformed()
    (schedule,) = [
        r for r in template["Resources"].values()
        if r["Type"] == "AWS::Scheduler::Schedule" and "ProbeFunction" in json.dumps(r["Properties"]["Target"])
    ]  # fmt: skip
    return Evaluator(template, parameters).value(schedule["Properties"]["State"])


def test_the_probe_alarms_exist_only_when_something_is_probed():
    assert len(probe_alarms(TEMPLATE)) == 10  # down, latency, 2 certificates, 4 burn-rate windows, 2 composites
    assert unconditional(TEMPLATE) == []


def test_an_unconditional_probe_alarm_is_found():
    broken = copy.deepcopy(TEMPLATE)
    del broken["Resources"]["ProbeLatencyAlarm"]["Condition"]
    assert unconditional(broken) == ["ProbeLatencyAlarm"]


@pytest.mark.parametrize(
    ("parameters", "probed"),
    [
        (NO_TARGETS, False),
        ({"AppBaseUrl": "https://app.example.com", "ProbeTargets": ""}, True),
        ({"AppBaseUrl": "", "ProbeTargets": '[{"name":"home","url":"https://app.example.com/"}]'}, True),
    ],
)
def test_the_schedule_runs_only_when_something_is_probed(parameters, probed):
    assert Evaluator(TEMPLATE, parameters).condition("HasProbeTargets") is probed
    assert schedule_state(parameters) == ("ENABLED" if probed else "DISABLED")
    assert schedule_state({**parameters, "ProbeScheduleState": "DISABLED"}) == "DISABLED"


def test_the_probes_run_outside_the_vpc_and_every_minute():
    """They call the app's public URLs, like a visitor; the alarms count one run a minute."""
    function = TEMPLATE["Resources"]["ProbeFunction"]["Properties"]
    assert "VpcConfig" not in function
    assert TEMPLATE["Parameters"]["ProbeSchedule"]["Default"] == "rate(1 minute)"
    event = function["Events"]["EveryMinute"]["Properties"]
    assert event["RoleArn"] == {"Fn::GetAtt": ["ProbeScheduleRole", "Arn"]}
    assert event["DeadLetterConfig"] and event["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 60


def test_alarm_names_carry_their_severity():
    """`-critical` names (and only they) become CRITICAL alerts, like their [CRITICAL] descriptions say."""
    evaluator = Evaluator(TEMPLATE, {"AppBaseUrl": "https://app.example.com"})
    for name, resource in probe_alarms(TEMPLATE).items():
        props = evaluator.value(resource["Properties"])
        if "AlarmActions" not in props:  # a burn-rate window: it notifies through its composite
            continue
        critical = props["AlarmName"].endswith("-critical")
        assert critical or props["AlarmName"].endswith("-warning"), name
        assert props["AlarmDescription"].startswith("[CRITICAL]") == critical, name


def test_the_burn_rate_windows_and_the_dashboard_budget_use_the_slo_parameter():
    evaluator = Evaluator(TEMPLATE, {"SloTargetPct": "99.5"})
    windows = [r for r in probe_alarms(TEMPLATE).values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    expressions = [
        q["Expression"]
        for r in windows
        for q in evaluator.value(r["Properties"]).get("Metrics", [])
        if "Expression" in q
    ]
    assert len(expressions) == 4 and all("99.5 / 100" in expression for expression in expressions)
    body = json.loads(evaluator.value(TEMPLATE["Resources"]["MonitoringDashboard"]["Properties"])["DashboardBody"])
    budget = [
        item["expression"]
        for widget in body["widgets"]
        for row in widget["properties"].get("metrics", [])
        for item in row
        if isinstance(item, dict) and "expression" in item and "99.5" in item["expression"]
    ]
    assert len(budget) >= 3  # the error budget left and the two burn-rate lines
