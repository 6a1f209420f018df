"""Injection: SQL through configured names and query strings, Redis keys through queue names, log lines
through correlation IDs.

The SQL tests run against real PostgreSQL (the ``database_url`` fixture: a database of the test's own) and
the Redis test against the Redis on 127.0.0.1 (hence the integration tier); the rest is pure logic.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from samcli.yamlhelper import yaml_parse

from bullmq_scenario import REDIS_URL, cleanup, unique_prefix
from events_loader import load_event
from heal_support import connect, database_for, rows
from nextauth_schema import create_prisma_schema
from parel_monitoring import correlation, logs
from parel_monitoring.bullmq import _SCRIPT_KEY_TYPES, QueueSettings, job_counts, queue_key
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.options import ROUTINES, HealOptions, parse_options
from parel_monitoring.heal.orphans import OrphanSettings, clean_orphaned_records
from parel_monitoring.heal.sessions import SessionSettings, heal_stale_sessions
from parel_monitoring.http import HttpError
from parel_monitoring.settings import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

# Names an attacker (or a careless operator) might configure: statement breakers, comment starters,
# quote escapes, psycopg placeholders.
HOSTILE_NAMES = [
    'Session"; DROP TABLE "User"; --',
    'Session\'; DELETE FROM "User"; --',
    'Session" WHERE true; --',
    '"Session"',
    "Session%s",
    "Session%(x)s",
    "Session) OR (1=1",
    "Session\\",
    "Session;",
]


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


HEAL_VARIABLES = (
    "SESSION_SCHEMA", "SESSION_TABLE", "SESSION_EXPIRES_COLUMN", "SESSION_BATCH_SIZE", "ORPHAN_RULES",
    "ORPHAN_BATCH_SIZE", "BULLMQ_PREFIX", "QUEUE_NAMES", "HIGH_PRIORITY_QUEUE", "AUTH_TABLES_SCHEMA",
    "VERIFICATION_TOKEN_TABLE", "VERIFICATION_TOKEN_EXPIRES_COLUMN",
)  # fmt: skip


@pytest.fixture(autouse=True)
def no_heal_settings(monkeypatch):
    for variable in HEAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def nextauth_url(database_url):
    """The Prisma schema with two users, an expired and a live session each."""
    with connect(database_url) as conn:
        create_prisma_schema(conn, foreign_keys=False)
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'a@example.com', now()),
                                                                        ('u2', 'b@example.com', now())""")
        conn.cursor().executemany(
            """INSERT INTO "Session"("sessionToken", "userId", expires, "updatedAt") VALUES (%s, %s, %s, now())""",
            [(f"s-{user}-{kind}", user, utc_now() + delta)
             for user in ("u1", "u2") for kind, delta in (("old", -timedelta(days=1)), ("live", timedelta(days=1)))],
        )  # fmt: skip
    return database_url


def snapshot(url: str) -> dict[str, set]:
    with connect(url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        return {"tables": tables, "User": rows(conn, "User", "id"), "Session": rows(conn, "Session", "sessionToken")}


# --------------------------------------------------------------------------- SQL: configured names


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_session_table_name_is_looked_up_never_executed(nextauth_url, monkeypatch, name):
    before = snapshot(nextauth_url)
    monkeypatch.setenv("SESSION_TABLE", name)
    try:
        settings_ = SessionSettings.from_env()
    except ConfigurationError as exc:  # refused outright: fine too
        assert exc.variable == "SESSION_TABLE" and name not in str(exc)
    else:
        with pytest.raises(ConfigurationError) as raised:
            heal_stale_sessions(database_for(nextauth_url), settings_, Budget())
        assert raised.value.variable == "SESSION_TABLE" and name not in str(raised.value)
    assert snapshot(nextauth_url) == before, "a configured name changed the database"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_expires_column_name_is_looked_up_never_executed(nextauth_url, monkeypatch, name):
    before = snapshot(nextauth_url)
    monkeypatch.setenv("SESSION_EXPIRES_COLUMN", name)
    with pytest.raises(ConfigurationError) as raised:
        heal_stale_sessions(database_for(nextauth_url), SessionSettings.from_env(), Budget())
    assert raised.value.variable == "SESSION_EXPIRES_COLUMN" and name not in str(raised.value)
    assert snapshot(nextauth_url) == before


EVIL_SCHEMA = "tenant'; DROP SCHEMA public CASCADE; --"
EVIL_TABLE = 'sessions"; DROP TABLE "User"; --%s'
EVIL_COLUMN = 'expires\'); DELETE FROM "User"; --%(x)s'


@pytest.mark.parametrize(
    ("strategy", "server"), [("tid-range", None), ("primary-key", 130000), ("expires-index", None)]
)  # 130000: planned as for PostgreSQL 13, without Tid Range Scans
def test_names_made_of_sql_are_quoted_and_reach_exactly_their_table(nextauth_url, monkeypatch, strategy, server):
    """A table, schema and column really named like injections: the heal deletes their expired rows only."""
    with_index = strategy == "expires-index"
    table = sql.Identifier(EVIL_SCHEMA, EVIL_TABLE)
    with connect(nextauth_url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(EVIL_SCHEMA)))
        conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, {} timestamp(3) NOT NULL)").format(
            table, sql.Identifier(EVIL_COLUMN)))  # fmt: skip
        if with_index:
            conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(table, sql.Identifier(EVIL_COLUMN)))
        for row_id, expires in (("old-1", utc_now() - timedelta(hours=1)), ("old-2", utc_now() - timedelta(days=3)),
                                ("live", utc_now() + timedelta(hours=1))):  # fmt: skip
            # Literals, not placeholders: the "%s" in the table name would count as one.
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES ({}, {})").format(table, sql.Literal(row_id), sql.Literal(expires))
            )
    before = snapshot(nextauth_url)
    monkeypatch.setenv("SESSION_TABLE", f"{EVIL_SCHEMA}.{EVIL_TABLE}")
    monkeypatch.setenv("SESSION_EXPIRES_COLUMN", EVIL_COLUMN)
    monkeypatch.setenv("SESSION_BATCH_SIZE", "1")  # several batches: every statement shape runs
    settings = SessionSettings.from_env()
    result = heal_stale_sessions(database_for(nextauth_url), settings, Budget(), server_version=server)
    assert result["count"] == 2 and result["strategy"] == strategy
    with connect(nextauth_url) as conn:
        assert {row[0] for row in conn.execute(sql.SQL("SELECT id FROM {}").format(table))} == {"live"}
    after = snapshot(nextauth_url)
    assert after["tables"] == before["tables"] and after["User"] == before["User"]
    assert after["Session"] == before["Session"], "only the configured table may be touched"


@pytest.mark.parametrize(
    "rule",
    [
        {"table": 'Session"; DROP TABLE "User"; --', "column": "userId", "parentTable": "User", "parentColumn": "id"},
        {"table": "Session", "column": 'userId" IS NULL OR true; --', "parentTable": "User", "parentColumn": "id"},
        {"table": "Session", "column": "userId", "parentTable": "User WHERE false", "parentColumn": "id"},
        {"table": "Session", "column": "userId", "parentTable": "User", "parentColumn": "id') OR ('1'='1"},
        {"table": "public.Session;", "column": "userId", "parentTable": "pg_catalog.pg_class", "parentColumn": "oid"},
    ],
    ids=["table", "column", "parent-table", "parent-column", "schema-and-catalog"],
)
def test_hostile_orphan_rules_are_refused_before_anything_is_deleted(nextauth_url, monkeypatch, rule):
    with connect(nextauth_url) as conn:
        conn.execute("""DELETE FROM "User" WHERE id = 'u2'""")  # u2's sessions are now real orphans
    before = snapshot(nextauth_url)
    monkeypatch.setenv("ORPHAN_RULES", json.dumps([{"table": "Session", "column": "userId", "parentTable": "User",
                                                    "parentColumn": "id"}, rule]))  # fmt: skip
    try:
        settings_ = OrphanSettings.from_env()
    except ConfigurationError as exc:
        assert exc.variable == "ORPHAN_RULES"
    else:
        with pytest.raises(ConfigurationError) as raised:
            clean_orphaned_records(database_for(nextauth_url), settings_, Budget())
        assert raised.value.variable == "ORPHAN_RULES"
        for value in rule.values():
            assert value not in str(raised.value), "the error must not echo the configured value"
    assert snapshot(nextauth_url) == before, "a refused rule set must delete nothing, not even its valid rules"


def test_orphan_rules_on_tables_named_like_sql_delete_exactly_the_orphans(nextauth_url, monkeypatch):
    child, parent = sql.Identifier('child"; DROP TABLE "User"; --'), sql.Identifier("parent'); --%s")
    key = 'pid" = ANY(SELECT id FROM "User")) OR ("x'
    with connect(nextauth_url) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} ({} text PRIMARY KEY)").format(parent, sql.Identifier(key)))
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} text)").format(child, sql.Identifier(key)))
        conn.execute(sql.SQL("INSERT INTO {} VALUES ('p1'), ('u1')").format(parent))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'p1'), (2, 'gone'), (3, NULL), (4, 'u2')").format(child))
    before = snapshot(nextauth_url)
    rule = {"table": child.as_string(None)[1:-1].replace('""', '"'), "column": key,
            "parentTable": parent.as_string(None)[1:-1].replace('""', '"'), "parentColumn": key}  # fmt: skip
    monkeypatch.setenv("ORPHAN_RULES", json.dumps([rule]))
    result = clean_orphaned_records(database_for(nextauth_url), OrphanSettings.from_env(), Budget())
    assert result["count"] == 2  # 'gone' and 'u2' match no parent row; NULL is no orphan
    with connect(nextauth_url) as conn:
        assert {row[0] for row in conn.execute(sql.SQL("SELECT id FROM {}").format(child))} == {1, 3}
    assert snapshot(nextauth_url) == before


# --------------------------------------------------------------------------- SQL: query parameters


@PROPERTY
@given(params=st.dictionaries(st.sampled_from(["dryRun", "routines", "force"]) | st.text(max_size=20),
                              st.text(max_size=60) | st.none() | st.integers(), max_size=4))  # fmt: skip
def test_query_parameters_become_closed_values_or_a_400(params):
    """Nothing of a query string reaches SQL as text: the options are booleans and known routine names."""
    try:
        options = parse_options(params)
    except HttpError as exc:
        assert exc.status == 400
        return
    assert isinstance(options, HealOptions)
    assert type(options.dry_run) is bool and type(options.force) is bool
    assert options.routines and set(options.routines) <= set(ROUTINES)


def _heal_handler():
    properties = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]["HealFunction"]["Properties"]
    module_name, attribute = properties["Handler"].rsplit(".", 1)
    spec = importlib.util.spec_from_file_location(
        "injection_heal_app", ROOT / properties["CodeUri"] / f"{module_name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, attribute)


CONTEXT = SimpleNamespace(function_name="InjectionTest", memory_limit_in_mb=256, aws_request_id="req-injection",
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:InjectionTest",
                          get_remaining_time_in_millis=lambda: 60_000)  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        {"routines": 'sessions;DROP TABLE "User"'},
        {"routines": "sessions,orphans' OR '1'='1"},
        {"dryRun": 'false; DELETE FROM "User"'},
        {"force": "true'--"},
        {"dryRun": "true", 'sessions\'; DROP TABLE "Session"; --': "1"},
    ],
)
def test_sql_in_the_heal_query_string_is_a_400_and_changes_nothing(nextauth_url, monkeypatch, closed_port, query):
    monkeypatch.setenv("DATABASE_URL", nextauth_url)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port}/0")
    monkeypatch.setenv("QUEUE_NAMES", "default")
    before = snapshot(nextauth_url)
    response = _heal_handler()(load_event("heal-api", queryStringParameters=query), CONTEXT)
    assert response["statusCode"] == 400 and json.loads(response["body"])["parameter"] in query
    assert snapshot(nextauth_url) == before


# --------------------------------------------------------------------------- Redis keys


def queue_settings(monkeypatch, names: str, prefix: str | None = None, high: str | None = None) -> QueueSettings:
    monkeypatch.setenv("QUEUE_NAMES", names)
    for variable, value in (("BULLMQ_PREFIX", prefix), ("HIGH_PRIORITY_QUEUE", high)):
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    return QueueSettings.from_env()


@pytest.mark.parametrize(
    "name",
    ["a:b", "bull:other", "x:", ":x", "{x}", "{bull}", "a{b", "a}b", "a\nb", "a\rb", "a\tb", "a b", "a\u2028b",
     "a\x0bb", "q" * 201],
)  # fmt: skip
def test_queue_names_that_could_leave_their_queue_are_refused(monkeypatch, name):
    with pytest.raises(ConfigurationError) as raised:
        queue_settings(monkeypatch, f"default,{name}")
    assert raised.value.variable == "QUEUE_NAMES" and name.strip() not in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        queue_settings(monkeypatch, "default", high=name)
    assert raised.value.variable == "HIGH_PRIORITY_QUEUE"


@pytest.mark.parametrize(
    "prefix",
    ["bull:default", "bull:", ":bull", "*", "bull*", "b?ll", "[b]ull", "bull\nx", "{bull", "bull}", "{bull}x",
     "x{bull}", "{bu:ll}", "{}", "bu ll", "b" * 101],
)  # fmt: skip
def test_prefixes_that_could_alias_other_keys_are_refused(monkeypatch, prefix):
    with pytest.raises(ConfigurationError) as raised:
        queue_settings(monkeypatch, "default", prefix=prefix)
    assert raised.value.variable == "BULLMQ_PREFIX"


@PROPERTY
@given(
    name=st.text(st.characters(exclude_characters=",\x00", exclude_categories=["Cs"]), min_size=1, max_size=40),
    prefix=st.sampled_from(["bull", "{bull}", "my-app.prod", "{tenant_1}"]),
)
def test_every_accepted_queue_name_addresses_only_its_own_keys(monkeypatch, name, prefix):
    try:
        settings_ = queue_settings(monkeypatch, name, prefix=prefix, high="default")
    except ConfigurationError:
        assert re.search(r"[\s:{}]", name.strip()) or not name.strip()
        return
    (accepted,) = settings_.queue_names
    assert not re.search(r"[\s:{}]", accepted)
    for key_type in _SCRIPT_KEY_TYPES:
        key = queue_key(settings_.prefix, accepted, key_type)
        assert key.split(":") == [prefix, accepted, key_type], key
        if prefix.startswith("{"):  # Redis Cluster: every key of every queue in the prefix's hash slot
            assert key[key.index("{") + 1 : key.index("}")] == prefix[1:-1]


def test_glob_characters_in_queue_names_are_literal_never_patterns(monkeypatch):
    """``*``, ``?`` and ``[`` are accepted in queue names (BullMQ allows them) and are harmless: keys are
    only ever named exactly, never matched as patterns (no KEYS/SCAN), so they address no other queue."""
    prefix = unique_prefix("inject")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.rpush(queue_key(prefix, "ab", "wait"), "1", "2", "3")
        client.zadd(queue_key(prefix, "ab", "failed"), {"j1": 1})
        client.hset(queue_key(prefix, "ab", "meta"), "version", "bullmq:5.0.0")
        settings_ = queue_settings(monkeypatch, "a*,a?,[a]b,ab", prefix=prefix, high="ab")
        counts = job_counts(client, settings_.prefix, settings_.queue_names)
        assert counts["ab"]["waiting"] == 3 and counts["ab"]["failed"] == 1 and counts["ab"]["exists"] is True
        for name in ("a*", "a?", "[a]b"):
            assert counts[name]["exists"] is False and not any(counts[name][k] for k in ("waiting", "failed"))
    finally:
        cleanup(prefix)
        client.close()


# --------------------------------------------------------------------------- log lines


INJECTED = '{"level":"ERROR","message":"injected","correlation_id":"attacker","service":"HealFunction"}'
INJECTIONS = [
    f"abc\n{INJECTED}",
    f"abc\r\n{INJECTED}",
    f"abc\r{INJECTED}",
    f"abc\u2028{INJECTED}",
    f"abc\x85{INJECTED}",
    f"{INJECTED}",
    "abc\n[HealFunction] [attacker] Injected text line",
]


def _handler(function_dir: str):
    spec = importlib.util.spec_from_file_location(
        f"injection_{function_dir}", ROOT / "functions" / function_dir / "app.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.handler


def _events(raw: str) -> dict[str, tuple[str, dict]]:
    sns = load_event("sns-alert")
    sns["Records"][0]["Sns"]["MessageAttributes"]["x-correlation-id"]["Value"] = raw
    sns["Records"][0]["Sns"]["Message"] = "{}"  # no alert: "Rejected SNS record" is logged
    return {
        "api": ("heal", load_event("heal-api", headers={"x-correlation-id": raw}, queryStringParameters={"x": "1"})),
        "authorizer": ("admin_authorizer", load_event("admin-authorizer", headers={"x-correlation-id": raw,
                                                                                   "authorization": "Bearer x"})),
        "sns": ("alerts", sns),
        "schedule": ("heal", load_event("heal-schedule", id=raw, detail={"dryRun": "maybe"})),
    }  # fmt: skip


@pytest.fixture
def offline_env(monkeypatch, closed_port):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:injection-pw@127.0.0.1:{closed_port}/x")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port}/0")
    monkeypatch.setenv("QUEUE_NAMES", "default")
    monkeypatch.setenv("ADMIN_API_TOKEN", "injection-admin-token-0001")
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("DISCORD_WEBHOOK_URL", raising=False)


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("raw", INJECTIONS, ids=["lf", "crlf", "cr", "u2028", "nel", "bare-json", "text-line"])
@pytest.mark.parametrize("trigger", ["api", "authorizer", "sns", "schedule"])
def test_a_correlation_id_never_injects_a_log_line(offline_env, monkeypatch, capsys, trigger, raw, log_format):
    monkeypatch.setenv("LOG_FORMAT", log_format)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "HealFunction")
    logs.create_logger.cache_clear()
    function_dir, event = _events(raw)[trigger]
    handler = _handler(function_dir)
    capsys.readouterr()
    response = handler(copy.deepcopy(event), CONTEXT)
    output = capsys.readouterr().out
    lines = output.splitlines()  # splitlines() also splits at \r, \x85, \u2028: the strictest reading
    assert lines, "the rejection must be logged"
    for line in lines:
        assert "injected" not in line.lower() and "attacker" not in line, f"injected log line: {line!r}"
        if log_format == "json":
            record = json.loads(line)
            assert VALID_ID.fullmatch(record["correlation_id"]) and record["correlation_id"] != "attacker"
        else:
            assert re.fullmatch(r"\[[A-Za-z]+\] \[[0-9a-f-]{8}\] [A-Z][^\n]*", line), f"injected line: {line!r}"
    if isinstance(response, dict) and "headers" in response:
        assert VALID_ID.fullmatch(response["headers"]["x-correlation-id"])


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_user_text_in_log_fields_never_injects_a_log_line(offline_env, monkeypatch, capsys, log_format):
    """An alert's title is logged ("INFO alert dropped ..."): its newlines stay inside one escaped line."""
    monkeypatch.setenv("LOG_FORMAT", log_format)
    monkeypatch.setenv("STAGE", "prod")  # INFO alerts are dropped (and logged) outside dev: nothing is sent
    logs.create_logger.cache_clear()
    body = json.dumps({"severity": "INFO", "title": f"Deployed\n{INJECTED}\r\n{INJECTED}", "message": "x\u2028y"})
    handler = _handler("alerts")
    capsys.readouterr()
    response = handler(load_event("alerts-api", body=body), CONTEXT)
    assert response["statusCode"] == 200
    lines = capsys.readouterr().out.splitlines()
    assert any("INFO alert dropped" in line for line in lines)
    for line in lines:
        assert not line.startswith('{"level":"ERROR","message":"injected"'), line
        if log_format == "json":
            assert json.loads(line)["level"] == "INFO"
        else:
            assert line.startswith("["), line


@PROPERTY
@given(raw=st.text(max_size=200) | st.binary(max_size=50).map(lambda b: b.decode("latin-1")))
def test_from_event_only_ever_yields_a_safe_id(raw):
    for event in ({"headers": {"X-Correlation-Id": raw}, "requestContext": {}}, {"detail-type": "x", "id": raw},
                  {"Records": [{"Sns": {"MessageAttributes": {"x-correlation-id": {"Value": raw}}}}]}):  # fmt: skip
        found = correlation.from_event(event)
        assert VALID_ID.fullmatch(found)
        assert found == raw or not VALID_ID.fullmatch(raw)
