"""An unreadable admin-token secret denies every request like a missing one, but is not silent: one error
log line naming the variable and one Sentry event per environment and cache period (real sentry-sdk, local
ingest sink)."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

from test_sentry_envelope import parse_envelope

ROOT = Path(__file__).resolve().parents[2]
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:parel-admin-token-missing-AbCdEf"


def test_unreadable_secret_denies_logs_once_and_reports_to_sentry(httpserver):
    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_json({"id": "ok"})
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("ADMIN_API_TOKEN", "AWS_"))},
        "ADMIN_API_TOKEN_SECRET_ARN": SECRET_ARN,
        "SENTRY_DSN": f"http://0123456789abcdef0123456789abcdef@127.0.0.1:{httpserver.port}/1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "PYTHONPATH": str(ROOT / "layers" / "shared"),
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("admin_token_scenario.py"))],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    answers = [line for line in lines if "token" in line]
    assert answers == [{"token": None, "status": 403}] * 3, "an unreadable token must deny every request"
    errors = [line for line in lines if line.get("message", "").startswith("Admin token unreadable")]
    assert len(errors) == 1, f"one log line per cache period, got {len(errors)}:\n{result.stdout}"
    assert errors[0]["level"] == "ERROR" and errors[0]["variable"] == "ADMIN_API_TOKEN_SECRET_ARN"
    assert SECRET_ARN not in result.stdout + result.stderr, "the secret's ARN (its value) was logged"

    events = []
    for request, _ in httpserver.log:
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        events += [item["payload"] for item in parse_envelope(body) if item["type"] == "event"]
    assert [event["message"] if "message" in event else event.get("logentry", {}).get("message")
            for event in events] == ["Admin token unreadable: every admin request is denied"]  # fmt: skip
    assert events[0]["level"] == "error" and SECRET_ARN not in json.dumps(events)
