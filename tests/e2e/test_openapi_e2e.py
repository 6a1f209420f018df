"""GET /api/openapi.json through the Lambda emulator (the built OpenApiFunction) and the local API: the document
is openapi.yaml, cacheable, revalidated by its ETag."""

from __future__ import annotations

import dataclasses
import http.client
import json
from urllib.parse import urlsplit

from events_loader import load_event
from local_api import LocalApi
from openapi_contract import contract


def test_the_built_function_serves_openapi_yaml(start_function):
    emulator = start_function("OpenApiFunction")
    answer = emulator.invoke(load_event("openapi")).payload
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"]) == contract()
    headers = answer["headers"]
    assert headers["content-type"] == "application/json" and headers["cache-control"] == "public, max-age=300"
    again = emulator.invoke(load_event("openapi", headers={"if-none-match": headers["etag"]})).payload
    assert (again["statusCode"], again["body"], again["headers"]["etag"]) == (304, "", headers["etag"])


def test_the_local_api_serves_it_without_a_token(built):
    with LocalApi(built, request_log=False) as api:
        connection = http.client.HTTPConnection(urlsplit(api.url).netloc, timeout=30)
        connection.request("GET", "/api/openapi.json")
        response = connection.getresponse()
        document, etag = json.loads(response.read()), response.getheader("etag")
        assert response.status == 200 and response.getheader("x-correlation-id")
        connection.request("GET", "/api/openapi.json", headers={"If-None-Match": etag})
        revalidated = connection.getresponse()
        assert (revalidated.status, revalidated.read()) == (304, b"")
        connection.close()
    assert document == contract()


def test_an_answer_the_contract_does_not_document_fails_the_test(start_function, answers_conform_to_openapi):
    """The autouse check (tests/e2e/conftest.py) sees every invocation: a real answer passes, the same answer
    with an undocumented status or a spoiled body is recorded (and would fail the test at teardown)."""
    import lambda_emulator

    emulator = start_function("HealthAppFunction")
    event = load_event("health-app")
    invocation = emulator.invoke(event)
    assert invocation.payload["statusCode"] == 200 and answers_conform_to_openapi == []
    payload = invocation.payload
    for spoiled in ({**payload, "statusCode": 418}, {**payload, "body": json.dumps({"status": "fine"})}):
        for observer in tuple(lambda_emulator._observers):
            observer(emulator.spec, event, dataclasses.replace(invocation, payload=spoiled))
    found = list(answers_conform_to_openapi)
    answers_conform_to_openapi.clear()  # seen: the test itself passes
    assert any("answered 418, not a documented status" in problem for problem in found), found
    assert any("HealthAppFunction: GET /api/health/app 200 body" in problem for problem in found), found
