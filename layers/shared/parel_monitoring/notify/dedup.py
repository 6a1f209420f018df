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


# One decision, atomically (a window can neither close nor be counted twice between steps).
# KEYS: the window key, the suppressed counter. ARGV: message id, window s, counter ttl s.
# Replies {1, suppressed before it} to deliver (opening the window, or a retry of the message
# that opened it: {1, 0}), {0, 0} to suppress (counted).
_ADMIT_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  local suppressed = tonumber(redis.call('GET', KEYS[2]) or '0')
  redis.call('DEL', KEYS[2])
  return {1, suppressed}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return {1, 0} end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {0, 0}
"""


class AlertState:
    def __init__(self, client: redis.Redis | None, window_s: int) -> None:
        self.client = client
        self.window_s = window_s
        self._admit = client.register_script(_ADMIT_LUA) if client is not None else None

    def _fail_open(self, action: str, exc: Exception) -> None:
        create_logger("alerts").warning(
            f"Redis unavailable for {action}; delivering anyway", {"reason": type(exc).__name__}
        )

    def admit(self, alert: Alert, message_id: str) -> tuple[bool, int]:
        """``(deliver?, similar alerts suppressed before it)``; counts a suppressed one."""
        if self.client is None or self.window_s <= 0:
            return True, 0
        # {fingerprint}: both keys in one hash slot, as a script's keys must be on Redis Cluster.
        fingerprint = "{" + _fingerprint(alert) + "}"
        keys = [f"{PREFIX}:window:{fingerprint}", f"{PREFIX}:suppressed:{fingerprint}"]
        try:
            deliver, suppressed = self._admit(
                keys=keys, args=[message_id, self.window_s, max(self.window_s * 12, DELIVERED_TTL_S)]
            )
            return bool(deliver), int(suppressed)
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
