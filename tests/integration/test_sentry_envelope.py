"""The real sentry-sdk sends to a local ingest sink; the envelope is read back."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from events_loader import load_event

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "DATABASE_URL": "postgresql://app:Db-Pa55word-xyz@db.internal:5432/app",
    "ADMIN_API_TOKEN": "adm-token-0123456789abcdef",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0001/B0001/SlackSecretPart123",
    "SENTRY_PUBLIC_KEY": "0123456789abcdef0123456789abcdef",
}


def parse_envelope(raw: bytes) -> list[dict]:
    """Items of a Sentry envelope: header line, then (item header, payload) pairs."""
    lines = raw.split(b"\n")
    items, index = [], 1
    while index + 1 < len(lines):
        header = json.loads(lines[index])
        if header.get("length"):
            payload_bytes = b"\n".join(lines[index + 1 :])[: header["length"]]
            index += 1 + payload_bytes.count(b"\n") + 1
        else:
            payload_bytes = lines[index + 1]
            index += 2
        items.append({"type": header.get("type"), "payload": json.loads(payload_bytes)})
    return items


@pytest.fixture
def sentry_run(httpserver):
    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_json({"id": "ok"})
    dsn = f"http://{SECRETS['SENTRY_PUBLIC_KEY']}@127.0.0.1:{httpserver.port}/1"
    env = {**os.environ, **{k: v for k, v in SECRETS.items() if k != "SENTRY_PUBLIC_KEY"}}
    env.update(SENTRY_DSN=dsn, STAGE="prod", PYTHONPATH=os.pathsep.join([str(ROOT / "layers" / "shared")]))
    event = load_event(
        "health-app",
        headers={"x-correlation-id": "sentry-trace-77", "authorization": f"Bearer {SECRETS['ADMIN_API_TOKEN']}"},
    )
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("sentry_scenario.py")), json.dumps(event)],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    raws = []
    for request, _ in httpserver.log:
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        raws.append(body)
    response = json.loads(result.stdout.strip().splitlines()[-1])
    return response, raws, result.stdout + result.stderr


def test_raised_error_reaches_sentry_with_correlation_tag_and_no_secrets(sentry_run):
    response, raws, output = sentry_run
    assert response["statusCode"] == 500
    items = [item for raw in raws for item in parse_envelope(raw)]
    errors = [i["payload"] for i in items if i["type"] == "event" and i["payload"].get("exception")]
    messages = [i["payload"] for i in items if i["type"] == "event" and i["payload"].get("message")]
    assert len(errors) == 1 and len(messages) == 1
    error = errors[0]
    assert error["tags"]["correlation_id"] == "sentry-trace-77"
    assert messages[0]["tags"]["correlation_id"] == "sentry-trace-77"
    assert error["environment"] == "prod"
    assert error["exception"]["values"][0]["type"] == "RuntimeError"
    assert error["user"]["id"] == "user-42"
    assert messages[0]["level"] == "warning"
    assert any("posting to" in crumb.get("message", "") for crumb in error["breadcrumbs"]["values"])
    # The envelope *header* carries the DSN's public key by protocol (Sentry's own auth);
    # the events themselves and the process output must carry no secret at all.
    everything = json.dumps(items) + output
    for name, value in SECRETS.items():
        assert value not in everything, f"{name} leaked"
    assert "Db-Pa55word-xyz" not in everything and "[redacted]" in everything


def test_without_a_dsn_nothing_is_sent_and_sentry_is_not_imported(httpserver):
    """The same capture twice, differing only in SENTRY_DSN: with it the sink receives the event (so it would
    have seen one), without it (unset, or empty as the template's default) nothing is sent and sentry_sdk is
    never imported."""
    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_json({"id": "ok"})
    code = (
        "import sys, json; from parel_monitoring import error_tracker as e;"
        "e.init_sentry(); sent = e.capture_message('no-dsn-probe'); e.flush(5);"
        "print(json.dumps([sent is not None, 'sentry_sdk' in sys.modules]))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY")}
    base.update(PYTHONPATH=str(ROOT / "layers" / "shared"), STAGE="prod")

    def run(**env: str) -> list[bool]:
        httpserver.clear_log()
        result = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                                check=True, timeout=60)  # fmt: skip
        return json.loads(result.stdout.strip().splitlines()[-1])

    dsn = f"http://{SECRETS['SENTRY_PUBLIC_KEY']}@127.0.0.1:{httpserver.port}/1"
    assert run(SENTRY_DSN=dsn) == [True, True]
    received = [gzip.decompress(r.get_data()) if r.headers.get("Content-Encoding") == "gzip" else r.get_data()
                for r, _ in httpserver.log]  # fmt: skip
    assert any(b"no-dsn-probe" in body for body in received), "the sink never received the control event"
    for env in ({}, {"SENTRY_DSN": ""}):
        assert run(**env) == [False, False], env
        assert httpserver.log == [], f"{env}: something reached the sink"
