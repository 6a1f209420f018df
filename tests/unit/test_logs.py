import json
import os
import subprocess
import sys
from pathlib import Path

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


_LEVEL_VARIABLES = ("POWERTOOLS_LOG_LEVEL", "LOG_LEVEL", "AWS_LAMBDA_LOG_LEVEL", "POWERTOOLS_LOGGER_SAMPLE_RATE")


def _fresh_process(code: str, **env: str) -> list[str]:
    """``code`` after ``from parel_monitoring.logs import create_logger`` in a new interpreter (nothing imported
    yet); its stdout lines."""
    layer = Path(__file__).resolve().parents[2] / "layers" / "shared"
    environment = {key: value for key, value in os.environ.items() if key not in _LEVEL_VARIABLES}
    environment.update(env, LOG_FORMAT="json")
    source = f"import sys\nsys.path.insert(0, {str(layer)!r})\nfrom parel_monitoring.logs import create_logger\n"
    result = subprocess.run(
        [sys.executable, "-c", source + code], env=environment, capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


LOADED = "print('powertools' if 'aws_lambda_powertools' in sys.modules else 'none', flush=True)\n"


def test_powertools_is_imported_by_the_first_line_at_the_level_not_before():
    """Cold start: a function that logs nothing at its level (a healthy check's DEBUG lines) never imports the
    Powertools package; the first INFO line builds the logger and is written like any other."""
    out = _fresh_process(
        f"log = create_logger('Svc')\n{LOADED}log.debug('hidden', {{'a': 1}})\n{LOADED}"
        f"log.info('shown', {{'a': 2}})\n{LOADED}"
    )
    assert out[:2] == ["none", "none"] and out[-1] == "powertools"
    (record,) = [json.loads(line) for line in out if line.startswith("{")]
    assert record["message"] == "shown" and record["a"] == 2 and record["service"] == "Svc"


def test_debug_level_writes_debug_lines():
    out = _fresh_process("create_logger('Svc').debug('seen')\n", POWERTOOLS_LOG_LEVEL="DEBUG")
    assert [json.loads(line)["message"] for line in out] == ["seen"]


@pytest.mark.parametrize(
    "variables",
    [{"AWS_LAMBDA_LOG_LEVEL": "DEBUG", "POWERTOOLS_LOG_LEVEL": "INFO"}, {"POWERTOOLS_LOGGER_SAMPLE_RATE": "1"}],
)
def test_powertools_decides_the_level_itself_when_lambda_or_sampling_sets_it(variables):
    """Lambda's log level (advanced logging controls) outranks POWERTOOLS_LOG_LEVEL, and sampling turns DEBUG on:
    only Powertools knows, so the logger is built at once and its decision holds."""
    out = _fresh_process(f"log = create_logger('Svc')\n{LOADED}log.debug('sampled')\n", **variables)
    assert out[0] == "powertools"
    assert [json.loads(line)["message"] for line in out[1:]] == ["sampled"]
