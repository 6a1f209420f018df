"""Alert state in Redis: duplicate suppression and "already delivered" memory for retries.

Deduplication: the same severity + title within ``window_s`` is suppressed and counted; the
next alert that gets through carries how many similar ones were suppressed. The window is
opened by one message id, so a retry of that same message (an SNS redelivery) is not a
duplicate of itself. Delivery memory: a channel that accepted a message is remembered for a
day, so a retried message is not sent to it again. Redis trouble never blocks an alert:
every operation fails open (deliver) and logs it.
"""

from __future__ import annotations

import hashlib

import redis

from parel_monitoring.logs import create_logger
from parel_monitoring.notify.model import Alert

PREFIX = "parel-monitoring:alerts"
DELIVERED_TTL_S = 24 * 3600


def _fingerprint(alert: Alert) -> str:
    return hashlib.sha256(f"{alert.severity}\n{alert.title}".encode()).hexdigest()[:32]


class AlertState:
    def __init__(self, client: redis.Redis | None, window_s: int) -> None:
        self.client = client
        self.window_s = window_s

    def _fail_open(self, action: str, exc: Exception) -> None:
        create_logger("alerts").warning(
            f"Redis unavailable for {action}; delivering anyway", {"reason": type(exc).__name__}
        )

    def admit(self, alert: Alert, message_id: str) -> tuple[bool, int]:
        """``(deliver?, similar alerts suppressed before it)``; counts a suppressed one."""
        if self.client is None or self.window_s <= 0:
            return True, 0
        key = f"{PREFIX}:window:{_fingerprint(alert)}"
        counter = f"{PREFIX}:suppressed:{_fingerprint(alert)}"
        try:
            if self.client.set(key, message_id, nx=True, ex=self.window_s):
                return True, int(self.client.getdel(counter) or 0)
            opened_by = self.client.get(key)
            if opened_by is not None and opened_by.decode() == message_id:
                return True, 0  # a retry of the message that opened the window
            pipe = self.client.pipeline(transaction=False)
            pipe.incr(counter)
            pipe.expire(counter, max(self.window_s * 12, DELIVERED_TTL_S))
            pipe.execute()
            return False, 0
        except redis.RedisError as exc:
            self._fail_open("deduplication", exc)
            return True, 0

    def already_delivered(self, message_id: str, channel: str) -> bool:
        if self.client is None or not message_id:
            return False
        try:
            return bool(self.client.exists(f"{PREFIX}:delivered:{message_id}:{channel}"))
        except redis.RedisError as exc:
            self._fail_open("delivery memory", exc)
            return False

    def remember_delivered(self, message_id: str, channel: str) -> None:
        if self.client is None or not message_id:
            return
        try:
            self.client.set(f"{PREFIX}:delivered:{message_id}:{channel}", 1, ex=DELIVERED_TTL_S)
        except redis.RedisError as exc:
            self._fail_open("delivery memory", exc)
