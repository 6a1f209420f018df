"""PROBE_TARGETS / APP_BASE_URL / PROBE_CA_BUNDLE parsing, the JSONPath subset, the certificate date reader and
the probe run's EMF data (pure logic; the probes themselves: tests/integration/test_probe.py)."""

from __future__ import annotations

import datetime
import json

import pytest

from parel_monitoring.probe import (
    ProbeSettings,
    certificate_not_after,
    parse_expect_status,
    parse_json_path,
    probe_data,
    public_url,
    resolve_json_path,
)
from parel_monitoring.scrub import scrub_text
from parel_monitoring.settings import ConfigurationError


def settings(monkeypatch, targets) -> ProbeSettings:
    monkeypatch.setenv("PROBE_TARGETS", targets if isinstance(targets, str) else json.dumps(targets))
    return ProbeSettings.from_env()


def test_a_full_target(monkeypatch):
    (target,) = settings(monkeypatch, [{
        "name": "api.v2_main-1", "url": "https://app.example.com/api/health", "method": "head",
        "expectStatus": [200, "204-299"], "headers": {"X-Probe": "1"}, "timeoutMs": 2000, "latencyWarnMs": 800,
        "followRedirects": True,
    }]).targets  # fmt: skip
    assert (target.name, target.method, target.timeout_ms, target.latency_warn_ms) == ("api.v2_main-1", "HEAD",
                                                                                        2000, 800)  # fmt: skip
    assert target.expect_status == ((200, 200), (204, 299)) and target.follow_redirects
    assert target.headers == (("X-Probe", "1"),)


def test_defaults(monkeypatch):
    (target,) = settings(monkeypatch, [{"name": "a", "url": "http://127.0.0.1:3000/"}]).targets
    assert (target.method, target.expect_status, target.timeout_ms, target.latency_warn_ms) == (
        "GET", ((200, 399),), 10_000, 5_000)  # fmt: skip
    assert not target.follow_redirects and target.expects(302) and not target.expects(404)


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        ("not json", "must be a JSON list of targets"),
        ({"name": "a"}, "must be a JSON list of targets"),
        ([{"name": "a", "url": "http://x/"}, {"name": "b", "url": "ftp://x/"}], "target 2 (b): url must be http(s)"),
        ([{"name": "a", "url": "/relative"}], "target 1 (a): url must be http(s)"),
        ([{"name": "a b", "url": "http://x/"}], "target 1: name must match"),
        ([{"name": "x" * 65, "url": "http://x/"}], "target 1: name must match"),
        ([{"url": "http://x/"}], "target 1: name must match"),
        ([{"name": "a", "url": "http://x/"}, {"name": "a", "url": "http://y/"}], "target 2: name a is not unique"),
        ([{"name": "a", "url": "http://x/", "method": "POST"}], "method must be GET or HEAD"),
        ([{"name": "a", "url": "http://x/", "expectStatus": "2xx"}], "expectStatus must be a status"),
        ([{"name": "a", "url": "http://x/", "expectStatus": 700}], "expectStatus must lie within 100-599"),
        ([{"name": "a", "url": "http://x/", "jsonPath": "status"}], "jsonPath must start with $"),
        ([{"name": "a", "url": "http://x/", "jsonPath": "$..status"}], "jsonPath unsupported syntax"),
        ([{"name": "a", "url": "http://x/", "equals": "healthy"}], "equals needs a jsonPath"),
        ([{"name": "a", "url": "http://x/", "method": "HEAD", "bodyContains": "ok"}], "HEAD request has no body"),
        ([{"name": "a", "url": "http://x/", "headers": {"X": 1}}], "headers must be an object"),
        ([{"name": "a", "url": "http://x/", "headers": {"X": "a\r\nInjected: 1"}}], "headers must be an object"),
        ([{"name": "a", "url": "http://x/", "timeoutMs": 0}], "timeoutMs must be an integer between 1 and 60000"),
        ([{"name": "a", "url": "http://x/", "latencyWarnMs": "5s"}], "latencyWarnMs must be an integer"),
        ([{"name": "a", "url": "http://x/", "followRedirects": "yes"}], "followRedirects must be true or false"),
        ([{"name": "a", "url": "http://x/", "timeout": 5}], "target 1 (a): unknown field timeout"),
        ([{"name": f"t{i}", "url": "http://x/"} for i in range(101)], "must list at most 100 targets"),
    ],
)
def test_bad_targets_name_the_variable_and_the_field(monkeypatch, targets, problem):
    with pytest.raises(ConfigurationError) as caught:
        settings(monkeypatch, targets)
    assert caught.value.variable == "PROBE_TARGETS"
    assert problem in caught.value.problem


def test_a_bad_target_never_echoes_a_secret(monkeypatch):
    with pytest.raises(ConfigurationError) as caught:
        settings(monkeypatch, [{"name": "a", "url": "gopher://u:hunter22-secret@x/", "headers": {"A": "tok-123456"}}])
    assert "hunter22" not in str(caught.value)


def test_app_base_url_gives_the_health_routes_and_the_home_page(monkeypatch):
    monkeypatch.setenv("APP_BASE_URL", "https://app.example.com/base")
    targets = ProbeSettings.from_env().targets
    assert [(t.name, t.url) for t in targets] == [
        ("app", "https://app.example.com/base/api/health/app"),
        ("db", "https://app.example.com/base/api/health/db"),
        ("queue", "https://app.example.com/base/api/health/queue"),
        ("home", "https://app.example.com/base/"),
    ]
    assert all(t.expect_status == ((200, 399),) for t in targets)  # unhealthy is 503


def test_probe_targets_win_over_app_base_url_and_nothing_set_is_no_target(monkeypatch):
    assert ProbeSettings.from_env().targets == ()
    monkeypatch.setenv("APP_BASE_URL", "https://app.example.com")
    assert [t.name for t in settings(monkeypatch, [{"name": "x", "url": "http://x/"}]).targets] == ["x"]


def test_a_bad_app_base_url(monkeypatch):
    monkeypatch.setenv("APP_BASE_URL", "app.example.com")
    with pytest.raises(ConfigurationError) as caught:
        ProbeSettings.from_env()
    assert caught.value.variable == "APP_BASE_URL"


def test_the_ca_bundle_inline_or_a_path_and_a_bad_one(monkeypatch, tmp_path):
    import trustme

    pem = trustme.CA().cert_pem.bytes().decode()
    monkeypatch.setenv("PROBE_CA_BUNDLE", pem)
    assert ProbeSettings.from_env().ca_bundle.strip() == pem.strip()
    (tmp_path / "ca.pem").write_text(pem)
    monkeypatch.setenv("PROBE_CA_BUNDLE", str(tmp_path / "ca.pem"))
    assert ProbeSettings.from_env().ca_bundle.strip() == pem.strip()
    for bad in (str(tmp_path / "missing.pem"), "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"):
        monkeypatch.setenv("PROBE_CA_BUNDLE", bad)
        with pytest.raises(ConfigurationError) as caught:
            ProbeSettings.from_env()
        assert caught.value.variable == "PROBE_CA_BUNDLE"


def test_header_values_and_url_passwords_are_registered_as_secrets(monkeypatch):
    settings(monkeypatch, [{"name": "a", "url": "https://probe:url-Pa55word@x/", "headers": {
        "Authorization": "Token header-secret-1"}}])  # fmt: skip
    assert "[redacted]" in scrub_text("sent Token header-secret-1") and "header-secret" not in scrub_text(
        "x header-secret-1 y")  # fmt: skip
    assert "url-Pa55word" not in scrub_text("connecting with url-Pa55word")


@pytest.mark.parametrize(
    ("value", "ranges"),
    [(200, ((200, 200),)), ("200-399", ((200, 399),)), ([200, "301-302"], ((200, 200), (301, 302))),
     ("503", ((503, 503),))],
)  # fmt: skip
def test_expect_status_forms(value, ranges):
    assert parse_expect_status(value) == ranges


@pytest.mark.parametrize("value", [True, [], "399-200", "abc", 99, [200, None]])
def test_bad_expect_status(value):
    with pytest.raises(ValueError):
        parse_expect_status(value)


DOCUMENT = {"status": "healthy", "a": {"b": 1, "c d": [None, {"x": False}]}, "items": [{"x": "first"}]}


@pytest.mark.parametrize(
    ("path", "value"),
    [("$.status", "healthy"), ("$.a.b", 1), ("$.items[0].x", "first"), ("$['a']['c d'][1].x", False),
     ('$.a["c d"][0]', None), ("$", DOCUMENT)],
)  # fmt: skip
def test_json_path_subset(path, value):
    assert resolve_json_path(DOCUMENT, parse_json_path(path)) == value


@pytest.mark.parametrize("path", ["$.missing", "$.items[1].x", "$.status.x", "$.a[0]", "$.items.x"])
def test_json_path_missing(path):
    from parel_monitoring.probe import _MISSING

    assert resolve_json_path(DOCUMENT, parse_json_path(path)) is _MISSING


@pytest.mark.parametrize("days", [2, 10, 90, 20000])  # 20000 days: after 2049, a GeneralizedTime
def test_certificate_not_after_reads_the_der(days):
    import trustme
    from cryptography import x509

    not_after = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=days)
    leaf = trustme.CA().issue_cert("127.0.0.1", not_after=not_after)
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER
    )
    assert certificate_not_after(der) == not_after


def test_public_url_drops_credentials():
    assert public_url("https://user:pa55word-x@app.example.com:8443/p?q=1#f") == "https://app.example.com:8443/p?q=1"
    assert public_url("https://app.example.com/h?token=abc123&page=2&api_key=k") == (
        "https://app.example.com/h?token=[redacted]&page=2&api_key=[redacted]")  # fmt: skip


def test_probe_data_per_target_and_aggregate():
    results = [
        {"name": "a", "ok": True, "latencyMs": 120.0, "latencyWarnMs": 100, "certificateDaysLeft": 9.5},
        # failed after its warning latency (a timeout): the down alarm's, not the latency alarm's as well
        {"name": "b", "ok": False, "latencyMs": 150.0, "latencyWarnMs": 100, "certificateDaysLeft": None},
    ]
    data = probe_data(results)
    per_target = {(name, dims[0][1]): value for name, _, value, dims in data if dims}
    assert per_target == {
        ("ProbeSuccess", "a"): 1.0, ("ProbeLatencyMs", "a"): 120.0, ("ProbeSlow", "a"): 1.0,
        ("CertificateDaysLeft", "a"): 9.5,
        ("ProbeSuccess", "b"): 0.0, ("ProbeLatencyMs", "b"): 150.0, ("ProbeSlow", "b"): 0.0,
    }  # fmt: skip
    aggregate = sorted((name, value) for name, _, value, dims in data if not dims)
    assert aggregate == [("CertificateDaysLeft", 9.5), ("ProbeSlow", 0.0), ("ProbeSlow", 1.0),
                         ("ProbeSuccess", 0.0), ("ProbeSuccess", 1.0)]  # fmt: skip
