"""GET /api/health/app: uptime, memory and runtime of this execution environment."""

from parel_monitoring.health import health_response
from parel_monitoring.health.app import AppHealthSettings, check_app_health
from parel_monitoring.observability import is_cold_start, lambda_handler


@lambda_handler(AppHealthSettings.from_env)
def handler(event, context, settings: AppHealthSettings):
    return health_response(check_app_health(settings, context, cold_start=is_cold_start()))
