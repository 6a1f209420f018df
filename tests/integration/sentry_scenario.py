"""Run by test_sentry_envelope.py in its own interpreter (Sentry is initialised once per process).

A handler decorated like every function raises an error whose text holds secrets;
the real sentry-sdk sends it to the DSN in the environment (a local ingest sink).
"""

import json
import sys

from parel_monitoring import error_tracker
from parel_monitoring.error_tracker import ErrorSeverity
from parel_monitoring.observability import lambda_handler
from parel_monitoring.settings import secret


class Context:
    function_name = "SentryScenario"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:SentryScenario"
    aws_request_id = "req-sentry"


@lambda_handler(lambda: {"database_url": secret("DATABASE_URL"), "token": secret("ADMIN_API_TOKEN")})
def handler(event, context, settings):
    error_tracker.set_user_context("user-42", "user42@example.com", "ada")
    error_tracker.add_breadcrumb(f"posting to {secret('SLACK_WEBHOOK_URL')}", "alert", ErrorSeverity.INFO)
    error_tracker.capture_message("Heal run started", {"userId": "user-42", "token": settings["token"]},
                                  ErrorSeverity.WARNING)  # fmt: skip
    raise RuntimeError(f"cannot reach {settings['database_url']} with token {settings['token']}")


if __name__ == "__main__":
    event = json.loads(sys.argv[1])
    response = handler(event, Context())
    error_tracker.flush(5)
    print(json.dumps(response))
