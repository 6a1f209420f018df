"""HttpApi Lambda authorizer (REQUEST, simple responses) for every /api/admin/* route."""

from parel_monitoring.auth import admin_token, authorize
from parel_monitoring.http import header
from parel_monitoring.observability import lambda_handler


@lambda_handler(http=False)
def handler(event, context):
    decision = authorize(header(event, "authorization"), admin_token())
    if not decision.authorized:
        handler.logger.info("Admin request denied", {"status": decision.status, "reason": decision.reason})
    return {"isAuthorized": decision.authorized, "context": {"status": decision.status, "reason": decision.reason}}
