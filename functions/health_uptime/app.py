"""GET /api/health/uptime: the probe targets (PROBE_TARGETS / APP_BASE_URL) probed live, within the deadline."""

from parel_monitoring.health import deadline
from parel_monitoring.health.route import route_settings, serve
from parel_monitoring.health.uptime import uptime_document
from parel_monitoring.observability import lambda_handler
from parel_monitoring.probe import ProbeSettings, probe_all


@lambda_handler(route_settings(ProbeSettings.from_env))
def handler(event, context, settings):
    until = deadline(context)
    return serve(event, settings, "uptime", lambda: uptime_document(probe_all(settings.check, until)), handler.logger)
