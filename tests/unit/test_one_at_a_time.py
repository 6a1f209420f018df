"""health.OneAtATime: a check answered by its deadline, never two of them at once in one environment."""

import threading
import time

from parel_monitoring.health import OneAtATime


def test_a_check_past_its_deadline_is_answered_and_blocks_a_second_until_it_ends():
    runner, release, started = OneAtATime("test-check"), threading.Event(), []

    def slow_check():
        started.append(time.monotonic())
        release.wait(30)
        return {"status": "healthy"}

    def timed_out(reason):
        return {"status": "unhealthy", "reason": reason}

    first = runner.run(slow_check, time.monotonic() + 0.2, timed_out)
    assert first["status"] == "unhealthy" and "no answer within" in first["reason"]
    second = runner.run(slow_check, time.monotonic() + 5, timed_out)
    assert second == {"status": "unhealthy", "reason": "the previous check of this environment has not finished"}
    assert len(started) == 1, "a second check started beside the first"
    release.set()
    deadline = time.monotonic() + 10
    while runner.run(lambda: {"status": "healthy"}, time.monotonic() + 5, timed_out)["status"] != "healthy":
        assert time.monotonic() < deadline, "the first check never released the runner"
        time.sleep(0.05)
