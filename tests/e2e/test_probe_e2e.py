"""ProbeFunction, built, under the Lambda emulator, against real HTTP and HTTPS servers on 127.0.0.1: the result
and category of every kind of target, certificate days, the EMF documents and their interface (the alarms'
metrics and dimension sets), one log line per failed probe, and concurrent probes."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from probe_servers import Sites
from test_metrics_e2e import STAGE, assert_valid_emf, emf_documents, emitted

from events_loader import load_event

NAMESPACE = "ParelMonitoring"


@pytest.fixture(scope="module")
def sites():
    with Sites() as running:
        yield running


def targets(sites: Sites) -> list[dict]:
    http = sites.http.base
    return [
        {"name": "healthy", "url": f"{http}/ok", "jsonPath": "$.status", "equals": "healthy"},
        {"name": "unhealthy", "url": f"{http}/unhealthy"},
        {"name": "slow", "url": f"{http}/slow/4000", "timeoutMs": 800},
        {"name": "closes", "url": f"{http}/close"},
        {"name": "degraded", "url": f"{http}/degraded", "jsonPath": "$.status", "equals": "healthy"},
        {"name": "redirect-followed", "url": f"{http}/redirect/3", "followRedirects": True, "expectStatus": 200},
        {"name": "redirect-not-followed", "url": f"{http}/redirect/3", "expectStatus": 200},
        {"name": "dns", "url": "http://nonexistent.invalid/"},
        {"name": "cert-2d", "url": f"{sites.https[2].base}/ok"},
        {"name": "cert-10d", "url": f"{sites.https[10].base}/ok"},
        {"name": "cert-90d-503", "url": f"{sites.https[90].base}/unhealthy"},
        {"name": "self-signed", "url": f"{sites.untrusted.base}/ok"},
        {"name": "warned", "url": f"{http}/slow/300", "latencyWarnMs": 100},
    ]


# name -> (ok, status, category, certificate days or None)
EXPECTED = {
    "healthy": (True, "up", None, None),
    "unhealthy": (False, "down", "status", None),
    "slow": (False, "down", "timeout", None),
    "closes": (False, "down", "connect", None),
    "degraded": (False, "down", "condition", None),
    "redirect-followed": (True, "up", None, None),
    "redirect-not-followed": (False, "down", "status", None),
    "dns": (False, "down", "dns", None),
    "cert-2d": (True, "up", None, 2),
    "cert-10d": (True, "up", None, 10),
    "cert-90d-503": (False, "down", "status", 90),
    "self-signed": (False, "down", "tls", Sites.UNTRUSTED_DAYS),
    "warned": (True, "degraded", None, None),
}


@pytest.fixture(scope="module")
def probe_run(built, sites):
    from lambda_emulator import Emulator, load_function

    env = {"PROBE_TARGETS": json.dumps(targets(sites)), "PROBE_CA_BUNDLE": sites.ca_pem, "STAGE": STAGE}
    with Emulator(load_function("ProbeFunction", built), extra_env=env) as emulator:
        result = emulator.invoke(load_event("probe-schedule"))
    assert isinstance(result.payload, dict) and "errorType" not in result.payload, result.payload
    return result


def log_records(lines: list[str]) -> list[dict]:
    records = []
    for line in lines:
        if line.startswith("{") and '"_aws"' not in line:
            with contextlib.suppress(ValueError):  # a text line that happens to start with {
                records.append(json.loads(line))
    return records


def test_the_summary(probe_run):
    payload = probe_run.payload
    assert payload["targets"] == len(EXPECTED)
    assert payload["up"] == sum(1 for ok, *_ in EXPECTED.values() if ok)
    assert sorted(payload["down"]) == sorted(name for name, (ok, *_) in EXPECTED.items() if not ok)
    assert payload["slow"] == ["warned"]


def test_every_emf_document_is_valid_and_carries_the_interface(probe_run):
    documents = emf_documents(probe_run.logs)
    assert documents
    for document in documents:
        assert_valid_emf(document)
    found = emitted(documents)
    service = {value for _, _, dims in found for name, value in dims if name == "service"}
    assert service == {"ProbeFunction"} or len(service) == 1
    (service,) = service
    base = {("service", service), ("Stage", STAGE)}
    for name, (_, _, _, days) in EXPECTED.items():
        per_target = frozenset(base | {("Target", name)})
        for metric in ("ProbeSuccess", "ProbeLatencyMs", "ProbeSlow"):
            assert (NAMESPACE, metric, per_target) in found, (metric, name)
        assert ((NAMESPACE, "CertificateDaysLeft", per_target) in found) == (days is not None), name
    for metric in ("ProbeSuccess", "ProbeSlow", "CertificateDaysLeft"):
        assert (NAMESPACE, metric, frozenset(base)) in found, metric


def values(documents: list[dict], target: str | None) -> dict[str, list[float]]:
    """metric -> values of the documents on the Target dimension ``target`` (None: the aggregate set)."""
    found: dict[str, list[float]] = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                if ("Target" in dimension_set) != (target is not None) or document.get("Target", target) != target:
                    continue
                for metric in directive["Metrics"]:
                    value = document[metric["Name"]]
                    found.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return found


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_targets_metrics_are_right(probe_run, name):
    ok, status, _, days = EXPECTED[name]
    metrics = values(emf_documents(probe_run.logs), name)
    assert metrics["ProbeSuccess"] == [1.0 if ok else 0.0]
    assert metrics["ProbeSlow"] == [1.0 if status == "degraded" else 0.0]  # "slow" times out below 5000 ms
    assert len(metrics["ProbeLatencyMs"]) == 1 and metrics["ProbeLatencyMs"][0] > 0
    if days is None:
        assert "CertificateDaysLeft" not in metrics
    else:
        (left,) = metrics["CertificateDaysLeft"]
        assert days - 0.1 < left <= days


def test_the_aggregate_has_one_value_per_target(probe_run):
    metrics = values(emf_documents(probe_run.logs), None)
    assert sorted(metrics["ProbeSuccess"]) == sorted(1.0 if ok else 0.0 for ok, *_ in EXPECTED.values())
    assert len(metrics["ProbeSlow"]) == len(EXPECTED)
    assert len(metrics["CertificateDaysLeft"]) == sum(1 for *_, days in EXPECTED.values() if days is not None)
    assert min(metrics["CertificateDaysLeft"]) <= 2  # Minimum: the nearest expiry


def test_one_log_line_per_failed_probe_with_category_and_correlation_id(probe_run):
    records = log_records(probe_run.logs)
    failed = [record for record in records if record.get("message") == "Probe failed"]
    by_name = {record["target"]: record for record in failed}
    assert len(failed) == len(by_name) == sum(1 for ok, *_ in EXPECTED.values() if not ok)
    for name, record in by_name.items():
        _, _, category, days = EXPECTED[name]
        assert record["level"] == "ERROR" and record["category"] == category and record["reason"], record
        assert record["correlation_id"] == load_event("probe-schedule")["id"], record
        if days is not None:
            assert days - 0.1 < record["certificateDaysLeft"] <= days
    slow = [record for record in records if record.get("message") == "Probe slow"]
    assert [record["target"] for record in slow] == ["warned"] and slow[0]["level"] == "WARNING"


def test_probes_run_concurrently(start_function, sites):
    ten = [{"name": f"t{i}", "url": f"{sites.http.base}/slow/1000"} for i in range(10)]
    emulator = start_function("ProbeFunction", PROBE_TARGETS=json.dumps(ten), STAGE=STAGE)
    emulator.invoke(load_event("probe-schedule"))  # warm: the cold start is not what is measured
    started = time.monotonic()
    result = emulator.invoke(load_event("probe-schedule"))
    elapsed = time.monotonic() - started
    assert result.payload["up"] == 10, result.payload
    assert elapsed < 5.0, f"10 targets of 1 s took {elapsed:.1f} s (one after the other: 10 s)"


def test_secrets_of_targets_never_reach_the_logs(start_function, sites):
    url = sites.http.base.replace("http://", "http://probe:url-Pa55word-9@") + "/unhealthy"
    config = [{"name": "secret", "url": url, "headers": {"Authorization": "Bearer header-token-123456"}}]
    emulator = start_function("ProbeFunction", PROBE_TARGETS=json.dumps(config), STAGE=STAGE)
    result = emulator.invoke(load_event("probe-schedule"))
    assert result.payload["down"] == ["secret"]
    text = "\n".join(result.logs)
    assert "Probe failed" in text
    assert "url-Pa55word-9" not in text and "header-token-123456" not in text


def test_a_bad_probe_targets_fails_the_invocation_naming_the_field(start_function):
    config = [{"name": "a", "url": "http://127.0.0.1:1/"}, {"name": "b", "url": "ftp://example.com/"}]
    emulator = start_function("ProbeFunction", PROBE_TARGETS=json.dumps(config), STAGE=STAGE)
    result = emulator.invoke(load_event("probe-schedule"))
    assert result.payload["errorType"] == "ConfigurationError", result.payload
    assert "PROBE_TARGETS target 2 (b): url must be http(s)" in result.payload["errorMessage"]
