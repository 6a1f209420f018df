"""Secrets nested beyond any depth, Sentry events' final text pass, and one logger per service under races."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from datetime import UTC, datetime

import pytest

from parel_monitoring import error_tracker, logs
from parel_monitoring.scrub import REDACTED, register_secret, scrub

SECRET = "postgresql://app:Deep-Pa55word-0123@db.internal/app"


def nested(depth: int, leaf: object) -> object:
    for level in range(depth):
        leaf = {"level": level, "child": leaf} if level % 2 else [leaf]
    return leaf


@pytest.mark.parametrize("depth", [19, 21, 25, 200])
def test_scrub_redacts_at_every_depth(depth):
    register_secret(SECRET)
    value = nested(depth, {"password": "plain-hunter2", "url": SECRET, "note": f"see {SECRET}"})
    text = json.dumps(scrub(value), default=str)
    assert "hunter2" not in text and "Deep-Pa55word" not in text and SECRET not in text


def test_scrub_survives_a_cycle():
    looped: dict = {"token": "abc-secret-value"}
    looped["self"] = looped
    text = json.dumps(nested(3, scrub(looped)), default=str)
    assert "abc-secret-value" not in text


class Opaque:
    """A value Sentry would serialise with repr: scrub() leaves objects alone."""

    def __repr__(self) -> str:
        return f"Opaque(dsn={SECRET!r})"

    __str__ = __repr__


def test_before_send_ends_with_a_text_pass_over_the_whole_event():
    register_secret(SECRET)
    event = {
        "message": "boom",
        "timestamp": datetime(2026, 11, 29, 21, 0, tzinfo=UTC),
        "extra": {SECRET: "a secret as a key", "object": Opaque(), "deep": nested(40, SECRET)},
        "tags": {"region": "eu"},
    }
    sent = error_tracker._before_send(event, {})
    text = json.dumps(sent, default=str)
    assert "Deep-Pa55word" not in text and REDACTED in text
    assert sent["message"] == "boom" and sent["tags"]["region"] == "eu" and sent["tags"]["correlation_id"]
    assert sent["timestamp"].startswith("2026-11-29T21:00:00")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_racing_threads_get_one_logger_with_one_handler(monkeypatch, capsys, log_format):
    """functools.cache computes a missed value in every racing thread: two loggers, two handlers, lines twice."""
    monkeypatch.setenv("LOG_FORMAT", log_format)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        for _ in range(30):
            service = f"Race{uuid.uuid4().hex[:8]}"
            barrier, got = threading.Barrier(8), []

            def create(service=service, barrier=barrier, got=got):
                barrier.wait()
                got.append(logs.create_logger(service))

            threads = [threading.Thread(target=create) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len({id(logger) for logger in got}) == 1, f"{len(set(map(id, got)))} loggers for one service"
            got[0].info("once")
            lines = [line for line in capsys.readouterr().out.splitlines() if "once" in line]
            assert len(lines) == 1, lines
    finally:
        sys.setswitchinterval(previous)
