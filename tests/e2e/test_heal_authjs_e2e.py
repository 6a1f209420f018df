"""POST /api/admin/heal under the Lambda emulator, with the template's defaults and no Auth.js settings, on
databases seeded through the real Auth.js adapters; verified through the adapters afterwards."""

import json

import pytest
from psycopg import sql

from authjs_scenario import seed, verify
from bullmq_scenario import REDIS_URL
from events_loader import load_event
from heal_support import connect


@pytest.mark.parametrize(("adapter", "layout"), [("pg", "pg-adapter"), ("drizzle", "drizzle"), ("prisma", "prisma")])
def test_the_admin_route_heals_an_adapters_database_with_no_settings(
    start_function, database_url, prefix, adapter, layout
):
    with connect(database_url) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'Pacific/Auckland'").format(
            sql.Identifier(conn.info.dbname)))  # fmt: skip
    seeded = seed(adapter, database_url)
    heal = start_function(
        "HealFunction", DATABASE_URL=database_url, REDIS_URL=REDIS_URL, QUEUE_NAMES="unused", BULLMQ_PREFIX=prefix,
        ALERT_TOPIC_ARN="",
    )  # fmt: skip
    event = load_event("heal-api", queryStringParameters={"routines": "sessions,orphans"},
                       rawQueryString="routines=sessions,orphans")  # fmt: skip
    result = heal.invoke(event).payload
    summary = json.loads(result["body"])
    assert result["statusCode"] == 200 and summary["status"] == "ok", summary
    assert summary["routines"]["sessions"]["layout"] == summary["routines"]["orphans"]["layout"] == layout
    assert summary["staleSessions"] >= 6 and summary["routines"]["sessions"]["verificationTokens"] == 2
    assert summary["orphanedRecords"] >= 3
    # PostgreSQL 15, no index on expires: the tables are walked in physical order, each walk finished (its
    # position in Redis removed)
    sessions = summary["routines"]["sessions"]
    assert (sessions["strategy"], sessions["verificationStrategy"]) == ("tid-range", "tid-range"), sessions
    assert sessions["position"]["stoppedAt"] is None and sessions["position"]["kept"] is True, sessions
    verified = verify(adapter, database_url, seeded["plan"])
    assert verified["failures"] == [], verified
