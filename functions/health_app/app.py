"""GET /api/health/app: uptime, memory and runtime of this execution environment."""

from functools import partial

from parel_monitoring.health.app import AppHealthSettings, check_app_health
from parel_monitoring.health.route import route_settings, serve
from parel_monitoring.observability import is_cold_start, lambda_handler


@lambda_handler(route_settings(AppHealthSettings.from_env))
def handler(event, context, settings):
    check = partial(check_app_health, settings.check, context, cold_start=is_cold_start())
    return serve(event, settings, "app", check, handler.logger)
