"""HttpApi Lambda authorizer (REQUEST, simple responses) for every /api/admin/* route."""

from parel_monitoring.auth import admin_token, authorize
from parel_monitoring.http import header
from parel_monitoring.observability import lambda_handler


def _misconfigured(exc):
    """A malformed setting (logged at init by name, never value): fail closed, like no token configured."""
    return {"isAuthorized": False, "context": {"status": 403, "reason": f"configuration: {exc.variable} {exc.problem}"}}


@lambda_handler(http=False, on_configuration_error=_misconfigured)
def handler(event, context):
    decision = authorize(header(event, "authorization"), admin_token())
    if not decision.authorized:
        handler.logger.info("Admin request denied", {"status": decision.status, "reason": decision.reason})
    return {"isAuthorized": decision.authorized, "context": {"status": decision.status, "reason": decision.reason}}
