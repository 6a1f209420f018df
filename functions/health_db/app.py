"""GET /api/health/db: PostgreSQL round trip and server connection usage."""

from functools import partial

from parel_monitoring.db import get_database
from parel_monitoring.health import deadline
from parel_monitoring.health.db import DbHealthSettings, check_db_health
from parel_monitoring.health.route import route_settings, serve
from parel_monitoring.observability import lambda_handler


@lambda_handler(route_settings(DbHealthSettings.from_env))
def handler(event, context, settings):
    check = partial(check_db_health, settings.check, get_database(settings.check.database), deadline(context))
    return serve(event, settings, "db", check, handler.logger)
