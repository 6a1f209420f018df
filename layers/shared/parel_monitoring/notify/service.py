"""What AlertsFunction does with one alert: stage policy, deduplication, fan-out, delivery memory."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from parel_monitoring.bullmq import RedisSettings, get_redis, redis_cluster_enabled
from parel_monitoring.logs import create_logger
from parel_monitoring.notify.dedup import AlertState
from parel_monitoring.notify.delivery import Channel, DeliverySettings, delivered_late, fan_out, new_late_deliveries
from parel_monitoring.notify.intake import is_recovery
from parel_monitoring.notify.model import Alert
from parel_monitoring.settings import env_float, env_int, env_str, http_url, secret
from parel_monitoring.settings import redis_url as checked_redis_url


@dataclass(frozen=True)
class AlertSettings:
    stage: str
    slack_url: str | None = field(repr=False)
    discord_url: str | None = field(repr=False)
    redis: RedisSettings | None
    dedup_window_s: int
    delivery: DeliverySettings
    margin_ms: int

    @classmethod
    def from_env(cls) -> AlertSettings:
        redis_url = checked_redis_url(secret("REDIS_URL"))
        return cls(
            stage=env_str("STAGE", "dev"),
            slack_url=http_url("SLACK_WEBHOOK_URL", secret("SLACK_WEBHOOK_URL")),
            discord_url=http_url("DISCORD_WEBHOOK_URL", secret("DISCORD_WEBHOOK_URL")),
            # Dedup state; short timeouts: an unreachable Redis must not hold alerts back.
            redis=RedisSettings(
                redis_url,
                env_float("ALERT_REDIS_CONNECT_TIMEOUT_S", 0.5, 0.05, 10),
                env_float("ALERT_REDIS_SOCKET_TIMEOUT_S", 1.0, 0.05, 10),
                cluster=redis_cluster_enabled(),  # its keys are hash-tagged: each decision within one slot
            )
            if redis_url
            else None,
            dedup_window_s=env_int("ALERT_DEDUP_WINDOW_S", 300, minimum=0),
            delivery=DeliverySettings.from_env(),
            margin_ms=env_int("ALERT_DEADLINE_MARGIN_MS", 500, minimum=0),
        )

    def channels(self) -> list[Channel]:
        configured = (("slack", self.slack_url), ("discord", self.discord_url))
        return [Channel(name, url) for name, url in configured if url]


def deadline_for(context: Any, settings: AlertSettings, default_s: float = 30.0) -> float:
    """A time.monotonic() value: the invocation's remaining time minus a margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    remaining_ms = remaining() if remaining else default_s * 1000
    return time.monotonic() + max(remaining_ms - settings.margin_ms, 0) / 1000


def alert_state(settings: AlertSettings) -> AlertState:
    return AlertState(get_redis(settings.redis) if settings.redis else None, settings.dedup_window_s)


def dispatch(alert: Alert, message_id: str, settings: AlertSettings, deadline: float) -> dict[str, Any]:
    """Deliver ``alert`` (once per channel per message id); the report of what happened."""
    logger = create_logger("alerts")
    fields = {"severity": alert.severity, "title": alert.title, "messageId": message_id}
    if alert.severity == "INFO" and settings.stage != "dev" and not is_recovery(alert):
        logger.info("INFO alert dropped outside the dev stage", fields)
        return {
            "delivered": False,
            "dropped": f"INFO alerts are delivered only in the dev stage (stage: {settings.stage})",
        }
    channels = settings.channels()
    if not channels:
        logger.warning("No alert channel configured (SLACK_WEBHOOK_URL, DISCORD_WEBHOOK_URL)", fields)
        return {"delivered": False, "channels": {}, "warning": "no channel configured"}
    state = alert_state(settings)
    admitted, suppressed_before = state.admit(alert, message_id)
    if not admitted:
        logger.info("Duplicate alert suppressed", {**fields, "windowSeconds": settings.dedup_window_s})
        return {"delivered": False, "suppressed": True, "channels": {}}
    alert = dataclasses.replace(alert, suppressed=suppressed_before)
    report: dict[str, dict[str, Any]] = {}
    pending = []
    # Deliveries that succeeded after an earlier fan-out here had returned: into Redis, from this thread
    # (one Redis connection), so a retry in any environment skips them.
    for late_message, late_channel in new_late_deliveries():
        state.remember_delivered(late_message, late_channel)
    for channel in channels:
        if delivered_late(message_id, channel.name) or state.already_delivered(message_id, channel.name):
            report[channel.name] = {"delivered": True, "attempts": 0, "status": None, "alreadyDelivered": True}
        else:
            pending.append(channel)
    for result in fan_out(alert, pending, deadline, settings.delivery, key=message_id):
        report[result.channel] = result.to_dict()
        if result.delivered:
            state.remember_delivered(message_id, result.channel)
    delivered = all(channel["delivered"] for channel in report.values())
    logger.info("Alert dispatched", {**fields, "delivered": delivered, "suppressedBefore": suppressed_before,
                                     "channels": {name: c["delivered"] for name, c in report.items()}})  # fmt: skip
    return {"delivered": delivered, "channels": report, "suppressedBefore": suppressed_before}
