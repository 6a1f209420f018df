"""A health check answers before Lambda's timeout however long PostgreSQL takes (issue 12, item 6).

The database is a listening socket that never accepts: libpq waits for the server's greeting until
``connect_timeout``, here longer than the function's Timeout (10 s in the template). Without a deadline
Lambda kills the invocation (no answer at all); with one the route answers 503 ``timeout`` in time.
"""

import json
import socket
import time

import pytest

from events_loader import load_event

SLOW = {"DB_CONNECT_TIMEOUT_S": "30", "HEALTH_SHOW_DETAILS": "always", "HEALTH_CACHE_TTL_S": "0"}


@pytest.fixture
def unanswering_postgres():
    """postgresql://... to a socket whose connections are queued by the kernel and never served."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"postgresql://monitor@127.0.0.1:{listener.getsockname()[1]}/app"


def answer(invocation):
    assert isinstance(invocation.payload, dict) and "statusCode" in invocation.payload, (
        f"no answer (Lambda timed out?): {invocation.payload}"
    )
    return invocation.payload["statusCode"], json.loads(invocation.payload["body"])


def test_db_route_answers_timeout_before_lambda_kills_it(start_function, unanswering_postgres):
    function = start_function("HealthDbFunction", DATABASE_URL=unanswering_postgres, **SLOW)
    status, body = answer(function.invoke(load_event("health-db"), timeout=60))
    assert status == 503 and body["status"] == "unhealthy" and body["reasonCategory"] == "timeout", body
    # The first check still waits for its connection: the next invocation answers at once, sharing nothing.
    started = time.monotonic()
    status, body = answer(function.invoke(load_event("health-db"), timeout=60))
    assert status == 503 and body["reasonCategory"] == "timeout" and "not finished" in body["reason"], body
    assert time.monotonic() - started < 8, "the second invocation waited for the first check"


def test_aggregate_answers_in_time_with_the_db_check_timed_out(start_function, unanswering_postgres):
    function = start_function(
        "HealthFunction", DATABASE_URL=unanswering_postgres, REDIS_URL="redis://127.0.0.1:6379/0", **SLOW
    )
    status, body = answer(function.invoke(load_event("health", headers={"accept": "application/json"}), timeout=60))
    assert status == 503 and body["checks"]["db"]["reasonCategory"] == "timeout", body
    assert body["checks"]["app"]["status"] == "healthy"
