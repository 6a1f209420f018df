import json

import pytest

from parel_monitoring import correlation
from parel_monitoring.logs import create_logger


def lines(capsys):
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_json_line_carries_service_correlation_id_and_extra(capsys):
    correlation.set_current("abc12345-trace")
    create_logger("UserService").info("Processing user update", {"userId": "123"})
    (record,) = [json.loads(line) for line in lines(capsys)]
    assert record["service"] == "UserService"
    assert record["correlation_id"] == "abc12345-trace"
    assert record["message"] == "Processing user update"
    assert record["userId"] == "123"
    assert record["level"] == "INFO"


def test_error_with_exception_and_extra_as_in_the_seed(capsys):
    correlation.set_current("err-1")
    try:
        raise ValueError("bad password")
    except ValueError as error:
        create_logger("AuthService").error("Login failed", error, {"userId": 7, "attempts": 3})
    (record,) = [json.loads(line) for line in lines(capsys)]
    assert record["level"] == "ERROR" and record["attempts"] == 3 and record["userId"] == 7
    assert record["exception_name"] == "ValueError"


def test_text_format_is_the_seeds(monkeypatch, capsys):
    monkeypatch.setenv("LOG_FORMAT", "text")
    correlation.set_current("abc12345-6789-rest")
    create_logger("UserService").info("Processing user update")
    assert lines(capsys) == ["[UserService] [abc12345] Processing user update"]


def test_reserved_extra_keys_do_not_break_logging(capsys):
    create_logger("S").info("hello", {"message": "shadow", "name": "n"})
    (record,) = [json.loads(line) for line in lines(capsys)]
    assert record["message"] == "hello" and record["extra_message"] == "shadow"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secrets_never_reach_a_log_line(monkeypatch, capsys, log_format):
    monkeypatch.setenv("LOG_FORMAT", log_format)
    logger = create_logger(f"Leaky-{log_format}")
    logger.info("connecting to postgresql://app:hunter2secret@db.internal:5432/app")
    logger.info("posting", {"webhook": "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"})
    logger.info("auth", {"header": "Bearer abcdef123456token"})
    logger.info("sentry", {"target": "https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/1"})
    out = capsys.readouterr().out
    for secret in ("hunter2secret", "XXXXSECRETXXXX", "abcdef123456token", "0123456789abcdef0123456789abcdef"):
        assert secret not in out
    assert out.count("[redacted]") >= 4


def test_debug_lines_follow_the_level(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    create_logger("Quiet").debug("not shown")
    assert lines(capsys) == []
