"""Raise alerts through the alert SNS topic (the seed's alertCritical/alertWarning/alertInfo).

The AlertsFunction subscribed to the topic owns the Slack and Discord webhooks; every
other function only publishes here. boto3 is imported on the first publish, so only
functions that really send an alert pay for it. Publishing never raises: an alert that
cannot be sent is logged, and the caller's work goes on.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from parel_monitoring import correlation
from parel_monitoring.clock import utc_now_iso
from parel_monitoring.logs import create_logger
from parel_monitoring.settings import env_str

SEVERITIES = ("INFO", "WARNING", "CRITICAL")


@functools.cache
def _sns_client() -> Any:
    import boto3

    return boto3.client("sns")


SUBJECT_MAX = 99  # SNS: "less than 100 characters"


def sns_subject(text: str) -> str:
    """``text`` as SNS accepts a subject: printable ASCII on one line, under 100 characters (SNS rejects the
    whole publish otherwise; the message body keeps the full title)."""
    import unicodedata

    folded = unicodedata.normalize("NFKD", text)  # "é" -> "e" + a combining accent, dropped below
    printable = "".join(char if " " <= char <= "~" else " " for char in folded if not unicodedata.combining(char))
    single = " ".join(printable.split()) or "Alert"
    return single if len(single) <= SUBJECT_MAX else single[: SUBJECT_MAX - 3].rstrip() + "..."


def publish_alert(severity: str, title: str, message: str, metadata: dict[str, Any] | None = None) -> str | None:
    """Publish one alert; returns the SNS message id, or None when it was not sent."""
    severity = severity.upper()
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
    topic_arn = env_str("ALERT_TOPIC_ARN")
    if not topic_arn:
        create_logger("alerts").warning(
            "Alert not sent: ALERT_TOPIC_ARN is not set", {"severity": severity, "title": title}
        )
        return None
    alert = {
        "severity": severity,
        "title": title,
        "message": message,
        "metadata": metadata or {},
        "correlationId": correlation.get_current(),
        "timestamp": utc_now_iso(),
        "source": env_str("AWS_LAMBDA_FUNCTION_NAME", "parel-monitoring"),
    }
    try:
        response = _sns_client().publish(
            TopicArn=topic_arn,
            Subject=sns_subject(f"[{severity}] {title}"),
            Message=json.dumps(alert, default=str),
            MessageAttributes={
                **correlation.sns_message_attributes(),
                "severity": {"DataType": "String", "StringValue": severity},
            },
        )
    except Exception as exc:  # botocore errors: alerting must never break the caller
        create_logger("alerts").error("Alert could not be published", exc, {"severity": severity, "title": title})
        return None
    create_logger("alerts").info(
        "Alert published", {"severity": severity, "title": title, "messageId": response.get("MessageId")}
    )
    return response.get("MessageId")


def alert_critical(title: str, message: str, metadata: dict[str, Any] | None = None) -> str | None:
    return publish_alert("CRITICAL", title, message, metadata)


def alert_warning(title: str, message: str, metadata: dict[str, Any] | None = None) -> str | None:
    return publish_alert("WARNING", title, message, metadata)


def alert_info(title: str, message: str, metadata: dict[str, Any] | None = None) -> str | None:
    return publish_alert("INFO", title, message, metadata)
