"""POST /api/admin/alerts and the alert SNS topic (layer alerts and CloudWatch alarms) -> Slack and Discord."""

import uuid

from parel_monitoring.http import json_response
from parel_monitoring.notify.intake import alert_from_request, alert_from_sns
from parel_monitoring.notify.service import AlertSettings, deadline_for, dispatch
from parel_monitoring.observability import is_http_event, lambda_handler


@lambda_handler(AlertSettings.from_env, http=None)
def handler(event, context, settings: AlertSettings):
    deadline = deadline_for(context, settings)
    if is_http_event(event):
        report = dispatch(alert_from_request(event), f"api-{uuid.uuid4()}", settings, deadline)
        failed = bool(report.get("channels")) and not report["delivered"] and not report.get("suppressed")
        return json_response(502 if failed else 200, report)

    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        handler.logger.warning("Rejected event: not an API request or SNS notification")
        return {"rejected": "unsupported trigger"}
    undelivered = []
    for record in records:
        try:
            message_id, alert = alert_from_sns(record)
        except ValueError as exc:
            handler.logger.warning("Rejected SNS record", {"problem": str(exc)})
            continue
        report = dispatch(alert, message_id, settings, deadline)
        if report.get("channels") and not report["delivered"]:
            undelivered.append(message_id)
    if undelivered:
        # Lambda retries the event; channels that already accepted it are not sent it again.
        raise RuntimeError(f"alert delivery failed for SNS message(s) {', '.join(undelivered)}")
    return {"processed": len(records)}
