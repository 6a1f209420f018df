"""GET /api/health: app, db and queue checks together (IETF health+json on request)."""

from parel_monitoring.health.aggregate import AggregateHealthSettings, aggregate_response, check_all
from parel_monitoring.http import header
from parel_monitoring.observability import is_cold_start, lambda_handler


@lambda_handler(AggregateHealthSettings.from_env)
def handler(event, context, settings: AggregateHealthSettings):
    return aggregate_response(check_all(settings, context, is_cold_start()), header(event, "accept"))
