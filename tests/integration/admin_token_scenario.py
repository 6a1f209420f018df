"""Run by test_admin_token_unreadable.py in its own interpreter (Sentry is initialised once per process).

The admin token's secret ARN names a secret that does not exist in moto's Secrets Manager: the token is read
three times, as three authorizer invocations would; each result is printed as one JSON line.
"""

import json

from moto import mock_aws

from parel_monitoring import error_tracker
from parel_monitoring.auth import admin_token, authorize

if __name__ == "__main__":
    with mock_aws():
        error_tracker.init_sentry()
        for _ in range(3):
            token = admin_token()
            print(json.dumps({"token": token, "status": authorize("Bearer anything", token).status}))
        error_tracker.flush(5)
