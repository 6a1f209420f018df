"""probe_all against real HTTP and HTTPS servers on 127.0.0.1 (tests/probe_servers.py): status, category,
latency, TTFB and certificate days of every kind of target the issue lists."""

from __future__ import annotations

import json
import time

import pytest
from probe_servers import Sites

from parel_monitoring.probe import ProbeSettings, probe_all


@pytest.fixture(scope="module")
def sites():
    with Sites() as running:
        yield running


def probe(monkeypatch, targets: list[dict], ca_bundle: str | None = None, until: float | None = None) -> dict:
    monkeypatch.setenv("PROBE_TARGETS", json.dumps(targets))
    if ca_bundle:
        monkeypatch.setenv("PROBE_CA_BUNDLE", ca_bundle)
    results = probe_all(ProbeSettings.from_env(), until)
    assert [r["name"] for r in results] == [t["name"] for t in targets]
    return {r["name"]: r for r in results}


def test_a_healthy_target_is_up_with_its_figures(monkeypatch, sites):
    result = probe(monkeypatch, [{"name": "app", "url": f"{sites.http.base}/ok", "jsonPath": "$.status",
                                  "equals": "healthy", "bodyContains": "healthy"}])["app"]  # fmt: skip
    assert result["ok"] is True and result["status"] == "up" and result["category"] is None
    assert result["httpStatus"] == 200 and result["reason"] is None
    assert 0 < result["ttfbMs"] <= result["latencyMs"] < 5000
    assert result["certificateDaysLeft"] is None  # plain http


@pytest.mark.parametrize(
    ("path", "extra", "category", "http_status"),
    [
        ("/unhealthy", {}, "status", 503),
        ("/degraded", {"jsonPath": "$.status", "equals": "healthy"}, "condition", 200),
        ("/degraded", {"jsonPath": "$.checks.queue.status"}, "condition", 200),
        ("/ok", {"bodyContains": "all systems go"}, "condition", 200),
        ("/close", {}, "connect", None),
        ("/slow/3000", {"timeoutMs": 500}, "timeout", None),
        ("/redirect/2", {"expectStatus": 200}, "status", 302),  # not followed
        ("/redirect/9", {"followRedirects": True}, "status", 302),  # followed, more than the bound
    ],
)
def test_a_failing_target_is_down_with_its_category(monkeypatch, sites, path, extra, category, http_status):
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.http.base}{path}", **extra}])["t"]
    assert (result["ok"], result["status"], result["category"]) == (False, "down", category), result
    assert result["httpStatus"] == http_status
    assert result["reason"]


def test_the_timeout_bounds_the_probe(monkeypatch, sites):
    started = time.monotonic()
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.http.base}/slow/4000", "timeoutMs": 300}])["t"]
    assert result["category"] == "timeout"
    assert time.monotonic() - started < 3.0  # the server answers only after 4 s


def test_the_overall_deadline_bounds_every_probe(monkeypatch, sites):
    started = time.monotonic()
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.http.base}/slow/4000"}], until=started + 0.3)["t"]
    assert result["category"] == "timeout"
    assert time.monotonic() - started < 3.0


def test_redirects_are_followed_only_when_asked(monkeypatch, sites):
    results = probe(monkeypatch, [
        {"name": "followed", "url": f"{sites.http.base}/redirect/3", "followRedirects": True, "jsonPath": "$.status",
         "equals": "healthy"},
        {"name": "default", "url": f"{sites.http.base}/redirect/3"},
    ])  # fmt: skip
    assert results["followed"]["ok"] and results["followed"]["httpStatus"] == 200
    assert results["default"]["ok"] and results["default"]["httpStatus"] == 302  # 3xx is in 200-399


def test_an_unresolvable_host_is_a_dns_failure(monkeypatch):
    result = probe(monkeypatch, [{"name": "t", "url": "http://nonexistent.invalid/"}])["t"]
    assert result["category"] == "dns" and not result["ok"]


def test_a_closed_port_is_a_connect_failure(monkeypatch, closed_port):
    result = probe(monkeypatch, [{"name": "t", "url": f"http://127.0.0.1:{closed_port}/"}])["t"]
    assert result["category"] == "connect" and not result["ok"]


def test_slow_but_answering_is_degraded(monkeypatch, sites):
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.http.base}/slow/400", "latencyWarnMs": 100}])["t"]
    assert result["ok"] and result["status"] == "degraded" and result["latencyMs"] > 100
    assert result["ttfbMs"] >= 400


def test_head_requests(monkeypatch, sites):
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.http.base}/ok", "method": "HEAD"}])["t"]
    assert result["ok"] and result["httpStatus"] == 200
    assert sites.http.requests[-1][0] == "/ok"


def test_headers_and_url_credentials_are_sent_but_never_reported(monkeypatch, sites):
    url = sites.http.base.replace("http://", "http://probe:s3cret-Pa55@") + "/unhealthy"
    result = probe(monkeypatch, [{"name": "t", "url": url, "headers": {"X-Api-Key": "key-0123456789"}}])["t"]
    path, headers = sites.http.requests[-1]
    assert path == "/unhealthy" and headers["X-Api-Key"] == "key-0123456789"
    assert headers["Authorization"].startswith("Basic ")
    text = json.dumps(result)
    assert "s3cret-Pa55" not in text and "key-0123456789" not in text and "probe:" not in text
    assert result["url"] == f"{sites.http.base}/unhealthy"


@pytest.mark.parametrize("days", Sites.LEAF_DAYS)
def test_https_reports_the_certificate_days_left(monkeypatch, sites, days):
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.https[days].base}/ok"}], sites.ca_pem)["t"]
    assert result["ok"] and result["status"] == "up", result
    assert days - 0.1 < result["certificateDaysLeft"] <= days


@pytest.mark.parametrize("path", ["/unhealthy", "/degraded", "/close"])
def test_the_certificate_is_reported_when_the_request_fails(monkeypatch, sites, path):
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.https[10].base}{path}", "jsonPath": "$.status",
                                  "equals": "healthy"}], sites.ca_pem)["t"]  # fmt: skip
    assert not result["ok"] and result["category"] in ("status", "condition", "connect")
    assert 9.9 < result["certificateDaysLeft"] <= 10


def test_an_untrusted_certificate_fails_with_tls_and_still_reports_its_days(monkeypatch, sites):
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.untrusted.base}/ok"}], sites.ca_pem)["t"]
    assert (result["ok"], result["category"], result["httpStatus"]) == (False, "tls", None), result
    assert Sites.UNTRUSTED_DAYS - 0.1 < result["certificateDaysLeft"] <= Sites.UNTRUSTED_DAYS
    assert not sites.untrusted.requests  # nothing was sent over it


def test_without_the_private_ca_its_leaves_are_not_trusted(monkeypatch, sites):
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.https[90].base}/ok"}])["t"]
    assert result["category"] == "tls" and 89.9 < result["certificateDaysLeft"] <= 90


def test_the_ca_bundle_may_be_a_file(monkeypatch, sites, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text(sites.ca_pem)
    result = probe(monkeypatch, [{"name": "t", "url": f"{sites.https[2].base}/ok"}], str(bundle))["t"]
    assert result["ok"] and 1.9 < result["certificateDaysLeft"] <= 2


def test_targets_are_probed_concurrently(monkeypatch, sites):
    targets = [{"name": f"t{i}", "url": f"{sites.http.base}/slow/1000"} for i in range(10)]
    started = time.monotonic()
    results = probe(monkeypatch, targets)
    assert all(result["ok"] for result in results.values())
    assert time.monotonic() - started < 5.0  # one after the other: 10 s


def test_app_base_url_probes_the_apps_health_routes(monkeypatch, sites):
    monkeypatch.setenv("APP_BASE_URL", f"{sites.http.base}/")
    settings = ProbeSettings.from_env()
    assert [t.name for t in settings.targets] == ["app", "db", "queue", "home"]
    results = {r["name"]: r for r in probe_all(settings)}
    assert {path for path, _ in sites.http.requests[-4:]} == {"/api/health/app", "/api/health/db",
                                                              "/api/health/queue", "/"}  # fmt: skip
    assert results["app"]["category"] == "status" and results["app"]["httpStatus"] == 404


def test_a_redirect_to_another_origin_leaves_the_secret_headers_behind(monkeypatch, sites):
    with Sites(tls=False) as other:
        url = f"{sites.http.base}/redirect-to/{other.http.server_address[1]}/ok"
        headers = {"Authorization": "Bearer origin-only-token", "X-Api-Key": "origin-only-key", "X-Probe": "yes"}
        result = probe(monkeypatch, [{"name": "t", "url": url, "followRedirects": True, "headers": headers}])["t"]
        assert result["ok"] and result["httpStatus"] == 200, result
        first = sites.http.requests[-1][1]
        (second,) = [sent for path, sent in other.http.requests if path == "/ok"]
    assert first["Authorization"] == "Bearer origin-only-token" and first["X-Api-Key"] == "origin-only-key"
    assert "Authorization" not in second and "X-Api-Key" not in second and second["X-Probe"] == "yes"
