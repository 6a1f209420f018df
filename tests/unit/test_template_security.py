"""Safe to put on the internet: a bounded footprint on PostgreSQL and Redis, throttled public routes, and
least privilege, checked on the template SAM really deploys (the transformed one), for every combination of
the optional parameters. Each check is a function returning the problems it finds; the tests run it on
template.yaml (no problem) and on a template broken on purpose (the problem is found)."""

from __future__ import annotations

import ast
import copy
import fnmatch
import itertools
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from sam_template import ACCOUNT, REGION, Evaluator, load, transform
from settings_catalog import module_path, modules_imported, variables_read

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
TEMPLATE = load()

# Connections one execution environment can hold (README, "Bounded footprint"), from the code: db.py keeps one
# connection per environment (get_database is cached per settings; the health db check runs one at a time),
# and each call site of Database.open_dedicated (the heal's advisory lock: a connection of its own, closed
# when the run ends) adds one more. redis-py's pool opens one connection per command in flight: every
# function uses its one cached client (bullmq.get_redis) from one thread at a time (the heal: the lock, then
# the routines; alerts: deduplication in the handler's thread); the aggregate (HealthFunction,
# MonitorFunction) stops waiting for its queue check at the invocation's deadline, but runs it through
# health.OneAtATime: until an abandoned check ends, the next invocation answers without starting another.
# test_every_place_that_opens_a_connection_is_counted and
# test_the_queue_checks_that_can_run_at_once_are_counted keep these places in view.
OPENS_POSTGRES = {"parel_monitoring.db": {"psycopg.connect"}}  # Database._connect, the only connect
# get_redis, cached per settings: a Redis client, or with REDIS_CLUSTER a RedisCluster (a pool per node).
OPENS_REDIS = {"parel_monitoring.bullmq": {"redis.Redis.from_url", "RedisCluster.from_url"}}
DEDICATED_POSTGRES = "open_dedicated"
STORE_SETTING = {"PostgreSQL": "DATABASE_URL", "Redis": "REDIS_URL"}
VPC_POLICY = "AWSLambdaVPCAccessExecutionRole"
TIMES = "\N{MULTIPLICATION SIGN}"


@cache
def transformed() -> dict[str, Any]:
    return transform(TEMPLATE)


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resource["Properties"] for name, resource in template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"}  # fmt: skip


def handler_file(template: dict[str, Any], function: str) -> Path:
    properties = functions(template)[function]
    return ROOT / properties["CodeUri"] / (properties["Handler"].split(".")[0] + ".py")


def stores_opened(template: dict[str, Any], function: str) -> set[str]:
    """The stores a function's code can open (it reads DATABASE_URL / REDIS_URL)."""
    read = variables_read(handler_file(template, function))
    return {store for store, setting in STORE_SETTING.items() if setting in read}


AGGREGATE = "parel_monitoring.health.aggregate"


def queue_checks_at_once() -> int:
    """Queue checks of one aggregate environment that can hold the Redis client at once: 1 while check_all
    waits for its queue check or runs it through ``OneAtATime`` (a check that outlives its invocation makes the
    next one answer at once); an executor's workers when it waits with a timeout (``.result(timeout=...)``),
    abandoning a check that can run beside the next one."""
    tree = ast.parse(module_path(AGGREGATE).read_text())
    abandons = any(
        isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".result") and node.keywords
        for node in ast.walk(tree)
    )
    workers = [
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "ThreadPoolExecutor"
        for keyword in node.keywords
        if keyword.arg == "max_workers"
    ]
    assert len(workers) == 1, "the aggregate's executor changed: recount its concurrent queue checks"
    return workers[0] if abandons else 1


@cache
def calls_in(module: str) -> list[str]:
    """Dotted names of the calls in a layer module (``psycopg.connect``, ``self.database.open_dedicated``)."""
    path = module_path(module)
    names = []
    for node in ast.walk(ast.parse(path.read_text()) if path else ast.Module(body=[], type_ignores=[])):
        if isinstance(node, ast.Call):
            names.append(ast.unparse(node.func))
    return names


def connections_per_environment(template: dict[str, Any], function: str, store: str) -> int:
    if store not in stores_opened(template, function):
        return 0
    modules = modules_imported(handler_file(template, function))
    if store == "Redis":
        return queue_checks_at_once() if AGGREGATE in modules else 1
    dedicated = sum(name.endswith(f".{DEDICATED_POSTGRES}") for module in modules for name in calls_in(module))
    return 1 + dedicated


# --------------------------------------------------------------------------- bounded footprint


def unbounded_functions(template: dict[str, Any]) -> list[str]:
    """Functions without reserved concurrency from a stack parameter of at least 1."""
    problems = []
    for name, properties in functions(template).items():
        reserved = properties.get("ReservedConcurrentExecutions")
        parameter = template["Parameters"].get(reserved.get("Ref")) if isinstance(reserved, dict) else None
        if not parameter or parameter.get("Type") != "Number" or int(parameter.get("MinValue", 0)) < 1:
            problems.append(f"{name}: ReservedConcurrentExecutions must be !Ref to a Number parameter, MinValue >= 1")
    return problems


def connection_bound(template: dict[str, Any], store: str) -> dict[str, int]:
    """The most connections the bundle can hold on ``store``: reserved-concurrency parameter -> coefficient."""
    terms: dict[str, int] = {}
    for name, properties in functions(template).items():
        if store in stores_opened(template, name):
            parameter = properties["ReservedConcurrentExecutions"]["Ref"]
            terms[parameter] = terms.get(parameter, 0) + connections_per_environment(template, name, store)
    return terms


def bound_sentence(template: dict[str, Any], store: str) -> str:
    """The README's line for ``store``: the formula and its value with the defaults."""
    terms = connection_bound(template, store)
    order = sorted(terms, key=lambda parameter: (-terms[parameter], parameter))
    formula = " + ".join(f"{terms[p]} {TIMES} `{p}`" if terms[p] > 1 else f"`{p}`" for p in order)
    total = sum(coefficient * int(template["Parameters"][p]["Default"]) for p, coefficient in terms.items())
    return f"- {store}: {formula} = **{total}** with the defaults"


def test_every_function_has_reserved_concurrency_from_a_parameter():
    assert not unbounded_functions(TEMPLATE)


def test_an_unbounded_database_function_is_found():
    broken = copy.deepcopy(TEMPLATE)
    del broken["Resources"]["HealthDbFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert [p for p in unbounded_functions(broken) if p.startswith("HealthDbFunction:")]


@pytest.mark.parametrize("store", sorted(STORE_SETTING))
def test_the_functions_that_open_each_store_are_found_in_the_code(store):
    """The bound is computed from what each function's code reads, not from a list kept by hand."""
    opening = {name for name in functions(TEMPLATE) if store in stores_opened(TEMPLATE, name)}
    assert {"HealthFunction", "MonitorFunction", "HealFunction"} <= opening
    assert "HealthAppFunction" not in opening and "DashboardFunction" not in opening


def test_every_place_that_opens_a_connection_is_counted():
    """A new psycopg.connect / redis client / dedicated connection anywhere in the layer must be counted above."""
    layer = ROOT / "layers" / "shared"
    found: dict[str, set[str]] = {}
    for path in sorted(layer.rglob("*.py")):
        module = ".".join(path.relative_to(layer).with_suffix("").parts).removesuffix(".__init__")
        for name in calls_in(module):
            if re.search(r"(psycopg|redis)\.(connect|Redis|StrictRedis|from_url|ConnectionPool)", name) or (
                "Redis" in name and "from_url" in name
            ):
                found.setdefault(module, set()).add(name)
    assert found == {**OPENS_POSTGRES, **OPENS_REDIS}
    dedicated = {m for m in map(lambda p: ".".join(p.relative_to(layer).with_suffix("").parts), layer.rglob("*.py"))
                 if any(n.endswith(f".{DEDICATED_POSTGRES}") for n in calls_in(m))}  # fmt: skip
    heal = connections_per_environment(TEMPLATE, "HealFunction", "PostgreSQL")
    assert heal == 1 + len(dedicated & modules_imported(handler_file(TEMPLATE, "HealFunction")))
    assert connections_per_environment(TEMPLATE, "HealthDbFunction", "PostgreSQL") == 1


def test_the_queue_checks_that_can_run_at_once_are_counted():
    """HealthFunction and the sweep give up on a slow queue check at the deadline, but one at a time: a check
    that outlives its invocation makes the next one answer at once, so one Redis connection, not two."""
    assert queue_checks_at_once() == 1
    for function in ("HealthFunction", "MonitorFunction", "HealthQueueFunction"):
        assert connections_per_environment(TEMPLATE, function, "Redis") == 1, function


def test_the_reserved_concurrency_reaches_the_deployed_functions():
    deployed = {name: resource["Properties"] for name, resource in transformed()["Resources"].items()
                if resource["Type"] == "AWS::Lambda::Function"}  # fmt: skip
    for name, properties in functions(TEMPLATE).items():
        assert deployed[name]["ReservedConcurrentExecutions"] == properties["ReservedConcurrentExecutions"], name


@pytest.mark.parametrize("store", sorted(STORE_SETTING))
def test_readme_states_the_connection_bound_the_template_gives(store):
    sentence = bound_sentence(TEMPLATE, store)
    assert sentence in README, f"README's bound is missing or stale; the template gives:\n{sentence}"


def test_the_docs_state_the_reserved_concurrency_the_template_reserves_by_default():
    """Lambda keeps 100 of the account's concurrency unreserved: operators need the sum to size their quota."""
    parameters = TEMPLATE["Parameters"]
    reserved = [
        int(parameters[p["ReservedConcurrentExecutions"]["Ref"]]["Default"]) for p in functions(TEMPLATE).values()
    ]
    assert f" = {sum(reserved)} by default)" in README
    assert f"({sum(reserved)} by default)" in (ROOT / "docs" / "operations.md").read_text()


def test_the_stated_bound_changes_when_a_function_opens_a_store():
    broken = copy.deepcopy(TEMPLATE)
    broken["Resources"]["HealthDbFunction"]["Properties"]["ReservedConcurrentExecutions"] = {
        "Ref": "AlertsReservedConcurrency"
    }
    assert bound_sentence(broken, "PostgreSQL") not in README


def test_the_heal_gets_concurrency_for_a_second_run_to_see_the_lock():
    """A second heal run must reach the function (409 / logged skip from the run lock), not a throttle."""
    parameter = TEMPLATE["Resources"]["HealFunction"]["Properties"]["ReservedConcurrentExecutions"]["Ref"]
    assert int(TEMPLATE["Parameters"][parameter]["MinValue"]) >= 2


def public_routes(template: dict[str, Any]) -> set[str]:
    """Route keys (``GET /path``) whose HttpApi event opts out of the authorizer."""
    routes = set()
    for properties in functions(template).values():
        for event in properties.get("Events", {}).values():
            if event["Type"] == "HttpApi" and event["Properties"].get("Auth", {}).get("Authorizer") == "NONE":
                routes.add(f"{event['Properties']['Method']} {event['Properties']['Path']}")
    return routes


def throttling_problems(template: dict[str, Any]) -> list[str]:
    api = template["Resources"]["HttpApi"]["Properties"]
    parameters = template["Parameters"]
    problems = []

    def limits(settings: dict[str, Any] | None, where: str) -> tuple[int, int] | None:
        refs = [(settings or {}).get(key, {}) for key in ("ThrottlingRateLimit", "ThrottlingBurstLimit")]
        if not all(isinstance(ref, dict) and ref.get("Ref") in parameters for ref in refs):
            problems.append(f"{where}: rate and burst limits must be stack parameters")
            return None
        return tuple(int(parameters[ref["Ref"]]["Default"]) for ref in refs)

    stage = limits(api.get("DefaultRouteSettings"), "the stage (DefaultRouteSettings)")
    route_settings = api.get("RouteSettings", {})
    for route in sorted(public_routes(template)):
        route_limits = limits(route_settings.get(route), f"public route {route}")
        if stage and route_limits and (route_limits[0] > stage[0] or route_limits[1] > stage[1]):
            problems.append(f"public route {route}: its limits exceed the stage's")
    stray = set(route_settings) - public_routes(template)
    problems += [f"RouteSettings names {route}, which is not a public route" for route in sorted(stray)]
    return problems


def test_the_stage_and_every_public_route_are_throttled_by_parameters():
    assert len(public_routes(TEMPLATE)) == 7  # five health routes, the monitoring page and the contract
    assert not throttling_problems(TEMPLATE)


def test_an_unthrottled_public_route_is_found():
    broken = copy.deepcopy(TEMPLATE)
    del broken["Resources"]["HttpApi"]["Properties"]["RouteSettings"]["GET /api/health/db"]
    assert throttling_problems(broken) == [
        "public route GET /api/health/db: rate and burst limits must be stack parameters"
    ]


# --------------------------------------------------------------------------- least privilege


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document.get("Statement", [])
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed_resources(policy_statements: list[dict[str, Any]], action: str) -> set[str]:
    """Resources an Allow statement grants ``action`` on (IAM wildcards in the statement's actions honoured)."""
    found: set[str] = set()
    for statement in policy_statements:
        actions = [a.lower() for a in as_list(statement.get("Action", []))]
        if statement.get("Effect") == "Allow" and any(fnmatch.fnmatchcase(action, a) for a in actions):
            found.update(as_list(statement.get("Resource", [])))
    return found


def role_of(evaluator: Evaluator, template: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    role = evaluator.value(function["Role"]).removesuffix(".Arn")
    return evaluator.value(template["Resources"][role]["Properties"])


def role_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role.get("Policies", []) for s in statements(policy["PolicyDocument"])]


def access_problems(template: dict[str, Any], parameters: dict[str, str]) -> list[str]:
    """Every deployed function reads exactly the secrets / SSM parameters whose variables it has, and can
    decrypt them when they are under SecretsKmsKeyArn (through Secrets Manager only)."""
    evaluator = Evaluator(template, parameters)
    kms_key = parameters.get("SecretsKmsKeyArn", "")
    via_secrets_manager = f"secretsmanager.{REGION}.amazonaws.com"
    problems = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        function = resource["Properties"]
        variables = evaluator.value(function.get("Environment", {})).get("Variables", {})
        secrets = {value for key, value in variables.items() if key.endswith("_SECRET_ARN") and value}
        ssm = {value.lstrip("/") for key, value in variables.items() if key.endswith("_PARAMETER") and value}
        granted = role_statements(role_of(evaluator, template, function))
        readable = allowed_resources(granted, "secretsmanager:getsecretvalue")
        if readable != secrets:
            problems.append(f"{name}: reads secrets {sorted(readable)}, its variables name {sorted(secrets)}")
        readable_ssm = {arn.rsplit(":parameter/", 1)[-1] for arn in allowed_resources(granted, "ssm:getparameter")}
        if readable_ssm != ssm:
            problems.append(f"{name}: reads SSM parameters {sorted(readable_ssm)}, its variables name {sorted(ssm)}")
        decrypts = [s for s in granted if kms_key and kms_key in allowed_resources([s], "kms:decrypt")]
        if (secrets or ssm) and kms_key and not decrypts:
            problems.append(f"{name}: cannot decrypt its secrets under SecretsKmsKeyArn")
        for statement in decrypts:
            if statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService") != via_secrets_manager:
                problems.append(f"{name}: kms:Decrypt on SecretsKmsKeyArn without kms:ViaService {via_secrets_manager}")
    return problems


SECRET_PARAMETERS = sorted(name for name in TEMPLATE["Parameters"] if name.endswith("SecretArn"))


def deployments() -> list[dict[str, str]]:
    """Every combination of the secrets given or not, of HealthShowDetails, and of a customer managed key."""
    combinations = []
    for given in itertools.product((False, True), repeat=len(SECRET_PARAMETERS)):
        secrets = {name: f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf" if on else ""
                   for name, on in zip(SECRET_PARAMETERS, given, strict=True)}  # fmt: skip
        for details in TEMPLATE["Parameters"]["HealthShowDetails"]["AllowedValues"]:
            for kms in ("", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"):
                combinations.append({**secrets, "HealthShowDetails": details, "SecretsKmsKeyArn": kms})
    return combinations


def test_every_function_reads_exactly_the_secrets_it_has_variables_for():
    assert "MonitorDatabaseUrlSecretArn" in SECRET_PARAMETERS
    for parameters in deployments():
        problems = access_problems(transformed(), parameters)
        assert not problems, f"with {parameters}: {problems}"


def _sentry_and_database_given() -> dict[str, str]:
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
    return {"SentryDsnSecretArn": arn + "sentry", "DatabaseUrlSecretArn": arn + "db",
            "MonitorDatabaseUrlSecretArn": arn + "monitor-db"}  # fmt: skip


def test_a_function_that_cannot_read_its_secret_is_found():
    """DashboardFunction without its Sentry policy: /admin/monitor answered 500 once Sentry was configured."""
    broken = copy.deepcopy(TEMPLATE)
    del broken["Resources"]["DashboardFunction"]["Properties"]["Policies"]
    problems = access_problems(transform(broken), _sentry_and_database_given())
    assert any(p.startswith("DashboardFunction: reads secrets []") for p in problems), problems


def test_a_function_that_reads_a_secret_it_has_no_variable_for_is_found():
    """The heal's credential (it deletes rows) granted to a public health function."""
    broken = copy.deepcopy(TEMPLATE)
    broken["Resources"]["HealthAppFunction"]["Properties"]["Policies"].append(
        {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "DatabaseUrlSecretArn"}}}
    )
    problems = access_problems(transform(broken), _sentry_and_database_given())
    assert any(p.startswith("HealthAppFunction: reads secrets") for p in problems), problems


def test_the_health_routes_and_the_sweep_use_the_monitoring_credential_and_the_heal_the_main_one():
    evaluator = Evaluator(transformed(), _sentry_and_database_given())
    resources = transformed()["Resources"]
    for name, expected in {"HealthDbFunction": "monitor-db", "HealthFunction": "monitor-db",
                           "MonitorFunction": "monitor-db", "HealFunction": "db"}.items():  # fmt: skip
        variables = evaluator.value(resources[name]["Properties"]["Environment"])["Variables"]
        assert variables["DATABASE_URL_SECRET_ARN"].endswith(f":secret:{expected}"), name
    fallback = Evaluator(transformed(), {**_sentry_and_database_given(), "MonitorDatabaseUrlSecretArn": ""})
    variables = fallback.value(resources["HealthDbFunction"]["Properties"]["Environment"])["Variables"]
    assert variables["DATABASE_URL_SECRET_ARN"].endswith(":secret:db"), "no monitoring credential: the main one"


def vpc_problems(template: dict[str, Any], subnets: str) -> list[str]:
    evaluator = Evaluator(template, {"SubnetIds": subnets, "SecurityGroupIds": "sg-1" if subnets else ""})
    problems = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        in_vpc = bool(evaluator.value(resource["Properties"].get("VpcConfig", {})))
        role = role_of(evaluator, template, resource["Properties"])
        has_policy = any(arn.endswith(VPC_POLICY) for arn in role.get("ManagedPolicyArns", []))
        has_policy |= bool(allowed_resources(role_statements(role), "ec2:createnetworkinterface"))
        if in_vpc != has_policy:
            problems.append(f"{name}: in a VPC: {in_vpc}, network-interface permissions: {has_policy}")
    return problems


@pytest.mark.parametrize("subnets", ["", "subnet-1,subnet-2"])
def test_the_vpc_policy_only_when_a_vpc_is_configured(subnets):
    assert not vpc_problems(transformed(), subnets)


def test_an_unconditional_vpc_policy_is_found():
    """What SAM generates for a function whose VpcConfig is an !If: the policy whether or not a VPC is given."""
    broken = copy.deepcopy(TEMPLATE)
    function = broken["Resources"]["HealthDbFunction"]["Properties"]
    del function["Role"], broken["Resources"]["HealthDbFunctionRole"]
    function["Policies"] = []
    assert vpc_problems(transform(broken), "") == [
        "HealthDbFunction: in a VPC: False, network-interface permissions: True"
    ]


def service_grant_problems(template: dict[str, Any]) -> list[str]:
    """Every grant to an AWS service principal (trust policies, key and topic policies) is limited to this
    account (aws:SourceAccount or aws:SourceArn); Lambda's execution roles are exempt (Lambda sends neither)."""
    evaluator = Evaluator(template)
    problems = []
    for name, resource in template["Resources"].items():
        properties = evaluator.value(resource.get("Properties", {}))
        documents = [properties.get(key) for key in ("AssumeRolePolicyDocument", "KeyPolicy", "PolicyDocument")]
        for document in filter(None, documents):
            for statement in statements(document):
                services = set(as_list(statement.get("Principal", {}).get("Service", []))) - {"lambda.amazonaws.com"}
                if statement.get("Effect") != "Allow" or not services:
                    continue
                conditions = {k: v for c in statement.get("Condition", {}).values() for k, v in c.items()}
                if conditions.get("aws:SourceAccount") != ACCOUNT and "aws:SourceArn" not in conditions:
                    problems.append(f"{name}: {sorted(services)} without aws:SourceAccount")
        if resource["Type"] == "AWS::Lambda::Permission" and not (
            properties.get("SourceArn") or properties.get("SourceAccount")
        ):
            problems.append(f"{name}: a Lambda permission without SourceArn")
    return problems


def test_service_principals_act_only_for_this_account():
    assert not service_grant_problems(transformed())
    schedules = [r for r in transformed()["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]
    assert len(schedules) == 3  # the heal, the health sweep, the uptime probes


def test_a_schedule_role_sam_generates_is_found():
    """SAM's own ScheduleV2 role trusts scheduler.amazonaws.com with no condition."""
    broken = copy.deepcopy(TEMPLATE)
    del broken["Resources"]["MonitorFunction"]["Properties"]["Events"]["Sweep"]["Properties"]["RoleArn"]
    assert service_grant_problems(transform(broken)) == [
        "MonitorFunctionSweepRole: ['scheduler.amazonaws.com'] without aws:SourceAccount"
    ]


def test_readme_lists_every_new_deploy_parameter():
    deploy = README.split("## Deploy", 1)[1].split("\n## ", 1)[0]
    for parameter in [*SECRET_PARAMETERS, "SecretsKmsKeyArn"] + [
        name
        for name in TEMPLATE["Parameters"]
        if re.search(r"ReservedConcurrency|ThrottlingRateLimit|ThrottlingBurstLimit", name)
    ]:
        assert f"`{parameter}`" in deploy, f"README's Deploy section does not list {parameter}"
