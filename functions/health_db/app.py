"""GET /api/health/db: PostgreSQL round trip and server connection usage."""

from parel_monitoring.db import get_database
from parel_monitoring.health import health_response
from parel_monitoring.health.db import DbHealthSettings, check_db_health
from parel_monitoring.observability import lambda_handler


@lambda_handler(DbHealthSettings.from_env)
def handler(event, context, settings: DbHealthSettings):
    return health_response(check_db_health(settings, get_database(settings.database)))
