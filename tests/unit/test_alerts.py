"""The layer's alert publisher against moto SNS (an SQS queue subscribed to read what was sent)."""

import json

import boto3
import pytest

from parel_monitoring import alerts, correlation


@pytest.fixture
def topic(monkeypatch, fake_aws):
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    arn = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("ALERT_TOPIC_ARN", arn)

    def received():
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    yield received


def test_alert_carries_severity_metadata_and_the_correlation_id(topic):
    correlation.set_current("heal-run-42")
    assert alerts.alert_critical("Self-healing failed", "Redis unreachable", {"routine": "jobs"})
    (envelope,) = topic()
    body = json.loads(envelope["Message"])
    assert body["severity"] == "CRITICAL" and body["title"] == "Self-healing failed"
    assert body["metadata"] == {"routine": "jobs"} and body["correlationId"] == "heal-run-42"
    assert envelope["MessageAttributes"]["x-correlation-id"]["Value"] == "heal-run-42"
    assert envelope["MessageAttributes"]["severity"]["Value"] == "CRITICAL"


@pytest.mark.parametrize(("send", "severity"), [(alerts.alert_warning, "WARNING"), (alerts.alert_info, "INFO")])
def test_each_severity_helper(topic, send, severity):
    send("title", "message")
    (envelope,) = topic()
    assert json.loads(envelope["Message"])["severity"] == severity


def test_without_a_topic_nothing_is_sent_and_nothing_raises(monkeypatch, capsys):
    monkeypatch.delenv("ALERT_TOPIC_ARN", raising=False)
    assert alerts.alert_critical("t", "m") is None
    assert "ALERT_TOPIC_ARN is not set" in capsys.readouterr().out


def test_publish_failure_is_logged_not_raised(topic, monkeypatch, capsys):
    monkeypatch.setenv("ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:does-not-exist")
    assert alerts.alert_warning("t", "m") is None
    assert "Alert could not be published" in capsys.readouterr().out


def test_subject_is_what_sns_accepts_and_the_body_keeps_the_full_title(topic):
    title = "Café queue\nlag\x07 critical 🚨 " + "x" * 150
    assert alerts.alert_critical(title, "m")
    (envelope,) = topic()
    subject = envelope["Subject"]
    assert subject.startswith("[CRITICAL] Cafe queue lag critical x") and subject.endswith("...")
    assert len(subject) < 100 and subject.isascii() and subject.isprintable()
    assert json.loads(envelope["Message"])["title"] == title


@pytest.mark.parametrize(
    ("text", "subject"),
    [("[INFO] ok", "[INFO] ok"), ("\n\t ", "Alert"), ("[WARNING]  two\r\nlines", "[WARNING] two lines")],
)
def test_sns_subject(text, subject):
    assert alerts.sns_subject(text) == subject
