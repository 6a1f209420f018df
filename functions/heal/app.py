"""POST /api/admin/heal and the 6-hourly schedule: one code path, one run at a time."""

from parel_monitoring.bullmq import get_redis
from parel_monitoring.db import get_database
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.options import parse_options
from parel_monitoring.heal.run import HealInProgress, HealSettings, run_all
from parel_monitoring.http import NO_STORE, HttpError, json_response
from parel_monitoring.observability import is_http_event, lambda_handler


def _heal(settings: HealSettings, context, options, limit_ms=None):
    budget = Budget(context, reserve_ms=settings.reserve_ms, limit_ms=limit_ms)
    return run_all(settings, get_database(settings.database), get_redis(settings.redis), options, budget)


@lambda_handler(HealSettings.from_env, http=None)
def handler(event, context, settings: HealSettings):
    if is_http_event(event):
        options = parse_options(event.get("queryStringParameters"))
        try:
            result = _heal(settings, context, options, limit_ms=settings.api_budget_ms)
        except HealInProgress:
            raise HttpError(409, "conflict", "A heal run is already in progress; try again when it ends.") from None
        return json_response(503 if result["status"] == "failed" else 200, result, NO_STORE)

    if not (isinstance(event, dict) and event.get("source") == "aws.scheduler"):
        handler.logger.warning("Rejected event: not an API request or a schedule", {"keys": sorted(event)[:10]}
                               if isinstance(event, dict) else {"type": type(event).__name__})  # fmt: skip
        return {"rejected": "unsupported trigger"}
    try:
        options = parse_options(event.get("detail"))
    except HttpError as exc:
        handler.logger.error("Rejected schedule input", extra={"problem": exc.message})
        return {"rejected": exc.message}
    try:
        return _heal(settings, context, options)
    except HealInProgress:
        handler.logger.info("Scheduled heal skipped: another run is in progress")
        return {"skipped": "another heal run is in progress"}
