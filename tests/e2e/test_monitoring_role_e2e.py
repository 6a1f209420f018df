"""The built sweep and db health route under the emulator, connected as migrations/002's monitoring role."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from monitoring_role import drop_role, run_migration
from psycopg.conninfo import make_conninfo

from bullmq_scenario import REDIS_URL, run_scenario
from events_loader import load_event


@pytest.fixture
def monitor_url(database_url):
    role = f"parel_mon_{uuid.uuid4().hex[:10]}"
    result = run_migration(database_url, role, connection_limit=3)
    assert result.returncode == 0, result.stderr
    yield make_conninfo(database_url, user=role)
    drop_role(database_url, role)


def sessions_of(database_url: str, application_name: str) -> list[str]:
    with psycopg.connect(database_url) as admin:
        rows = admin.execute("SELECT usename FROM pg_stat_activity WHERE application_name = %s", (application_name,))
        return [user for (user,) in rows]


def test_the_sweep_and_the_db_route_work_with_the_monitoring_role(start_function, database_url, monitor_url, prefix):
    run_scenario("populate", prefix, "high-priority", completed=2)
    env = {"DATABASE_URL": monitor_url, "REDIS_URL": REDIS_URL, "QUEUE_NAMES": "high-priority",
           "BULLMQ_PREFIX": prefix, "HEALTH_SHOW_DETAILS": "always", "HEALTH_CACHE_TTL_S": "0"}  # fmt: skip
    role = psycopg.conninfo.conninfo_to_dict(monitor_url)["user"]
    other = psycopg.connect(database_url, application_name="parel-other-role")  # the app's session
    other.execute("SELECT 1")  # idle in transaction
    try:
        sweep = start_function("MonitorFunction", **env).invoke(load_event("monitor-schedule"))
        assert sweep.payload["db"] == "healthy", sweep.payload
        assert sessions_of(database_url, "parel-monitoring:MonitorFunction") == [role]  # it kept its connection
        metrics = [json.loads(line) for line in sweep.logs if line.startswith("{") and '"_aws"' in line]
        usage = [m["DbConnectionUsagePercent"] for m in metrics if "DbConnectionUsagePercent" in m]
        assert usage and usage[0][0] > 0

        reply = start_function("HealthDbFunction", **env).invoke(load_event("health-db"))
        assert reply.payload["statusCode"] == 200, reply.payload
        pool = json.loads(reply.payload["body"])["pool"]
        assert sessions_of(database_url, "parel-monitoring:HealthDbFunction") == [role]
    finally:
        other.close()
    # Every backend's state is visible to the role: the other role's idle-in-transaction session is counted.
    assert pool["idleInTransaction"] >= 1 and pool["total"] >= 3  # the sweep, this route, the other session
    assert pool["active"] + pool["idle"] + pool["idleInTransaction"] >= 3
