import boto3
import pytest

from parel_monitoring import settings
from parel_monitoring.health.app import AppHealthSettings
from parel_monitoring.settings import ConfigurationError, ObservabilitySettings


def test_missing_required_setting_names_the_variable(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError) as info:
        settings.secret("DATABASE_URL", required=True)
    assert info.value.variable == "DATABASE_URL"
    assert "DATABASE_URL" in str(info.value)


@pytest.mark.parametrize("value", ["abc", "150", "-1", "nan"])
def test_malformed_number_names_the_variable_not_the_value(monkeypatch, value):
    monkeypatch.setenv("MEMORY_THRESHOLD_PCT", value)
    with pytest.raises(ConfigurationError) as info:
        AppHealthSettings.from_env()
    assert info.value.variable == "MEMORY_THRESHOLD_PCT"
    assert value not in str(info.value)


def test_defaults_and_typed_values(monkeypatch):
    assert AppHealthSettings.from_env().memory_threshold_pct == 90.0
    monkeypatch.setenv("MEMORY_THRESHOLD_PCT", "75.5")
    assert AppHealthSettings.from_env().memory_threshold_pct == 75.5


def test_log_format_must_be_known(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError, match="LOG_FORMAT"):
        ObservabilitySettings.from_env()


def test_secret_directly_from_environment(monkeypatch):
    monkeypatch.setenv("SENTRY_DSN", "http://key@127.0.0.1:9/1")
    assert ObservabilitySettings.from_env().sentry_dsn == "http://key@127.0.0.1:9/1"


@pytest.fixture
def aws(fake_aws):
    return fake_aws


def test_secret_from_secrets_manager(aws, monkeypatch):
    arn = boto3.client("secretsmanager").create_secret(Name="parel/db", SecretString="postgresql://u:pw1@h/d")["ARN"]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_SECRET_ARN", arn)
    assert settings.secret("DATABASE_URL", required=True) == "postgresql://u:pw1@h/d"


def test_secret_from_ssm_securestring(aws, monkeypatch):
    boto3.client("ssm").put_parameter(Name="/parel/token", Value="tok-from-ssm-123", Type="SecureString")
    monkeypatch.delenv("ADMIN_API_TOKEN", raising=False)
    monkeypatch.setenv("ADMIN_API_TOKEN_PARAMETER", "/parel/token")
    assert settings.secret("ADMIN_API_TOKEN", required=True) == "tok-from-ssm-123"


def test_secret_fetch_is_cached(aws, monkeypatch):
    client = boto3.client("secretsmanager")
    arn = client.create_secret(Name="parel/dsn", SecretString="first-value")["ARN"]
    monkeypatch.setenv("SENTRY_DSN_SECRET_ARN", arn)
    assert settings.secret("SENTRY_DSN") == "first-value"
    client.put_secret_value(SecretId=arn, SecretString="second-value")
    assert settings.secret("SENTRY_DSN") == "first-value"


def test_unreadable_secret_is_a_configuration_error_without_the_arn_value(aws, monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope")
    with pytest.raises(ConfigurationError) as info:
        settings.secret("SLACK_WEBHOOK_URL")
    assert info.value.variable == "SLACK_WEBHOOK_URL_SECRET_ARN"
    assert "nope" not in str(info.value)
