"""End-to-end tier: the functions as `make build` built them, under the Lambda emulator.

The emulator fixtures (`built`, `start_function`) live in tests/conftest.py: the fault tests use them too.
"""

from __future__ import annotations

from functools import cache
from urllib.parse import urlsplit

import pytest


@cache
def _served_routes() -> dict[str, set[tuple[str, str]]]:
    """function -> the (METHOD, path) of its HttpApi events in template.yaml."""
    from local_api import read_routes
    from sam_template import load

    routes, _ = read_routes(load())
    served: dict[str, set[tuple[str, str]]] = {}
    for route in routes:
        served.setdefault(route.function, set()).add((route.method, route.path))
    return served


@pytest.fixture(autouse=True)
def answers_conform_to_openapi():
    """Every API answer a test produces, a function's under the emulator or the local API's (its own 401, 403,
    429, ... included), is checked against openapi.yaml: status documented for the route, content type, headers,
    body schema. A mismatch fails the test (at teardown), listing each one."""
    import lambda_emulator
    import local_api
    from lambda_emulator import BUILD_DIR
    from openapi_contract import contract, gateway_route, operation, response_problems

    document = contract()
    problems: list[str] = []

    def function_answered(spec, event, invocation) -> None:
        route = gateway_route(event)
        payload = invocation.payload
        if route is None or route not in _served_routes().get(spec.logical_id, ()):
            return  # not an API event of a route this function serves here (a schedule, another template's)
        if not (isinstance(payload, dict) and "statusCode" in payload):
            return  # the function failed: API Gateway answers 500 itself (checked on the local API)
        try:
            found = response_problems(*route, payload["statusCode"], payload.get("headers") or {},
                                      payload.get("body"), document)  # fmt: skip
        except Exception as exc:  # an observer never raises into the emulator
            found = [f"{route}: the check failed: {exc!r}"]
        problems.extend(f"{spec.logical_id}: {problem}" for problem in found)

    def api_answered(api, request, response) -> None:
        route = (request.method.upper(), urlsplit(request.target).path)
        if api.build_dir.resolve() != BUILD_DIR.resolve() or operation(document, *route) is None:
            return  # another template (a test's own), or no route: API Gateway's 404
        try:
            found = response_problems(*route, response.status, response.headers, response.body, document)
        except Exception as exc:
            found = [f"{route}: the check failed: {exc!r}"]
        problems.extend(f"local API: {problem}" for problem in found)

    lambda_emulator.add_observer(function_answered)
    local_api.add_observer(api_answered)
    try:
        yield problems
    finally:
        lambda_emulator.remove_observer(function_answered)
        local_api.remove_observer(api_answered)
    if problems:
        unique = list(dict.fromkeys(problems))
        pytest.fail(f"{len(unique)} answer(s) not as openapi.yaml documents them:\n  " + "\n  ".join(unique[:20]))
