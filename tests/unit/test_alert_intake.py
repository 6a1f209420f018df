import base64
import json

import pytest

from events_loader import load_event
from parel_monitoring.http import HttpError
from parel_monitoring.notify.formatting import discord_payload, slack_payload
from parel_monitoring.notify.intake import MAX_BODY_BYTES, alert_from_request, alert_from_sns, is_recovery
from parel_monitoring.notify.model import Alert


def request(body, **fields):
    return load_event("alerts-api", body=body if isinstance(body, str) else json.dumps(body), **fields)


def rejected(event) -> HttpError:
    with pytest.raises(HttpError) as info:
        alert_from_request(event)
    return info.value


def test_the_api_body_becomes_an_alert():
    alert = alert_from_request(load_event("alerts-api"))
    assert alert.severity == "WARNING"  # "warning" in the event: any letter case
    assert alert.title == "Disk almost full on worker-3" and alert.metadata == {"host": "worker-3", "usedPercent": 92}
    assert alert.source == "api" and alert.timestamp.endswith("Z")


def test_base64_bodies_are_decoded():
    body = base64.b64encode(json.dumps({"severity": "INFO", "title": "t", "message": "m"}).encode()).decode()
    assert alert_from_request(request(body, isBase64Encoded=True)).severity == "INFO"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ("{not json", "body", "not valid JSON"),
        ("[1, 2]", "body", "JSON object"),
        ("", "body", "not valid JSON"),
        ({"severity": "INFO", "message": "m"}, "title", "title"),
        ({"severity": "INFO", "title": "   ", "message": "m"}, "title", "title"),
        ({"severity": "INFO", "title": "t", "message": ""}, "message", "message"),
        ({"severity": "INFO", "title": "t", "message": 5}, "message", "message"),
        ({"severity": "URGENT", "title": "t", "message": "m"}, "severity", "INFO, WARNING, CRITICAL"),
        ({"severity": 3, "title": "t", "message": "m"}, "severity", "INFO, WARNING, CRITICAL"),
        ({"severity": "\u0131nfo", "title": "t", "message": "m"}, "severity", "INFO, WARNING, CRITICAL"),
        ({"severity": "INFO", "title": "t", "message": "m", "metadata": [1]}, "metadata", "metadata"),
        ({"severity": "INFO", "title": "t", "message": "m", "metadata": "x"}, "metadata", "metadata"),
        # Found by Schemathesis (negative_data_rejection): a non-string source or timestamp was accepted
        ({"severity": "INFO", "title": "t", "message": "m", "source": {}}, "source", "source must be a string"),
        ({"severity": "INFO", "title": "t", "message": "m", "timestamp": 5}, "timestamp", "timestamp must be"),
        ({"severity": "INFO", "title": "t", "message": "m", "timestamp": None}, "timestamp", "timestamp must be"),
    ],
)
def test_bad_bodies_are_a_400_naming_the_field(body, field, fragment):
    error = rejected(request(body))
    assert error.status == 400 and error.fields["field"] == field and fragment in error.message


def test_invalid_base64_is_a_400():
    assert rejected(request("***", isBase64Encoded=True)).status == 400


def test_a_body_over_64_kb_is_a_413():
    body = {"severity": "INFO", "title": "t", "message": "x" * MAX_BODY_BYTES}
    error = rejected(request(body))
    assert error.status == 413 and error.fields["field"] == "body"


def test_a_layer_alert_from_sns():
    message_id, alert = alert_from_sns(load_event("sns-alert")["Records"][0])
    assert message_id == "95df01b4-ee98-5cb9-9903-4c221d41eb5e"
    assert (alert.severity, alert.title, alert.metadata) == ("CRITICAL", "Self-healing failed", {"routine": "jobs"})


def test_cloudwatch_alarm_named_critical_is_critical():
    _, alert = alert_from_sns(load_event("sns-cloudwatch-alarm")["Records"][0])
    assert alert.severity == "CRITICAL" and alert.title == "parel-monitoring-high-priority-lag-critical"
    assert alert.message.startswith("Threshold Crossed")
    assert alert.metadata["metric"] == "ParelMonitoring/HighPriorityLag" and alert.metadata["threshold"] == 100.0
    assert alert.metadata["dimensions"] == {"Stage": "prod"} and not is_recovery(alert)


def _alarm_record(**changes):
    record = load_event("sns-cloudwatch-alarm")["Records"][0]
    alarm = {**json.loads(record["Sns"]["Message"]), **changes}
    record["Sns"]["Message"] = json.dumps(alarm)
    return record


@pytest.mark.parametrize(
    ("changes", "severity"),
    [
        ({"AlarmName": "parel-monitoring-failure-rate-warning", "AlarmDescription": "Failure rate >= 5%"}, "WARNING"),
        ({"AlarmName": "db-query-time", "AlarmDescription": "[CRITICAL] DB query > 1000 ms"}, "CRITICAL"),
        ({"NewStateValue": "INSUFFICIENT_DATA"}, "WARNING"),
    ],
)
def test_cloudwatch_severity_convention(changes, severity):
    assert alert_from_sns(_alarm_record(**changes))[1].severity == severity


def test_cloudwatch_ok_is_an_info_resolution():
    _, alert = alert_from_sns(load_event("sns-cloudwatch-ok")["Records"][0])
    assert alert.severity == "INFO" and alert.title.startswith("Resolved: ") and is_recovery(alert)


@pytest.mark.parametrize(
    "record",
    [{}, {"Sns": {}}, {"Sns": {"Message": "not json"}}, {"Sns": {"Message": "[]"}}, {"Sns": {"Message": "{}"}}],
)
def test_garbage_sns_records_are_rejected(record):
    with pytest.raises(ValueError):
        alert_from_sns(record)


@pytest.mark.parametrize(
    ("sent", "normalised"),
    [
        ("2026-11-27T18:00:30.123+0000", "2026-11-27T18:00:30.123Z"),  # CloudWatch's StateChangeTime
        ("2026-11-27T19:00:30.123+01:00", "2026-11-27T18:00:30.123Z"),
        ("2026-11-27T18:00:30", "2026-11-27T18:00:30.000Z"),  # no offset: UTC
    ],
)
def test_outgoing_timestamps_are_utc_with_a_z(sent, normalised):
    alert = Alert("WARNING", "t", "m", timestamp=sent)
    assert discord_payload(alert)["embeds"][0]["timestamp"] == normalised
    assert normalised in json.dumps(slack_payload(alert))
