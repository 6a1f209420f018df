"""Alerts in: the admin API's JSON body, the layer's SNS messages, and CloudWatch alarm notifications.

CloudWatch convention: an alarm whose name ends with ``-critical`` or whose description starts with
``[CRITICAL]`` raises CRITICAL on ``ALARM``; any other alarm raises WARNING. ``OK`` becomes an INFO
"Resolved" alert (delivered in every stage: it closes an incident), ``INSUFFICIENT_DATA`` a WARNING.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from parel_monitoring import correlation
from parel_monitoring.clock import utc_now_iso
from parel_monitoring.http import HttpError
from parel_monitoring.notify.model import SEVERITIES, Alert

MAX_BODY_BYTES = 64 * 1024


def _bad(message: str, field: str) -> HttpError:
    return HttpError(400, "bad_request", message, field=field)


def alert_from_request(event: dict[str, Any]) -> Alert:
    """The alert in a POST /api/admin/alerts body; a 400/413 naming what is wrong otherwise."""
    raw = event.get("body") or ""
    if not isinstance(raw, str):
        raise _bad("body must be a JSON object", "body")
    try:
        data = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode()
    except (binascii.Error, ValueError):  # UnicodeEncodeError (a lone surrogate) is a ValueError too
        raise _bad(
            "body is not valid base64" if event.get("isBase64Encoded") else "body is not valid UTF-8", "body"
        ) from None
    if len(data) > MAX_BODY_BYTES:
        raise HttpError(413, "payload_too_large", f"body exceeds {MAX_BODY_BYTES} bytes", field="body")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
        raise _bad("body is not valid JSON", "body") from None
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object", "body")
    for name in ("timestamp", "source"):  # optional; an SNS message's are ignored when not strings
        if name in body and not isinstance(body[name], str):
            raise _bad(f"{name} must be a string when given", name)
    return _alert_from_fields(body, source="api")


def _alert_from_fields(body: dict[str, Any], source: str | None) -> Alert:
    severity = body.get("severity", "INFO")
    if not isinstance(severity, str) or not severity.isascii() or severity.upper() not in SEVERITIES:
        raise _bad(f"severity must be one of {', '.join(SEVERITIES)} (any letter case)", "severity")
    for name in ("title", "message"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise _bad(f"{name} is required and must be a non-empty string", name)
    metadata = body.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _bad("metadata must be a JSON object", "metadata")
    return Alert(
        severity=severity.upper(),
        title=body["title"].strip(),
        message=body["message"].strip(),
        metadata=metadata,
        timestamp=body.get("timestamp") if isinstance(body.get("timestamp"), str) else utc_now_iso(),
        correlation_id=correlation.get_current(),
        source=body.get("source") if isinstance(body.get("source"), str) else source,
    )


def _cloudwatch_severity(alarm: dict[str, Any]) -> str:
    state = alarm.get("NewStateValue")
    if state == "OK":
        return "INFO"
    if state == "ALARM":
        name = str(alarm.get("AlarmName", "")).lower()
        description = str(alarm.get("AlarmDescription") or "").upper()
        return "CRITICAL" if name.endswith("-critical") or description.startswith("[CRITICAL]") else "WARNING"
    return "WARNING"  # INSUFFICIENT_DATA: the metric stopped arriving


def _alert_from_alarm(alarm: dict[str, Any]) -> Alert:
    name = str(alarm.get("AlarmName", "CloudWatch alarm"))
    state = alarm.get("NewStateValue")
    title = f"Resolved: {name}" if state == "OK" else name
    trigger = alarm.get("Trigger") if isinstance(alarm.get("Trigger"), dict) else {}
    raw_dimensions = trigger.get("Dimensions") if isinstance(trigger.get("Dimensions"), list) else []
    dimensions = {
        d["name"]: d.get("value") for d in raw_dimensions if isinstance(d, dict) and isinstance(d.get("name"), str)
    }
    metadata = {
        "state": state,
        "previousState": alarm.get("OldStateValue"),
        "metric": f"{trigger.get('Namespace')}/{trigger.get('MetricName')}" if trigger.get("MetricName") else None,
        "threshold": trigger.get("Threshold"),
        "comparison": trigger.get("ComparisonOperator"),
        "dimensions": dimensions or None,
        "region": alarm.get("Region"),
        "alarmArn": alarm.get("AlarmArn"),
    }
    return Alert(
        severity=_cloudwatch_severity(alarm),
        title=title,
        message=str(alarm.get("NewStateReason") or alarm.get("AlarmDescription") or state),
        metadata={key: value for key, value in metadata.items() if value is not None},
        timestamp=str(alarm.get("StateChangeTime") or utc_now_iso()),
        correlation_id=correlation.get_current(),
        source="cloudwatch",
    )


def is_recovery(alert: Alert) -> bool:
    return alert.source == "cloudwatch" and alert.metadata.get("state") == "OK"


def alert_from_sns(record: dict[str, Any]) -> tuple[str, Alert]:
    """``(message id, alert)`` of one SNS record; ValueError when it is neither kind of alert."""
    sns = record.get("Sns") if isinstance(record, dict) else None
    if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
        raise ValueError("not an SNS notification")
    try:
        message = json.loads(sns["Message"])
    except (ValueError, RecursionError):
        raise ValueError("SNS message is not JSON") from None
    if not isinstance(message, dict):
        raise ValueError("SNS message is not a JSON object")
    message_id = str(sns.get("MessageId") or "")
    if "AlarmName" in message and "NewStateValue" in message:
        try:
            return message_id, _alert_from_alarm(message)
        except (TypeError, AttributeError, ValueError):
            raise ValueError("CloudWatch alarm notification is malformed") from None
    try:
        return message_id, _alert_from_fields(message, source=None)
    except HttpError as exc:
        raise ValueError(f"SNS alert rejected: {exc.message}") from None
