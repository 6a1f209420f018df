"""Uptime probes every minute: each target of PROBE_TARGETS (or APP_BASE_URL's health routes) probed at once,
one structured log line per failed probe, the figures as CloudWatch metrics (EMF)."""

from parel_monitoring.health import deadline
from parel_monitoring.metrics import emit
from parel_monitoring.observability import lambda_handler
from parel_monitoring.probe import ProbeSettings, log_probes, probe_all, probe_data


@lambda_handler(ProbeSettings.from_env, http=False)
def handler(event, context, settings: ProbeSettings):
    results = probe_all(settings, deadline(context))
    log_probes(handler.logger, results)
    emit(probe_data(results))
    return {
        "targets": len(results),
        "up": sum(1 for result in results if result["ok"]),
        "down": [result["name"] for result in results if not result["ok"]],
        "slow": [result["name"] for result in results if result["status"] == "degraded"],
    }
