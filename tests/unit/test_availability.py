"""Availability of the probe targets from CloudWatch (GET /api/admin/uptime): ProbeSuccess written with
put_metric_data into moto's CloudWatch, read back by the route's GetMetricData queries."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from parel_monitoring import availability as availability_module
from parel_monitoring.availability import availability

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def cloudwatch(fake_aws):
    availability_module.cloudwatch_client.cache_clear()
    yield boto3.client("cloudwatch")
    availability_module.cloudwatch_client.cache_clear()


def put_probes(client, target: str, successes: list[int], age: timedelta, stage: str = "dev") -> None:
    """One ProbeSuccess per value, a minute apart, the newest ``age`` ago (as ProbeFunction's EMF lands)."""
    data = [
        {"MetricName": "ProbeSuccess", "Value": float(value), "Unit": "Count",
         "Timestamp": NOW - age - timedelta(minutes=minute),
         "Dimensions": [{"Name": "service", "Value": "parel-monitoring"}, {"Name": "Stage", "Value": stage},
                        {"Name": "Target", "Value": target}]}
        for minute, value in enumerate(successes)
    ]  # fmt: skip
    for start in range(0, len(data), 500):
        client.put_metric_data(Namespace="ParelMonitoring", MetricData=data[start : start + 500])


def test_availability_per_window_is_the_average_of_probe_success_times_100(cloudwatch):
    put_probes(cloudwatch, "home", [1] * 99 + [0], timedelta(minutes=5))  # the last 24 h: 99 %
    put_probes(cloudwatch, "home", [0] * 100, timedelta(days=3))  # 3 days ago: in 7 d and 30 d only
    put_probes(cloudwatch, "home", [1] * 200, timedelta(days=20))  # 20 days ago: in 30 d only
    put_probes(cloudwatch, "api", [1] * 10, timedelta(minutes=5))
    put_probes(cloudwatch, "api", [0] * 10, timedelta(minutes=5), stage="prod")  # another stage: not counted
    report = availability(["home", "api", "never-probed"], "parel-monitoring", "dev", now=NOW)

    assert report["windows"] == ["24h", "7d", "30d"]
    home, api, never = report["targets"]
    assert home == {"name": "home", "availability": {"24h": 99.0, "7d": 49.5, "30d": 74.75}}
    assert api == {"name": "api", "availability": {"24h": 100.0, "7d": 100.0, "30d": 100.0}}
    assert never == {"name": "never-probed", "availability": {"24h": None, "7d": None, "30d": None}}


def _handler():
    spec = importlib.util.spec_from_file_location("admin_uptime_app", ROOT / "functions" / "admin_uptime" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.handler


EVENT = {"version": "2.0", "routeKey": "GET /api/admin/uptime", "rawPath": "/api/admin/uptime", "headers": {},
         "requestContext": {"http": {"method": "GET", "path": "/api/admin/uptime"}}}  # fmt: skip


def test_the_route_reads_the_configured_targets(cloudwatch, monkeypatch):
    monkeypatch.setenv("PROBE_TARGETS", json.dumps([{"name": "home", "url": "https://app.example.com/"}]))
    put_probes(cloudwatch, "home", [1, 1, 1, 0], timedelta(minutes=2))
    response = _handler()(EVENT, None)
    assert response["statusCode"] == 200 and response["headers"]["cache-control"] == "no-store"
    body = json.loads(response["body"])
    assert body["targets"] == [{"name": "home", "availability": {"24h": 75.0, "7d": 75.0, "30d": 75.0}}]
    assert "app.example.com" not in response["body"]


def test_cloudwatch_unreachable_is_a_502_naming_no_secret(monkeypatch):
    monkeypatch.setenv("PROBE_TARGETS", json.dumps([{"name": "home", "url": "https://app.example.com/"}]))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-value")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    availability_module.cloudwatch_client.cache_clear()
    try:
        response = _handler()(EVENT, None)
    finally:
        availability_module.cloudwatch_client.cache_clear()
    assert response["statusCode"] == 502
    body = json.loads(response["body"])
    assert body["error"] == "cloudwatch" and "testing-secret-value" not in response["body"]
