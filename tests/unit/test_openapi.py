"""openapi.yaml: a valid OpenAPI 3.1 document, route for route the template's HttpApi, served unchanged by
OpenApiFunction; and the answer check (openapi_contract.response_problems) that the e2e tier applies to every
answer finds what does not conform."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

import openapi_contract
import sam_template
from events_loader import load_event
from parel_monitoring import __version__

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = openapi_contract.contract()
JSON = {"content-type": "application/json", "x-correlation-id": "c-1"}


def test_the_document_is_valid_openapi_3_1():
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    assert CONTRACT["openapi"].startswith("3.1.")
    validate(CONTRACT)
    broken = copy.deepcopy(CONTRACT)
    broken["paths"]["/api/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "objekt"
    }
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_the_contract_has_every_route_of_the_template_with_its_auth_and_nothing_else():
    template = openapi_contract.template_routes(sam_template.load())
    contract = openapi_contract.contract_routes(CONTRACT)
    assert template == contract, {"template only": template - contract, "contract only": contract - template}
    assert ("POST", "/api/admin/heal", "admin") in contract and ("GET", "/api/health", "none") in contract


def test_a_route_missing_from_the_contract_or_with_other_auth_is_found():
    template = openapi_contract.template_routes(sam_template.load())
    missing = copy.deepcopy(CONTRACT)
    del missing["paths"]["/api/admin/uptime"]
    assert template - openapi_contract.contract_routes(missing) == {("GET", "/api/admin/uptime", "admin")}
    public_heal = copy.deepcopy(CONTRACT)
    public_heal["paths"]["/api/admin/heal"]["post"]["security"] = [{}]
    assert ("POST", "/api/admin/heal", "none") in openapi_contract.contract_routes(public_heal) - template


def test_the_served_copy_is_openapi_yaml_and_its_version_the_layers():
    served = json.loads((ROOT / "functions" / "openapi" / "openapi.json").read_text(encoding="utf-8"))
    assert served == CONTRACT, "functions/openapi/openapi.json is stale: run `make functions/openapi/openapi.json`"
    assert CONTRACT["info"]["version"] == __version__


def _openapi_handler():
    spec = importlib.util.spec_from_file_location("openapi_app", ROOT / "functions" / "openapi" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def test_openapi_function_serves_the_contract_cacheable_and_answers_304_to_its_etag():
    handler = _openapi_handler()
    response = handler(load_event("openapi"), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == CONTRACT
    headers = response["headers"]
    assert headers["cache-control"] == "public, max-age=300" and headers["x-correlation-id"] == "demo-openapi-0001"
    assert not openapi_contract.response_problems("GET", "/api/openapi.json", 200, headers, response["body"])
    for if_none_match in (headers["etag"], f"W/{headers['etag']}", f'"other", {headers["etag"]}', "*"):
        again = handler(load_event("openapi", headers={"If-None-Match": if_none_match}), None)
        assert (again["statusCode"], again["body"], again["headers"]["etag"]) == (304, "", headers["etag"])
        assert not openapi_contract.response_problems("GET", "/api/openapi.json", 304, again["headers"], "")
    stale = handler(load_event("openapi", headers={"If-None-Match": '"stale"'}), None)
    assert stale["statusCode"] == 200


# --------------------------------------------------------------------------- the answer check


HEALTHY_APP = {
    "status": "healthy",
    "timestamp": "2026-11-29T23:00:00.000Z",
    "uptime": {"ms": 1500, "seconds": 1, "minutes": 0, "hours": 0},
    "memory": {
        "process": {"rss": "40.10 MB", "heapUsed": "20.00 MB"},
        "system": {"total": "0.25 GB", "free": "0.21 GB", "usagePercent": "15.66", "scope": "function"},
    },
    "thresholds": {"memoryPercent": 90.0},
    "runtime": {"python": "3.13.0", "implementation": "cpython", "architecture": "x86_64",
                "functionName": "HealthAppFunction", "functionVersion": "$LATEST", "memoryLimitMB": 256,
                "region": "us-east-1", "coldStart": True, "pid": 12},
    "cached": False,
}  # fmt: skip


def problems(status, body, headers=None, path="/api/health/app", method="GET"):
    text = body if isinstance(body, str) else json.dumps(body)
    return openapi_contract.response_problems(method, path, status, headers or JSON, text)


def test_conforming_answers_pass():
    assert problems(200, HEALTHY_APP) == []
    assert problems(200, {"status": "degraded"}) == []  # the public view
    assert problems(503, {"status": "unhealthy", "reason": "connection refused"}, path="/api/health/db") == []
    assert problems(401, {"message": "Unauthorized"}, {"content-type": "application/json"}, "/api/admin/heal",
                    "POST") == []  # fmt: skip
    error = {"error": "bad_request", "message": "dryRun must be true or false", "parameter": "dryRun",
             "correlationId": "c-1"}  # fmt: skip
    assert problems(400, error, {**JSON, "cache-control": "no-store"}, "/api/admin/heal", "POST") == []
    page = {"content-type": "text/html; charset=utf-8", "x-correlation-id": "c", "cache-control": "no-store"}
    assert problems(200, "<!doctype html>", page, "/admin/monitor") == []


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (404, {"status": "healthy"}, None, "not a documented status"),
        (200, {"status": "unhealthy"}, None, "body at status"),  # 200 is healthy or degraded only
        (503, {"status": "healthy"}, None, "body at status"),
        (200, {"status": "healthy", "memory": {"system": {}}}, None, "body at (root)"),  # a public view with a figure
        (200, {**HEALTHY_APP, "uptime": {"ms": "1500"}}, None, "body at"),
        (200, {"status": "healthy"}, {"content-type": "text/plain", "x-correlation-id": "c"}, "content-type"),
        (200, {"status": "healthy"}, {"content-type": "application/json"}, "header x-correlation-id missing"),
        (200, {"status": "healthy"}, {**JSON, "cache-control": "max-age=5"}, "header cache-control"),
        (200, "not json", None, "not JSON"),
    ],
)
def test_what_does_not_conform_is_found(status, body, headers, expected):
    found = problems(status, body, headers)
    assert any(expected in problem for problem in found), found


def test_a_route_not_in_the_contract_is_named():
    assert problems(200, {}, path="/api/nowhere") == ["GET /api/nowhere is not in the contract"]


def test_the_gateway_route_of_an_event():
    assert openapi_contract.gateway_route(load_event("heal-api")) == ("POST", "/api/admin/heal")
    event = load_event("health")
    del event["routeKey"]
    assert openapi_contract.gateway_route(event) == ("GET", "/api/health")
    assert openapi_contract.gateway_route(load_event("heal-schedule")) is None
    assert openapi_contract.gateway_route("garbage") is None
