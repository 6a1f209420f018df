"""The scheduled health sweep: the three checks in-process, emitted as CloudWatch metrics (EMF).

Always fresh checks (never the health routes' cache); each degraded or unhealthy component is logged.
"""

from parel_monitoring.health import log_checks
from parel_monitoring.health.aggregate import AggregateHealthSettings, check_all
from parel_monitoring.metrics import emit, health_data
from parel_monitoring.observability import lambda_handler


@lambda_handler(AggregateHealthSettings.from_env, http=False)
def handler(event, context, settings: AggregateHealthSettings):
    result = check_all(settings, context)
    log_checks(handler.logger, result["checks"])
    emit(health_data(result))
    return {"status": result["status"], **{name: check["status"] for name, check in result["checks"].items()}}
