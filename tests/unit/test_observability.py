import json
from types import SimpleNamespace

import pytest

from events_loader import load_event
from parel_monitoring.http import HttpError, json_response
from parel_monitoring.observability import lambda_handler
from parel_monitoring.settings import ConfigurationError, require_str


def context(request_id="req-1"):
    return SimpleNamespace(
        function_name="TestFunction",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:TestFunction",
        aws_request_id=request_id,
    )


def body(response):
    return json.loads(response["body"])


def test_missing_setting_answers_500_configuration_naming_the_variable(monkeypatch, capsys):
    monkeypatch.delenv("PAREL_TEST_REQUIRED", raising=False)

    @lambda_handler(lambda: require_str("PAREL_TEST_REQUIRED"))
    def handler(event, ctx, settings):
        raise AssertionError("must not run")

    response = handler(load_event("health-app"), context())
    assert response["statusCode"] == 500
    assert body(response)["error"] == "configuration"
    assert body(response)["variable"] == "PAREL_TEST_REQUIRED"
    assert body(response)["correlationId"] == response["headers"]["x-correlation-id"] == "demo-app-0001"
    init_log = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "Configuration error" in line]
    assert init_log and init_log[0]["variable"] == "PAREL_TEST_REQUIRED"


def test_malformed_setting_never_echoes_its_value(monkeypatch):
    monkeypatch.setenv("MEMORY_THRESHOLD_PCT", "postgres://u:topsecret@h/db")
    from parel_monitoring.health.app import AppHealthSettings

    @lambda_handler(AppHealthSettings.from_env)
    def handler(event, ctx, settings):
        return json_response(200, {})

    response = handler(load_event("health-app"), context())
    assert response["statusCode"] == 500 and "MEMORY_THRESHOLD_PCT" in response["body"]
    assert "topsecret" not in response["body"]


def test_unhandled_error_is_a_500_without_stack_trace_or_detail(capsys):
    @lambda_handler()
    def handler(event, ctx):
        raise RuntimeError("could not connect to postgresql://app:pw-123456@db/app")

    response = handler(load_event("health-app", headers={"x-correlation-id": "trace-500"}), context())
    assert response["statusCode"] == 500
    assert body(response) == {
        "error": "internal",
        "message": "Internal error; quote the correlation ID when reporting it.",
        "correlationId": "trace-500",
    }
    assert "Traceback" not in response["body"] and "pw-123456" not in response["body"]
    logged = capsys.readouterr().out
    assert "Unhandled error" in logged and "pw-123456" not in logged


def test_http_error_becomes_the_standard_4xx_body():
    @lambda_handler()
    def handler(event, ctx):
        raise HttpError(400, "bad_request", "dryRun must be true or false", parameter="dryRun")

    response = handler(load_event("health-app"), context())
    assert response["statusCode"] == 400
    assert body(response) == {
        "error": "bad_request",
        "message": "dryRun must be true or false",
        "parameter": "dryRun",
        "correlationId": "demo-app-0001",
    }


def test_non_http_handlers_reraise_so_lambda_retries():
    @lambda_handler(http=False)
    def handler(event, ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        handler(load_event("heal-schedule"), context())


def test_every_response_echoes_a_valid_correlation_id():
    @lambda_handler()
    def handler(event, ctx):
        return json_response(200, {"ok": True})

    sent = handler(load_event("health-app", headers={"x-correlation-id": "keep-me"}), context())
    minted = handler(load_event("health-app", headers={"x-correlation-id": "bad\nid"}), context())
    assert sent["headers"]["x-correlation-id"] == "keep-me"
    assert minted["headers"]["x-correlation-id"] not in ("bad\nid", "keep-me")


def test_log_lines_carry_lambda_context_and_cold_start(capsys, monkeypatch):
    import parel_monitoring.observability as observability

    monkeypatch.setitem(observability._environment, "invocations", 0)

    @lambda_handler(service="CtxService")
    def handler(event, ctx):
        handler.logger.info("handled")
        return json_response(200, {})

    handler(load_event("health-app"), context("r-1"))
    handler(load_event("health-app", headers={"x-correlation-id": "second"}), context("r-2"))
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (first["cold_start"], second["cold_start"]) == (True, False)
    assert (first["function_request_id"], second["function_request_id"]) == ("r-1", "r-2")
    assert second["correlation_id"] == "second" and first["function_name"] == "TestFunction"
    assert first["service"] == "CtxService"


def test_configuration_error_in_non_http_handler_raises(monkeypatch):
    monkeypatch.delenv("PAREL_TEST_REQUIRED", raising=False)

    @lambda_handler(lambda: require_str("PAREL_TEST_REQUIRED"), http=False)
    def handler(event, ctx, settings):
        raise AssertionError("must not run")

    with pytest.raises(ConfigurationError, match="PAREL_TEST_REQUIRED"):
        handler(load_event("heal-schedule"), context())
