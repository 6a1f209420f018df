"""GET /api/health/queue: BullMQ counts per queue, failure rate and high-priority lag."""

from functools import partial

from parel_monitoring.bullmq import get_redis
from parel_monitoring.health.queue import QueueHealthSettings, check_queue_health
from parel_monitoring.health.route import route_settings, serve
from parel_monitoring.observability import lambda_handler


@lambda_handler(route_settings(QueueHealthSettings.from_env))
def handler(event, context, settings):
    check = partial(check_queue_health, settings.check, get_redis(settings.check.redis))
    return serve(event, settings, "queue", check, handler.logger)
