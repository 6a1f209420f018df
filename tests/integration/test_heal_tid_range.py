"""The tid-range walk (PostgreSQL 14+, no index on expires) against real PostgreSQL and Redis: the Prisma
adapter's official "Session" (random "sessionToken", no expires index), concurrent writers, partial runs that
resume where they stopped (positions in Redis), and tables rewritten or shrunk in between."""

import dataclasses
import json
import random
from datetime import UTC, datetime

import psycopg
import pytest
import redis
from psycopg import sql

from heal_support import budget_for_batches, connect, database_for, rows
from nextauth_schema import create_prisma_schema
from parel_monitoring.heal.authjs import AuthTablesSettings
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.orphans import OrphanSettings, _plan, clean_orphaned_records
from parel_monitoring.heal.positions import KEY_PREFIX, UNAVAILABLE, PositionStore
from parel_monitoring.heal.sessions import SessionSettings, explain_session_batch, heal_stale_sessions
from parel_monitoring.heal.tables import TID_RANGE

SMALL_BATCHES = SessionSettings(AuthTablesSettings("prisma"), batch_size=200)


@pytest.fixture
def prisma_url(database_url):
    """The Prisma adapter's schema as `prisma migrate` creates it (relationMode = "prisma": no foreign keys)."""
    with connect(database_url) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        conn.execute("""INSERT INTO "User" (id, email, "updatedAt") VALUES ('user-1', 'ada@example.com', now())""")
    return database_url


@pytest.fixture
def positions(redis_client, database_url):
    """The run's position store on the shared Redis; this test database's positions are deleted afterwards."""
    yield PositionStore(redis_client)
    name = database_url.rsplit("/", 1)[1]
    for key in redis_client.scan_iter(f"{KEY_PREFIX}:{name}:*"):
        redis_client.delete(key)


def load_sessions(conn: psycopg.Connection, total: int, seed: int = 7) -> None:
    """``total`` sessions with random tokens (as Auth.js makes them), inserted in random order, about half of
    them expired (tokens ``expired-…``, up to 30 days ago) and half live (``live-…``, up to 30 days ahead)."""
    rng = random.Random(seed)
    values = []
    for number in range(total):
        expired = rng.random() < 0.5
        token = f"{'expired' if expired else 'live'}-{rng.getrandbits(64):016x}-{number}"
        values.append((token, -1 if expired else 1, rng.randint(60, 30 * 86400)))
    conn.cursor().executemany(
        """INSERT INTO "Session" ("sessionToken", "userId", expires, "updatedAt")
        VALUES (%s, 'user-1', now() AT TIME ZONE 'UTC' + %s * %s * interval '1 second', now())""",
        values,
    )
    conn.execute('ANALYZE "Session"')


def tokens(url: str) -> set[str]:
    with connect(url) as conn:
        return rows(conn, "Session", "sessionToken")


def pages(url: str, table: str = "Session") -> int:
    with connect(url) as conn:
        query = "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int"
        return conn.execute(query, (f'"{table}"',)).fetchone()[0]


def test_without_an_expires_index_the_walk_is_a_tid_range_scan_of_a_few_pages(prisma_url):
    with connect(prisma_url) as conn:
        load_sessions(conn, 20_000)
    strategy, plan = explain_session_batch(database_for(prisma_url), SMALL_BATCHES)
    assert strategy == TID_RANGE
    assert 'Tid Range Scan on "Session" target' in plan and "Seq Scan" not in plan, plan
    # the first slice: about 200 rows at the table's average density, far fewer pages than the table has
    first_end = int(plan.split("(ctid < '(")[1].split(",")[0])
    assert 1 <= first_end < pages(prisma_url) / 10, plan


def test_every_expired_session_goes_and_every_live_one_stays(prisma_url):
    with connect(prisma_url) as conn:
        load_sessions(conn, 20_000)
        conn.execute("""INSERT INTO "VerificationToken" VALUES ('a@example.com', 'old', now() - interval '1 day'),
                        ('a@example.com', 'new', now() AT TIME ZONE 'UTC' + interval '1 day')""")
    before = tokens(prisma_url)
    durations: list[float] = []
    result = heal_stale_sessions(database_for(prisma_url), SMALL_BATCHES, Budget(), on_batch=durations.append)
    expired = {token for token in before if token.startswith("expired-")}
    assert (result["strategy"], result["key"], result["count"]) == (TID_RANGE, ["ctid"], len(expired))
    assert (result["verificationStrategy"], result["verificationTokens"]) == (TID_RANGE, 1)
    assert result["partial"] is False and result["position"]["stoppedAt"] is None
    assert result["batches"] == len(durations) > len(expired) // 400  # slices of about 200 expired rows
    assert tokens(prisma_url) == before - expired
    with connect(prisma_url) as conn:
        assert rows(conn, "VerificationToken", "token") == {"new"}


def test_rows_written_while_the_walk_runs_stay_unless_expired_at_the_cutoff(prisma_url):
    """Between batches another connection inserts live sessions (into pages the walk has freed, behind it, and
    beyond the end it read at the start), extends expired sessions the walk has not reached (they move to a
    new ctid: the delete re-checks the expiry), and moves live sessions by updating them. Nothing live goes;
    every session expired at the cutoff and left alone goes."""
    with connect(prisma_url) as conn:
        load_sessions(conn, 12_000)
    before = tokens(prisma_url)
    inserted: list[str] = []
    extended: set[str] = set()
    app = psycopg.connect(prisma_url, autocommit=True)
    expired_ahead = app.execute(  # the last expired sessions in physical order: the walk reaches them last
        """SELECT "sessionToken" FROM "Session" WHERE "sessionToken" LIKE 'expired-%' ORDER BY ctid DESC LIMIT 300"""
    ).fetchall()
    live = sorted(token for token in before if token.startswith("live-"))

    def write(_seconds: float) -> None:
        batch = len(inserted) // 20
        new = [f"new-live-{batch}-{n}" for n in range(20)]
        app.cursor().executemany(
            """INSERT INTO "Session" ("sessionToken", "userId", expires, "updatedAt")
            VALUES (%s, 'user-1', now() AT TIME ZONE 'UTC' + interval '1 hour', now())""",
            [(token,) for token in new],
        )
        inserted.extend(new)
        ahead = [token for (token,) in expired_ahead[batch * 10 : batch * 10 + 10]]
        app.execute(
            """UPDATE "Session" SET expires = now() AT TIME ZONE 'UTC' + interval '30 days'
            WHERE "sessionToken" = ANY(%s)""",
            (ahead,),
        )
        extended.update(ahead)
        app.execute(
            """UPDATE "Session" SET expires = expires + interval '1 day', "updatedAt" = now()
            WHERE "sessionToken" = ANY(%s)""",
            (live[batch * 50 : batch * 50 + 50],),
        )

    try:
        result = heal_stale_sessions(database_for(prisma_url), SMALL_BATCHES, Budget(), on_batch=write)
    finally:
        app.close()
    assert result["strategy"] == TID_RANGE and result["partial"] is False
    assert len(inserted) > 200 and len(extended) > 50  # the writers ran between many batches
    expired_untouched = {token for token in before if token.startswith("expired-")} - extended
    after = tokens(prisma_url)
    assert after == (before - expired_untouched) | set(inserted), "a live session was deleted or an expired one kept"
    assert result["count"] == len(expired_untouched)


def test_a_partial_run_records_its_position_and_the_next_run_resumes_there(prisma_url, positions, redis_client):
    with connect(prisma_url) as conn:
        load_sessions(conn, 20_000)
    before = tokens(prisma_url)
    expired = {token for token in before if token.startswith("expired-")}
    database = database_for(prisma_url)
    first = heal_stale_sessions(database, SMALL_BATCHES, budget_for_batches(5), positions=positions)
    stopped = first["position"]["stoppedAt"]
    assert first["partial"] is True and first["batches"] == 5 and 0 < first["count"] < len(expired)
    assert first["position"] | {"stoppedAt": 0} == {
        "pages": pages(prisma_url), "startedAt": 0, "stoppedAt": 0, "note": None, "kept": True
    }  # fmt: skip
    assert 0 < stopped < pages(prisma_url)
    (key,) = redis_client.scan_iter(f"{KEY_PREFIX}:{prisma_url.rsplit('/', 1)[1]}:*")
    assert json.loads(redis_client.get(key))["block"] == stopped
    # The next run (another cutoff) starts at that page, wraps around to page 0 and ends there: a full pass
    second = heal_stale_sessions(database, SMALL_BATCHES, Budget(), positions=positions)
    assert second["partial"] is False and second["position"]["startedAt"] == stopped
    assert second["position"]["stoppedAt"] is None and second["position"]["kept"] is True
    assert first["count"] + second["count"] == len(expired)
    assert tokens(prisma_url) == before - expired
    assert redis_client.get(key) is None  # finished: the next run starts at page 0
    third = heal_stale_sessions(database, SMALL_BATCHES, Budget(), positions=positions)
    assert (third["position"]["startedAt"], third["count"]) == (0, 0)


@pytest.mark.parametrize("change", ["shrunk", "rewritten"])
def test_a_recorded_position_is_dropped_when_the_table_shrank_or_was_rewritten(prisma_url, positions, change):
    """VACUUM cuts emptied pages off the end of the table; VACUUM FULL rewrites it: the position recorded
    before means nothing then, and the next run starts at page 0 (and says why)."""
    with connect(prisma_url) as conn:
        load_sessions(conn, 20_000)
    database = database_for(prisma_url)
    first = heal_stale_sessions(database, SMALL_BATCHES, budget_for_batches(3), positions=positions)
    assert first["partial"] is True and first["position"]["stoppedAt"] > 0
    with connect(prisma_url) as conn:
        if change == "shrunk":  # the last half of the table's pages emptied, then truncated by VACUUM
            half = pages(prisma_url) // 2
            conn.execute("""DELETE FROM "Session" WHERE ctid >= format('(%%s,0)', %s::int)::tid""", (half,))
            conn.execute('VACUUM "Session"')
        else:
            conn.execute('VACUUM FULL "Session"')
    assert pages(prisma_url) < first["position"]["pages"] or change == "rewritten"
    remaining = tokens(prisma_url)
    second = heal_stale_sessions(database, SMALL_BATCHES, Budget(), positions=positions)
    assert second["partial"] is False and second["position"]["startedAt"] == 0
    reason = "table shrank" if change == "shrunk" else "table rewritten"
    assert second["position"]["note"].startswith(reason), second["position"]
    assert tokens(prisma_url) == {token for token in remaining if token.startswith("live-")}


def test_without_redis_the_walk_starts_at_page_0_and_keeps_nothing(prisma_url, closed_port):
    with connect(prisma_url) as conn:
        load_sessions(conn, 3_000)
    down = PositionStore(redis.Redis(port=closed_port, socket_connect_timeout=1))
    result = heal_stale_sessions(database_for(prisma_url), SMALL_BATCHES, budget_for_batches(2), positions=down)
    assert result["partial"] is True and result["position"]["note"] == UNAVAILABLE
    assert result["position"]["kept"] is None and result["position"]["startedAt"] == 0
    assert down.unavailable  # not asked again in this run: the orphan rules' walks do not wait for Redis
    orphans = clean_orphaned_records(database_for(prisma_url), OrphanSettings.from_env(), Budget(), positions=down)
    assert {rule["position"]["note"] for rule in orphans["rules"] if rule["position"]} == {UNAVAILABLE}


def test_a_dry_run_counts_from_page_0_and_leaves_the_position_alone(prisma_url, positions):
    with connect(prisma_url) as conn:
        load_sessions(conn, 10_000)
    expired = {token for token in tokens(prisma_url) if token.startswith("expired-")}
    database = database_for(prisma_url)
    first = heal_stale_sessions(database, SMALL_BATCHES, budget_for_batches(3), positions=positions)
    stopped = first["position"]["stoppedAt"]
    dry = heal_stale_sessions(database, SMALL_BATCHES, Budget(), dry_run=True, positions=positions)
    assert dry["count"] == len(expired) - first["count"] and dry["position"]["startedAt"] == 0
    assert dry["position"]["kept"] is None
    resumed = heal_stale_sessions(database, SMALL_BATCHES, Budget(), positions=positions)
    assert resumed["position"]["startedAt"] == stopped and resumed["count"] == dry["count"]


def test_orphans_walk_each_child_table_in_physical_order_and_resume(prisma_url, positions):
    """The Prisma "Session"'s random tokens: the orphan rule walks it by tid range (the anti-join probes
    "User"'s primary key either way), partial runs resume, and exactly the orphans go."""
    with connect(prisma_url) as conn:
        conn.execute(
            """INSERT INTO "User" (id, email, "updatedAt")
            SELECT 'u' || i, i || '@example.com', now() FROM generate_series(1, 100) AS i"""
        )
        conn.execute(
            """INSERT INTO "Session" ("sessionToken", "userId", expires, "updatedAt")
            SELECT md5(i::text), 'u' || (1 + i % 100), now() + interval '1 day', now()
            FROM generate_series(1, 20000) AS i ORDER BY md5(i::text)"""
        )
        conn.execute("""DELETE FROM "User" WHERE id IN ('u1', 'u2', 'u3')""")
        conn.execute('ANALYZE "Session"')
    settings = dataclasses.replace(OrphanSettings.from_env(), batch_size=100)
    database = database_for(prisma_url)
    plan = database.run(lambda conn: _plan(conn, settings))
    session_walk = plan.walks[0][1]
    plan_text = database.run(session_walk.explain)
    assert session_walk.strategy == TID_RANGE and 'Tid Range Scan on "Session" target' in plan_text, plan_text
    assert 'Seq Scan on "Session"' not in plan_text, plan_text  # ("User", 100 rows, may be hashed whole)
    first = clean_orphaned_records(database, settings, budget_for_batches(4), positions=positions)
    assert first["partial"] is True and first["rules"][0]["position"]["stoppedAt"] > 0
    second = clean_orphaned_records(database, settings, Budget(), positions=positions)
    assert second["partial"] is False
    assert second["rules"][0]["position"]["startedAt"] == first["rules"][0]["position"]["stoppedAt"]
    assert first["rules"][0]["deleted"] + second["rules"][0]["deleted"] == 3 * 200
    with connect(prisma_url) as conn:
        assert rows(conn, "Session", "userId") == {f"u{n}" for n in range(4, 101)}


def test_the_cutoff_is_fixed_at_the_start(prisma_url):
    """The reported cutoff is the database's now() when the run was planned, before its first batch."""
    started = datetime.now(UTC)
    with connect(prisma_url) as conn:
        load_sessions(conn, 500)
    result = heal_stale_sessions(database_for(prisma_url), SMALL_BATCHES, Budget())
    assert started <= datetime.fromisoformat(result["cutoff"]) <= datetime.now(UTC)
    with connect(prisma_url) as conn:
        expired_left = conn.execute(
            sql.SQL("""SELECT count(*) FROM "Session" WHERE expires < {}::timestamptz AT TIME ZONE 'UTC'""").format(
                sql.Literal(result["cutoff"])
            )
        ).fetchone()[0]
    assert expired_left == 0
