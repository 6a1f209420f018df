"""The sweep's, the heal run's and the uptime probes' EMF metrics, checked against what template.yaml's alarms
(plain and metric-math) and dashboard watch."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from probe_servers import Sites
from samcli.yamlhelper import yaml_parse

from bullmq_scenario import cleanup, run_scenario, unique_prefix
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
    """A dimension's value: a parameter's default (``Stage``, ``HighPriorityQueue``), else as written."""
    if isinstance(value, dict) and "Ref" in value:
        return str(TEMPLATE["Parameters"].get(value["Ref"], {}).get("Default", value["Ref"]))
    return value


def watched(template: dict = TEMPLATE) -> dict[str, tuple[str, str, frozenset]]:
    """alarm logical id (``Alarm/query id`` for a metric-math alarm's metrics) -> (namespace, metric, dimensions)
    for everything the alarms watch on our own namespace."""
    alarms = {}
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        if props.get("Namespace") == NAMESPACE:
            dims = frozenset((d["Name"], resolve(d["Value"])) for d in props["Dimensions"])
            alarms[name] = (NAMESPACE, props["MetricName"], dims)
        for query in props.get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric", {})
            if metric.get("Namespace") == NAMESPACE:
                dims = frozenset((d["Name"], resolve(d["Value"])) for d in metric.get("Dimensions", []))
                alarms[f"{name}/{query['Id']}"] = (NAMESPACE, metric["MetricName"], dims)
    return alarms


def probe_targets(sites: Sites) -> list[dict]:
    """Up, down (503), slow (above its latencyWarnMs) and https (a private CA's leaf): every metric the probes
    put, with both values of the 0/1 ones."""
    return [
        {"name": "up", "url": f"{sites.http.base}/ok"},
        {"name": "down", "url": f"{sites.http.base}/unhealthy"},
        {"name": "slow", "url": f"{sites.http.base}/slow/300", "latencyWarnMs": 100},
        {"name": "tls", "url": f"{sites.https[90].base}/ok", "jsonPath": "$.status", "equals": "healthy"},
    ]


@pytest.fixture(scope="module")
def redis_with_limit(tmp_path_factory):
    """A throwaway Redis of this module's own with a ``maxmemory`` (so the sweep has a memory percentage to emit)
    and an evicting policy (so the eviction flag is 1): the shared server is left as it is."""
    import shutil
    import subprocess

    import services

    server = shutil.which("redis-server")
    assert server, "redis-server not found (apt-get install redis-server)"
    port = services._free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"]  # fmt: skip
    argv += ["--dir", str(tmp_path_factory.mktemp("redis"))]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        services._wait_listening(port, "Redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def sweep_and_heal_metrics(built, redis_with_limit):
    """Run MonitorFunction and HealFunction under the emulator on real services; their EMF lines.

    The high-priority queue has jobs waiting and no worker; ``default`` has a live bullmq worker and nothing
    waiting; Redis has a maxmemory and an evicting policy: every metric of the queue-liveness alarms is emitted."""
    import services
    from lambda_emulator import Emulator, load_function
    from live_workers import live_workers

    admin_url, _ = services.postgres_url()
    name = f"parel_metrics_{unique_prefix('m').split('-')[-1]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_prisma_schema(conn)
    prefix = unique_prefix("metrics")
    redis_url = redis_with_limit
    run_scenario("populate", prefix, "high-priority", redis_url, waiting=2, completed=3, failed=1)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "QUEUE_NAMES": "high-priority,default",
        "BULLMQ_PREFIX": prefix,
        "HIGH_PRIORITY_QUEUE": "high-priority",
        "ALERT_TOPIC_ARN": "",
        "STAGE": STAGE,
    }
    lines: list[str] = []
    sites = Sites()
    probe_env = {"PROBE_TARGETS": json.dumps(probe_targets(sites)), "PROBE_CA_BUNDLE": sites.ca_pem, "STAGE": STAGE}
    try:
        with live_workers(prefix, ["default"], redis_url) as workers:
            assert workers == {"default": 1}
            for function, event, extra in (
                ("MonitorFunction", "heal-schedule", env),
                ("HealFunction", "heal-schedule", env),
                ("ProbeFunction", "heal-schedule", probe_env),
            ):
                with Emulator(load_function(function, built), extra_env=extra) as emulator:
                    result = emulator.invoke(load_event(event))
                    assert "errorType" not in (result.payload or {}), result.payload
                    lines += result.logs
    finally:
        sites.close()
        cleanup(prefix, redis_url)
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
    assert len(alarms) >= 20  # the health and heal alarms, the probes' four and the burn-rate windows' four
    missing = {name: metric for name, metric in alarms.items() if metric not in found}
    assert not missing, f"alarms watch metrics nobody emits (name, dimensions): {missing}"


def test_the_sweep_emits_every_metric_of_the_issue(sweep_and_heal_metrics):
    names = {metric for _, metric, _ in emitted(sweep_and_heal_metrics)}
    assert {
        "HealthStatus", "DbQueryTimeMs", "DbConnectionUsagePercent", "QueueWaiting", "QueueActive", "QueueFailed",
        "QueueFailureRatePercent", "HighPriorityLag", "MemoryUsagePercent", "StaleSessionsDeleted",
        "StuckJobsRequeued", "OrphanedRecordsDeleted", "HealDurationMs", "HealFailures",
        "QueueWorkers", "QueueOldestWaitingAgeSeconds", "RedisMemoryUsagePercent", "RedisEvictionPolicyUnsafe",
    } <= names  # fmt: skip
    for metric in ("QueueWaiting", "QueueWorkers", "QueueOldestWaitingAgeSeconds"):
        per_queue = {dict(dims).get("Queue") for _, name, dims in emitted(sweep_and_heal_metrics) if name == metric}
        assert per_queue == {"high-priority", "default"}, metric


def values_of(documents: list[dict], metric: str) -> dict[str | None, list[float]]:
    """The values ``documents`` carry for ``metric``, by their ``Queue`` dimension (None without one)."""
    found: dict[str | None, list[float]] = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            if any(m["Name"] == metric for m in directive["Metrics"]):
                value = document[metric]
                found.setdefault(document.get("Queue"), []).extend(value if isinstance(value, list) else [value])
    return found


def test_the_queue_liveness_metrics_carry_the_states_of_the_scenario(sweep_and_heal_metrics):
    """Issue 15: workers from CLIENT LIST (the worker of ``default``, none on the high-priority queue), the oldest
    waiting job's age (0 where nothing waits), Redis memory against its maxmemory and the evicting policy."""
    assert values_of(sweep_and_heal_metrics, "QueueWorkers") == {"high-priority": [0], "default": [1]}
    ages = values_of(sweep_and_heal_metrics, "QueueOldestWaitingAgeSeconds")
    assert ages["default"] == [0] and 0 < ages["high-priority"][0] < 600, ages
    (usage,) = values_of(sweep_and_heal_metrics, "RedisMemoryUsagePercent")[None]
    assert 0 < usage < 5, usage  # a few MB of 256 MB
    assert values_of(sweep_and_heal_metrics, "RedisEvictionPolicyUnsafe") == {None: [1]}  # allkeys-lru


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


def test_the_probes_emit_per_target_and_aggregate_metrics(sweep_and_heal_metrics):
    found = emitted(sweep_and_heal_metrics)
    aggregate = frozenset({("service", "parel-monitoring"), ("Stage", STAGE)})
    per_target = {
        (metric, dict(dims)["Target"])
        for _, metric, dims in found
        if dict(dims).keys() == {"service", "Stage", "Target"}
    }
    assert {("ProbeSuccess", name) for name in ("up", "down", "slow", "tls")} <= per_target
    assert {("ProbeLatencyMs", "slow"), ("ProbeSlow", "slow"), ("CertificateDaysLeft", "tls")} <= per_target
    assert ("CertificateDaysLeft", "up") not in per_target, "a plain http target has no certificate"
    for metric in ("ProbeSuccess", "ProbeSlow", "CertificateDaysLeft"):
        assert (NAMESPACE, metric, aggregate) in found, metric
    values: dict[tuple[str | None, str], list[float]] = {}
    for document in sweep_and_heal_metrics:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for name in (m["Name"] for m in directive["Metrics"] if m["Name"] in ("ProbeSuccess", "ProbeSlow")):
                value = document[name]
                values.setdefault((document.get("Target"), name), []).extend(
                    value if isinstance(value, list) else [value]
                )
    assert values[("up", "ProbeSuccess")] == [1] and values[("down", "ProbeSuccess")] == [0]
    assert values[("slow", "ProbeSlow")] == [1] and values[("up", "ProbeSlow")] == [0]
    # the aggregate: one value per target per run (Average = availability, Minimum = any target down)
    assert sorted(values[(None, "ProbeSuccess")]) == [0, 1, 1, 1]


def dashboard_metrics(template: dict = TEMPLATE) -> list[tuple[str, frozenset | frozenset[str]]]:
    """What the dashboard's widgets read on our namespace: (metric, dimensions) for a metric it names, and
    (metric, the dimension names) for a SEARCH (it matches exactly that dimension set, any values)."""
    import re

    body = template["Resources"]["MonitoringDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = re.sub(r"\$\{(\w+(?:::\w+)?)\}", lambda m: STAGE if m.group(1) == "Stage" else "x", body)
    read = []
    for widget in json.loads(body)["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if row and row[0] == NAMESPACE:
                names = [item for item in row[2:] if isinstance(item, str)]
                read.append((row[1], frozenset(zip(names[::2], names[1::2], strict=True))))
            for item in row:
                search = re.search(
                    r"SEARCH\('\{(\w+),([\w,]+)\} MetricName=\"(\w+)\"",
                    str(item.get("expression", "")) if isinstance(item, dict) else "",
                )
                if search and search.group(1) == NAMESPACE:
                    read.append((search.group(3), frozenset(search.group(2).split(","))))
    return read


def dashboard_problems(template: dict, documents: list[dict]) -> list[tuple[str, frozenset]]:
    """The dashboard's metrics and SEARCH dimension sets that no EMF document carries."""
    found = emitted(documents)
    names_found = {(metric, frozenset(name for name, _ in dims)) for _, metric, dims in found}
    return [
        (metric, dims)
        for metric, dims in dashboard_metrics(template)
        if (NAMESPACE, metric, dims) not in found and (metric, dims) not in names_found
    ]


def test_the_dashboard_reads_metrics_the_code_emits(sweep_and_heal_metrics):
    assert {"ProbeSuccess", "ProbeLatencyMs", "CertificateDaysLeft"} <= {metric for metric, _ in dashboard_metrics()}
    problems = dashboard_problems(TEMPLATE, sweep_and_heal_metrics)
    assert not problems, f"dashboard widgets read metrics nobody emits: {problems}"


def test_a_dashboard_search_on_a_dimension_set_nobody_emits_is_found(sweep_and_heal_metrics):
    import copy

    broken = copy.deepcopy(TEMPLATE)
    dashboard = broken["Resources"]["MonitoringDashboard"]["Properties"]["DashboardBody"]
    dashboard["Fn::Sub"] = dashboard["Fn::Sub"].replace(
        'MetricName=\\"CertificateDaysLeft\\"', 'MetricName=\\"CertificateDaysLef\\"'
    )
    assert dashboard_problems(broken, sweep_and_heal_metrics) == [
        ("CertificateDaysLef", frozenset({"service", "Stage", "Target"}))
    ]


def test_an_alarm_on_a_metric_nobody_emits_is_found(sweep_and_heal_metrics):
    """The check reads metric-math alarms too: a burn-rate window on a misspelt metric is caught."""
    import copy

    broken = copy.deepcopy(TEMPLATE)
    query = broken["Resources"]["SloFastBurnShortWindowAlarm"]["Properties"]["Metrics"][1]
    query["MetricStat"]["Metric"]["MetricName"] = "ProbeSucess"
    found = emitted(sweep_and_heal_metrics)
    assert [name for name, metric in watched(broken).items() if metric not in found] == [
        "SloFastBurnShortWindowAlarm/availability"
    ]


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


def composite_members() -> dict[str, set[str]]:
    """composite alarm logical id -> the alarms its rule reads (``ALARM("${Logical}")`` in an !Sub)."""
    import re

    members = {}
    for name, resource in TEMPLATE["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::CompositeAlarm":
            rule = resource["Properties"]["AlarmRule"]["Fn::Sub"]
            members[name] = set(re.findall(r'ALARM\("\$\{(\w+)\}"\)', rule))
    return members


def test_every_alarm_notifies_on_alarm_and_on_recovery():
    """Every alarm notifies the topic, except a burn-rate window: it notifies through its composite alone (one
    message per incident, not one per window)."""
    in_composite = set().union(*composite_members().values())
    for name, resource in TEMPLATE["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::CompositeAlarm" or (
            resource["Type"] == "AWS::CloudWatch::Alarm" and name not in in_composite
        ):
            assert props["AlarmActions"] == [{"Ref": "AlertTopic"}] == props["OKActions"], name
        elif resource["Type"] == "AWS::CloudWatch::Alarm":
            assert "AlarmActions" not in props and "OKActions" not in props, name


def test_each_burn_rate_composite_joins_a_long_and_a_short_window_of_one_rate():
    members = composite_members()
    assert set(members) == {"SloFastBurnAlarm", "SloSlowBurnAlarm"}
    resources = TEMPLATE["Resources"]
    for composite, alarms in members.items():
        assert resources[composite]["Condition"] == "HasProbeTargets"
        rule = resources[composite]["Properties"]["AlarmRule"]["Fn::Sub"]
        assert " AND " in rule and " OR " not in rule, composite
        periods = sorted(resources[a]["Properties"]["Metrics"][1]["MetricStat"]["Period"] for a in alarms)
        thresholds = {resources[a]["Properties"]["Threshold"] for a in alarms}
        assert len(periods) == 2 and periods[1] == 12 * periods[0] and len(thresholds) == 1, composite
        assert all(resources[a]["Condition"] == "HasProbeTargets" for a in alarms)
    assert resources["SloFastBurnAlarm"]["Properties"]["AlarmName"]["Fn::Sub"].endswith("-critical")
