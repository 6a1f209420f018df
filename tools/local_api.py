"""`make api`: the template's HttpApi routes on 127.0.0.1, like `sam local start-api` without Docker.

Routes come from the built template's ``HttpApi`` events (``.aws-sam/local``, see
`make build`). Each HTTP request becomes an API Gateway payload-2.0 event; a
protected route first runs its Lambda authorizer (REQUEST, payload 2.0, simple
responses); the route's function runs in a warm execution environment under the
Lambda Runtime Interface Emulator, and its payload-2.0 response becomes the HTTP
response. Requests are logged to stderr as ``METHOD path status ms``.

Concurrency is Lambda's: each function has a pool of execution environments,
each serving one invocation at a time, started only when a request finds every
environment of the pool busy. A pool holds at most the function's
``ReservedConcurrentExecutions`` (resolved against the template's parameters,
``--parameter-overrides`` and the env-vars file's ``Parameters``, as the
environment variables are), or ``--max-environments`` when unreserved; a request
that finds the pool full and busy is throttled: 429 ``{"message":"Too Many
Requests"}``.

    python tools/local_api.py --port 3000 --env-vars env.json [--max-environments 10]
        [--parameter-overrides PublicHealthReservedConcurrency=3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from lambda_emulator import (
    BUILD_DIR,
    PSEUDO_PARAMETERS,
    Emulator,
    EmulatorError,
    Invocation,
    load_function,
    parse_overrides,
    read_env_file,
)
from services import ServiceUnavailable, postgres_url, redact, redis_url

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's HTTP API payload limit
API_ID = "local"
STAGE = "$default"
DEFAULT_ROUTE = "$default"
TEXT_SUBTYPES = ("json", "xml", "javascript", "x-www-form-urlencoded", "graphql", "yaml", "csv")
HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})
DEFAULT_MAX_ENVIRONMENTS = 10  # per unreserved function (Lambda's unreserved pool is the account's, 1000 by default)


class Route(NamedTuple):
    method: str  # GET, POST, ..., or ANY
    path: str  # /api/items/{id}, /files/{proxy+} or $default
    function: str  # logical ID
    authorizer: str | None  # authorizer name; None for Authorizer: NONE

    @property
    def key(self) -> str:
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"


@dataclass(frozen=True)
class Authorizer:
    name: str
    function: str
    identity_headers: tuple[str, ...] = ()
    identity_query: tuple[str, ...] = ()


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    problem: str | None = None  # why the gateway answered 500, for the request log


def gateway_response(status: int, message: str, problem: str | None = None) -> Response:
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return Response(status, [("content-type", "application/json")], body, problem)


class FunctionFailed(Exception):
    pass


class Throttled(Exception):
    """Every execution environment the function may have is busy (Lambda's TooManyRequestsException)."""


# --------------------------------------------------------------------------- routes


def _get_att_target(value: Any) -> str | None:
    target = value.get("Fn::GetAtt") if isinstance(value, dict) else None
    if isinstance(target, str):
        target = target.split(".")
    return target[0] if isinstance(target, list) and target else None


def _authorizer(name: str, config: Any, resources: Mapping[str, Any]) -> Authorizer:
    if not isinstance(config, dict):
        raise EmulatorError(f"authorizer {name!r} is not defined in the HttpApi's Auth.Authorizers")
    function = _get_att_target(config.get("FunctionArn"))
    if function not in resources:
        raise EmulatorError(f"authorizer {name!r}: only Lambda authorizers of a function in the template are served")
    if str(config.get("AuthorizerPayloadFormatVersion")) != "2.0" or not config.get("EnableSimpleResponses"):
        raise EmulatorError(f"authorizer {name!r}: only payload 2.0 with simple responses is served")
    identity = config.get("Identity") or {}
    return Authorizer(name, function, tuple(identity.get("Headers", ())), tuple(identity.get("QueryStrings", ())))


def read_routes(template: Mapping[str, Any]) -> tuple[list[Route], dict[str, Authorizer]]:
    """Every HttpApi event of every function, with its authorizer (the API's DefaultAuthorizer unless NONE)."""
    resources = template.get("Resources", {})
    api_globals = template.get("Globals", {}).get("HttpApi", {})
    routes: list[Route] = []
    authorizers: dict[str, Authorizer] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            api_ref = (props.get("ApiId") or {}).get("Ref")
            api = {**api_globals, **(resources.get(api_ref, {}).get("Properties", {}) if api_ref else {})}
            auth = api.get("Auth") or {}
            name = (props.get("Auth") or {}).get("Authorizer", auth.get("DefaultAuthorizer"))
            if name in (None, "NONE"):
                name = None
            elif name not in authorizers:
                authorizers[name] = _authorizer(name, (auth.get("Authorizers") or {}).get(name), resources)
            method = str(props.get("Method", "ANY")).upper()
            routes.append(Route("ANY" if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" else method,
                                props.get("Path", DEFAULT_ROUTE), logical_id, name))  # fmt: skip
    return routes, authorizers


def template_parameters(
    template: Mapping[str, Any], overrides: Mapping[str, str] | None = None, env_vars: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Parameter values as lambda_emulator.load_function resolves them: defaults, overrides, env-vars ``Parameters``."""
    parameters = {name: str(spec.get("Default", "")) for name, spec in (template.get("Parameters") or {}).items()}
    parameters.update(overrides or {})
    if env_vars and isinstance(env_vars.get("Parameters"), dict):
        parameters.update({name: str(value) for name, value in env_vars["Parameters"].items()})
    return parameters


class _Intrinsics:
    """The intrinsics a ``ReservedConcurrentExecutions`` can use: Ref, Fn::If and the condition functions."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self.parameters = parameters
        self.conditions = template.get("Conditions") or {}

    def value(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((name, argument),) = node.items()
            if name == "Ref":
                if argument == "AWS::NoValue":
                    return None
                if argument in self.parameters:
                    return self.parameters[argument]
                if argument in PSEUDO_PARAMETERS:
                    return PSEUDO_PARAMETERS[argument]
                raise EmulatorError(f"cannot resolve Ref {argument!r} locally")
            if name == "Fn::If":
                condition, when_true, when_false = argument
                return self.value(when_true if self.condition(condition) else when_false)
            if name == "Fn::Join":
                separator, items = argument
                items = self.value(items)
                return separator.join(str(self.value(item)) for item in items)
            if name == "Fn::Select":
                index, items = argument
                return self.value(self.value(items)[int(self.value(index))])
            raise EmulatorError(f"cannot resolve {name} locally")
        if isinstance(node, list):
            return [self.value(item) for item in node]
        return node

    def condition(self, node: Any) -> bool:
        if isinstance(node, str):
            return self.condition(self.conditions[node])
        ((name, argument),) = node.items()
        if name == "Condition":
            return self.condition(argument)
        if name == "Fn::Equals":
            left, right = (self.value(item) for item in argument)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not self.condition(argument[0])
        if name == "Fn::And":
            return all(self.condition(item) for item in argument)
        if name == "Fn::Or":
            return any(self.condition(item) for item in argument)
        raise EmulatorError(f"cannot evaluate condition function {name} locally")


def reserved_concurrency(
    template: Mapping[str, Any], parameters: Mapping[str, str], functions: set[str] | None = None
) -> dict[str, int | None]:
    """Each function's ``ReservedConcurrentExecutions`` (None: unreserved), parameters resolved."""
    resources = template.get("Resources") or {}
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    intrinsics = _Intrinsics(template, parameters)
    reserved: dict[str, int | None] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function" or logical_id not in (functions or resources):
            continue
        default = globals_.get("ReservedConcurrentExecutions")
        node = (resource.get("Properties") or {}).get("ReservedConcurrentExecutions", default)
        value = intrinsics.value(node)
        if value in (None, ""):
            reserved[logical_id] = None
            continue
        try:
            reserved[logical_id] = int(value)
        except (TypeError, ValueError):
            raise EmulatorError(f"{logical_id}: ReservedConcurrentExecutions {value!r} is not a number") from None
        if reserved[logical_id] < 0:
            raise EmulatorError(f"{logical_id}: ReservedConcurrentExecutions {value!r} is negative")
    return reserved


class _RouteMatcher:
    """API Gateway's choice: exact paths before {param} paths before {greedy+} paths, a method before ANY."""

    def __init__(self, routes: list[Route]) -> None:
        compiled = [(route, *self._compile(route.path)) for route in routes]
        self._routes = sorted(compiled, key=lambda item: self._specificity(item[0], item[2]))

    @staticmethod
    def _compile(path: str) -> tuple[re.Pattern[str], list[str]]:
        if path == DEFAULT_ROUTE:
            return re.compile(r".*", re.S), []
        names: list[str] = []
        parts = []
        for segment in path.split("/"):
            variable = re.fullmatch(r"\{([^{}+]+)(\+?)\}", segment)
            if variable is None:
                parts.append(re.escape(segment))
            else:
                names.append(variable[1])
                parts.append("(.+)" if variable[2] else "([^/]+)")
        return re.compile("/".join(parts)), names

    @staticmethod
    def _specificity(route: Route, names: list[str]) -> tuple[bool, bool, int, bool]:
        return route.path == DEFAULT_ROUTE, route.path.endswith("+}"), len(names), route.method == "ANY"

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route, pattern, names in self._routes:
            if route.method in (method, "ANY") and (found := pattern.fullmatch(path)):
                return route, dict(zip(names, found.groups(), strict=True))
        return None


# --------------------------------------------------------------------------- events and responses


@dataclass
class Request:
    method: str
    target: str  # path?query as received
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str
    port: int


def _is_text(content_type: str) -> bool:
    media, _, params = content_type.lower().partition(";")
    main, _, sub = media.strip().partition("/")
    charset = next((p.split("=", 1)[1].strip(' "') for p in params.split(";") if p.strip().startswith("charset=")), "")
    if charset and charset.replace("-", "") != "utf8":
        return False
    return not media.strip() or main == "text" or sub.endswith(("+json", "+xml")) or sub in TEXT_SUBTYPES


def _joined(pairs: list[tuple[str, str]]) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def new_request_id() -> str:
    return base64.b64encode(secrets.token_bytes(11)).decode()  # API Gateway's shape: 16 characters


def build_event(request: Request, route: Route, path_parameters: dict[str, str], request_id: str) -> dict[str, Any]:
    """The payload-2.0 event of ``request`` (without ``authorizer``, which the authorizer decides)."""
    parts = urlsplit(request.target)
    raw_path = parts.path or "/"
    cookies = [c.strip() for name, value in request.headers if name.lower() == "cookie" for c in value.split(";")]
    headers = _joined([(name.lower(), value) for name, value in request.headers if name.lower() != "cookie"])
    forwarded_for = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded_for}, {request.source_ip}" if forwarded_for else request.source_ip
    headers.update({"x-forwarded-port": str(request.port), "x-forwarded-proto": "http"})
    domain_name = headers.get("host", "127.0.0.1").rsplit(":", 1)[0]
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": raw_path,
        "rawQueryString": parts.query,
        "headers": headers,
        "requestContext": {
            "accountId": PSEUDO_PARAMETERS["AWS::AccountId"],
            "apiId": API_ID,
            "domainName": domain_name,
            "domainPrefix": domain_name.split(".")[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.key,
            "stage": STAGE,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies := [c for c in cookies if c]:
        event["cookies"] = cookies
    if parts.query:
        event["queryStringParameters"] = _joined(parse_qsl(parts.query, keep_blank_values=True))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if request.body:
        try:
            text = request.body.decode() if _is_text(headers.get("content-type", "")) else None
        except UnicodeDecodeError:
            text = None
        event["body"] = text if text is not None else base64.b64encode(request.body).decode()
        event["isBase64Encoded"] = text is None
    return event


def authorizer_event(event: dict[str, Any], identity: list[str], method: str) -> dict[str, Any]:
    """The REQUEST authorizer's payload-2.0 event for the route event ``event``."""
    fields = {key: value for key, value in event.items() if key not in ("body", "isBase64Encoded")}
    region, account = PSEUDO_PARAMETERS["AWS::Region"], PSEUDO_PARAMETERS["AWS::AccountId"]
    route_arn = f"arn:aws:execute-api:{region}:{account}:{API_ID}/{STAGE}/{method}{event['rawPath']}"
    return {"version": "2.0", "type": "REQUEST", "routeArn": route_arn, "identitySource": identity, **fields}


def _function_payload(raw: bytes) -> Any:
    """The function's JSON result; FunctionFailed for an error (errorType/errorMessage) or no JSON at all."""
    if not raw:
        raise FunctionFailed("no response")
    try:
        payload = json.loads(raw)
    except ValueError:  # e.g. the emulator's "Task timed out after 10.00 seconds"
        raise FunctionFailed(raw.decode("utf-8", "replace")[:200]) from None
    if isinstance(payload, dict) and "statusCode" not in payload and {"errorType", "errorMessage"} <= payload.keys():
        raise FunctionFailed(f"{payload['errorType']}: {payload['errorMessage']}")
    return payload


def http_response(raw: bytes) -> Response:
    """A payload-2.0 function result as HTTP: ``{statusCode, headers, cookies, body, ...}`` or any JSON (200)."""
    payload = _function_payload(raw)
    if not (isinstance(payload, dict) and "statusCode" in payload):
        return Response(200, [("content-type", "application/json")], raw)
    try:
        status = int(payload["statusCode"])
    except (TypeError, ValueError):
        raise FunctionFailed(f"invalid statusCode {payload['statusCode']!r}") from None
    headers = [(str(name), str(value)) for name, value in (payload.get("headers") or {}).items()]
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        headers += [(str(name), str(value)) for value in values]
    headers += [("set-cookie", str(cookie)) for cookie in payload.get("cookies") or ()]
    body = payload.get("body")
    text = body if isinstance(body, str) else "" if body is None else json.dumps(body)
    try:
        content = base64.b64decode(text, validate=True) if payload.get("isBase64Encoded") else text.encode()
    except ValueError:
        raise FunctionFailed("isBase64Encoded body is not base64") from None
    return Response(status, [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP], content)


# --------------------------------------------------------------------------- the API


class _Pool:
    """The execution environments of one function: idle ones, and how many exist (busy, idle or starting)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.idle: list[Emulator] = []
        self.size = 0
        self.peak = 0
        self.started = 0
        self.throttled = 0

    def stats(self) -> dict[str, int]:
        return {"limit": self.limit, "environments": self.size, "peak": self.peak, "started": self.started,
                "throttled": self.throttled}  # fmt: skip


class _Environments:
    """Lambda's concurrency: per function up to ``limit`` environments, started on demand, one invocation each."""

    def __init__(self, start: Callable[[str], Emulator], limits: Mapping[str, int], wait_s: float = 0.0) -> None:
        self._start = start
        self._lock = threading.Condition()
        self._pools = {function: _Pool(limit) for function, limit in limits.items()}
        self._live: dict[Emulator, str] = {}  # every environment not yet stopped -> its function
        self._stopped = False
        self._wait_s = wait_s

    def invoke(self, function: str, event: dict[str, Any]) -> Invocation:
        pool = self._pools[function]
        with self._lock:
            give_up = time.monotonic() + self._wait_s
            while True:
                if self._stopped:
                    raise EmulatorError("the local API is stopping")
                if pool.idle:
                    emulator: Emulator | None = pool.idle.pop()  # the most recently used one
                    break
                if pool.size < pool.limit:
                    emulator = None
                    pool.size += 1
                    pool.peak = max(pool.peak, pool.size)
                    break
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    pool.throttled += 1
                    raise Throttled(f"{function}: {pool.size} of {pool.limit} environments busy")
                self._lock.wait(remaining)
        try:
            if emulator is not None and emulator.process is not None and emulator.process.poll() is not None:
                self._forget(emulator)  # it crashed after its last invocation: a new one in its place
                emulator = None
            if emulator is None:
                emulator = self._start(function)
                with self._lock:
                    pool.started += 1
                    self._live[emulator] = function
        except BaseException:
            with self._lock:
                pool.size -= 1
                self._lock.notify_all()
            raise
        try:
            return emulator.invoke(event)
        finally:
            with self._lock:
                stopped = self._stopped
                if not stopped:
                    pool.idle.append(emulator)
                    self._lock.notify_all()
            if stopped:
                self._forget(emulator)

    def _forget(self, emulator: Emulator) -> None:
        emulator.stop()
        with self._lock:
            self._live.pop(emulator, None)

    @property
    def warm(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._live.values())

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {function: pool.stats() for function, pool in self._pools.items()}

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
            emulators = list(self._live)
            self._live.clear()
            for pool in self._pools.values():
                pool.idle.clear()
        for emulator in emulators:
            emulator.stop()


# Called with (api, request, response) for every answer of any LocalApi, the gateway's own (401, 404, 429, ...)
# included (the e2e tier checks each against openapi.yaml); an observer must not raise.
_observers: list[Callable[[LocalApi, Request, Response], None]] = []


def add_observer(observer: Callable[[LocalApi, Request, Response], None]) -> None:
    _observers.append(observer)


def remove_observer(observer: Callable[[LocalApi, Request, Response], None]) -> None:
    _observers.remove(observer)


class LocalApi:
    """The template's HttpApi on ``host:port`` (0: any free port)."""

    def __init__(
        self,
        build_dir: Path = BUILD_DIR,
        env_vars: dict | None = None,
        extra_env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        function_logs: bool = False,
        max_environments: int = DEFAULT_MAX_ENVIRONMENTS,
        parameter_overrides: dict[str, str] | None = None,
        request_log: bool = True,
        wait_for_environment_s: float = 0.0,
    ) -> None:
        """``wait_for_environment_s``: how long a request that finds every environment of its function busy
        waits for one before it is throttled (0, the default: at once, as Lambda does; a harness that wants
        requests queued behind a fixed number of environments sets it)."""
        from samcli.yamlhelper import yaml_parse

        template_path = Path(build_dir) / "template.yaml"
        if not template_path.exists():
            raise EmulatorError(f"{template_path} not found: run `make build` first")
        self.build_dir = Path(build_dir)
        self.env_vars = env_vars or {}
        self.extra_env = extra_env or {}
        self.host, self.port = host, port
        self.function_logs = function_logs
        self.request_log = request_log
        self.parameter_overrides = parameter_overrides or {}
        if max_environments < 1:
            raise EmulatorError("max_environments must be at least 1")
        template = yaml_parse(template_path.read_text())
        self.routes, self.authorizers = read_routes(template)
        self._matcher = _RouteMatcher(self.routes)
        functions = {route.function for route in self.routes} | {a.function for a in self.authorizers.values()}
        parameters = template_parameters(template, self.parameter_overrides, self.env_vars)
        self.reserved = reserved_concurrency(template, parameters, functions)
        self.limits = {f: max_environments if self.reserved[f] is None else self.reserved[f] for f in functions}
        self._environments = _Environments(self._start_environment, self.limits, wait_for_environment_s)
        self._server: ThreadingHTTPServer | None = None

    def _start_environment(self, function: str) -> Emulator:
        spec = load_function(function, self.build_dir, self.parameter_overrides, env_vars=self.env_vars)
        return Emulator(spec, extra_env=self.extra_env).start()

    def _invoke(self, function: str, event: dict[str, Any]) -> bytes:
        invocation = self._environments.invoke(function, event)
        if self.function_logs:
            sys.stderr.write("".join(f"  {function}: {line}\n" for line in invocation.logs))
        return invocation.raw

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalApi is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def warm_functions(self) -> frozenset[str]:
        """The functions with at least one execution environment started (for tests and the curious)."""
        return self._environments.warm

    def environment_stats(self) -> dict[str, dict[str, int]]:
        """Per function: ``limit``, ``environments`` now, their ``peak``, how many ``started``, ``throttled``."""
        return self._environments.stats()

    def start(self) -> LocalApi:
        server = _Server((self.host, self.port), _RequestHandler)
        server.api = self
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.1,), name="local-api", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._environments.stop()

    def __enter__(self) -> LocalApi:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def respond(self, request: Request) -> Response:
        """What API Gateway would answer to ``request``."""
        request_id = new_request_id()
        response = self._route(request, request_id)
        response.headers.append(("apigw-requestid", request_id))
        for observer in tuple(_observers):
            observer(self, request, response)
        return response

    def _route(self, request: Request, request_id: str) -> Response:
        matched = self._matcher.match(request.method, urlsplit(request.target).path or "/")
        if matched is None:
            return gateway_response(404, "Not Found")
        route, path_parameters = matched
        event = build_event(request, route, path_parameters, request_id)
        try:
            if route.authorizer is not None:
                denial = self._authorize(self.authorizers[route.authorizer], event, request.method)
                if denial is not None:
                    return denial
            return http_response(self._invoke(route.function, event))
        except Throttled as exc:
            return gateway_response(429, "Too Many Requests", str(exc))
        except (FunctionFailed, EmulatorError, OSError) as exc:
            return gateway_response(500, "Internal Server Error", f"{route.function}: {exc}")

    def _authorize(self, authorizer: Authorizer, event: dict[str, Any], method: str) -> Response | None:
        """None when allowed (``event`` then carries the authorizer's context); else the gateway's answer."""
        query = event.get("queryStringParameters") or {}
        identity = [event["headers"].get(name.lower(), "") for name in authorizer.identity_headers]
        identity += [query.get(name, "") for name in authorizer.identity_query]
        if not all(identity):  # a missing identity source: 401 without calling the authorizer
            return gateway_response(401, "Unauthorized")
        raw = self._invoke(authorizer.function, authorizer_event(event, identity, method))
        decision = _function_payload(raw)
        if not (isinstance(decision, dict) and isinstance(decision.get("isAuthorized"), bool)):
            raise FunctionFailed(f"authorizer {authorizer.name}: invalid simple response")
        if not decision["isAuthorized"]:
            return gateway_response(403, "Forbidden")
        event["requestContext"]["authorizer"] = {"lambda": decision.get("context") or {}}
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops the connections of a burst of clients
    api: LocalApi


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "local-api"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall per keep-alive request

    def _body(self) -> bytes | None:
        """The request body; None when it exceeds MAX_BODY_BYTES (ValueError when malformed)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                if len(body) + size > MAX_BODY_BYTES:
                    return None
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return bytes(body)
        length = int(self.headers.get("content-length") or 0)
        if length < 0:
            raise ValueError("negative content-length")
        return None if length > MAX_BODY_BYTES else self.rfile.read(length)

    def _serve(self) -> None:
        started = time.monotonic()
        try:
            body = self._body()
        except ValueError:
            body = None
            response = gateway_response(400, "Bad Request")
        else:
            response = gateway_response(413, "Request Entity Too Large") if body is None else self._respond(body)
        if body is None:
            self.close_connection = True  # the rest of the body is still unread
        if self.server.api.request_log:
            elapsed_ms = (time.monotonic() - started) * 1000
            problem = f" ({response.problem})" if response.problem else ""
            path = urlsplit(self.path).path
            sys.stderr.write(f"{self.command} {path} {response.status} {elapsed_ms:.0f} ms{problem}\n")
        self._send(response)

    def _respond(self, body: bytes) -> Response:
        request = Request(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
            port=self.server.server_address[1],
        )
        return self.server.api.respond(request)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    # Every method reaches the route table (API Gateway answers a method no route has with 404, never 501).
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = do_QUERY = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # _serve logs one line per request (never the headers)


# --------------------------------------------------------------------------- CLI


def _given(env_vars: Mapping[str, Any], name: str) -> bool:
    return any(isinstance(section, dict) and section.get(name) for section in env_vars.values())


def service_urls(env_vars: Mapping[str, Any]) -> dict[str, str]:
    """DATABASE_URL/REDIS_URL from the environment, else the env-vars file, else found or started locally."""
    urls = {}
    for name, locate in (("DATABASE_URL", postgres_url), ("REDIS_URL", redis_url)):
        if os.environ.get(name) or not _given(env_vars, name):
            urls[name], where = locate()
            print(f"{name}: {redact(urls[name])} ({where})")
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=3000, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("-n", "--env-vars", help="env.json in the format of sam local start-api --env-vars")
    parser.add_argument("--build-dir", default=str(BUILD_DIR), help="the `make build` output")
    parser.add_argument("--max-environments", type=int, default=DEFAULT_MAX_ENVIRONMENTS, metavar="N",
                        help="execution environments per function without ReservedConcurrentExecutions "
                             f"(default {DEFAULT_MAX_ENVIRONMENTS})")  # fmt: skip
    parser.add_argument("--parameter-overrides", nargs="*", default=[], metavar="Name=Value",
                        help="template parameters, e.g. PublicHealthReservedConcurrency=5")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        env_vars = read_env_file(args.env_vars)
        api = LocalApi(Path(args.build_dir), env_vars, service_urls(env_vars), port=args.port, function_logs=True,
                       max_environments=args.max_environments,
                       parameter_overrides=parse_overrides(args.parameter_overrides))  # fmt: skip
        api.start()
    except (EmulatorError, ServiceUnavailable, OSError) as exc:
        print(f"local-api: {exc}", file=sys.stderr)
        return 1
    for route in api.routes:
        protection = f"  [{route.authorizer}]" if route.authorizer else ""
        reserved = "reserved" if api.reserved[route.function] is not None else "unreserved"
        limit = f"  (≤ {api.limits[route.function]} environments, {reserved})"
        print(f"  {route.method:<7} {route.path:<28} -> {route.function}{protection}{limit}")
    print(f"Serving on {api.url} (Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the environments on kill too
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
