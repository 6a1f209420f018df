"""GET /api/admin/uptime (admin token): each probe target's availability over 24 h, 7 d and 30 d from CloudWatch."""

from parel_monitoring.availability import availability
from parel_monitoring.http import NO_STORE, error_response, json_response
from parel_monitoring.observability import lambda_handler
from parel_monitoring.probe import ProbeSettings
from parel_monitoring.scrub import safe_reason
from parel_monitoring.settings import env_str


@lambda_handler(ProbeSettings.from_env)
def handler(event, context, settings: ProbeSettings):
    names = [target.name for target in settings.targets]
    service = env_str("POWERTOOLS_SERVICE_NAME", "parel-monitoring")
    try:
        report = availability(names, service, env_str("STAGE", "dev"))
    except Exception as exc:  # CloudWatch unreachable, throttled or denied: an answer, not a crash
        handler.logger.error("Availability unreadable", exc, {"reason": safe_reason(exc)})
        return error_response(502, "cloudwatch", "CloudWatch GetMetricData failed", reason=safe_reason(exc))
    return json_response(200, report, NO_STORE)
