"""GET /api/health/queue: BullMQ counts per queue, failure rate and high-priority lag."""

from parel_monitoring.bullmq import get_redis
from parel_monitoring.health import health_response
from parel_monitoring.health.queue import QueueHealthSettings, check_queue_health
from parel_monitoring.observability import lambda_handler


@lambda_handler(QueueHealthSettings.from_env)
def handler(event, context, settings: QueueHealthSettings):
    return health_response(check_queue_health(settings, get_redis(settings.redis)))
