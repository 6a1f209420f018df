"""GET /api/health: app, db and queue checks together (IETF health+json on request)."""

from functools import partial

from parel_monitoring.health.aggregate import AggregateHealthSettings, aggregate_view, check_all
from parel_monitoring.health.route import AGGREGATE, route_settings, serve
from parel_monitoring.http import header
from parel_monitoring.observability import is_cold_start, lambda_handler


@lambda_handler(route_settings(AggregateHealthSettings.from_env))
def handler(event, context, settings):
    check = partial(check_all, settings.check, context, is_cold_start())
    view = aggregate_view(header(event, "accept"), settings.check.queue.queues.high_priority_queue)
    return serve(event, settings, AGGREGATE, check, handler.logger, view, vary=("accept",))
