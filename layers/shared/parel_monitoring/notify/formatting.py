"""Slack and Discord messages for an :class:`Alert`: the seed's look, within each platform's limits.

The seed's alert reads ``🚨 <title>``, the message, ``Severity``, ``Timestamp`` and the metadata
as a JSON code block, coloured red / orange / green by severity. Text and metadata are scrubbed
(:mod:`parel_monitoring.scrub`) before they leave; anything over a platform limit is cut with a
visible :data:`TRUNCATED` marker rather than rejected by the platform. Lengths are counted in
code points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from parel_monitoring.clock import to_utc_iso, utc_now_iso
from parel_monitoring.notify.model import Alert
from parel_monitoring.scrub import scrub, scrub_text

TRUNCATED = "… [truncated]"

# The guide names the colours (red, orange, green) but not their values: these are ours.
CRITICAL_COLOUR = 0xFF0000
WARNING_COLOUR = 0xFFA500
INFO_COLOUR = 0x00FF00
COLOURS = {"CRITICAL": CRITICAL_COLOUR, "WARNING": WARNING_COLOUR, "INFO": INFO_COLOUR}
EMOJI = {"CRITICAL": "🚨", "WARNING": "⚠️", "INFO": "ℹ️"}  # noqa: RUF001 (the emoji, not a letter)

SLACK_TEXT_MAX = 40_000  # top-level "text"
SLACK_HEADER_MAX = 150  # header block plain_text
SLACK_SECTION_MAX = 3_000  # section / context mrkdwn text
SLACK_MAX_BLOCKS = 50

DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4_096
DISCORD_FIELD_NAME_MAX = 256
DISCORD_FIELD_VALUE_MAX = 1_024
DISCORD_FOOTER_MAX = 2_048
DISCORD_MAX_FIELDS = 25
DISCORD_EMBED_MAX = 6_000  # title + description + field names and values + footer


def truncate(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start ending in :data:`TRUNCATED`."""
    if len(text) <= limit:
        return text
    if limit <= len(TRUNCATED):
        return TRUNCATED[:limit]
    return text[: limit - len(TRUNCATED)] + TRUNCATED


@dataclass(frozen=True)
class _Content:
    """What both platforms show, scrubbed and normalised."""

    severity: str
    headline: str  # "🚨 CRITICAL: Database Connection Lost"
    message: str
    metadata: dict[str, Any]
    timestamp: str
    correlation_id: str
    source: str
    suppressed: str  # "" when nothing was suppressed

    @classmethod
    def of(cls, alert: Alert) -> _Content:
        severity = alert.severity.upper() if alert.severity.upper() in COLOURS else "INFO"
        metadata = scrub({str(key): value for key, value in alert.metadata.items()})
        suppressed = ""
        if alert.suppressed > 0:
            noun = "alert" if alert.suppressed == 1 else "alerts"
            suppressed = f"{alert.suppressed} similar {noun} suppressed since the last one"
        return cls(
            severity=severity,
            headline=f"{EMOJI[severity]} {severity}: {scrub_text(alert.title)}",
            message=scrub_text(alert.message),
            metadata=metadata,
            timestamp=_valid_timestamp(alert.timestamp),
            correlation_id=alert.correlation_id,
            source=scrub_text(alert.source or ""),
            suppressed=suppressed,
        )

    def metadata_json(self) -> str:
        return json.dumps(self.metadata, indent=2, default=str, ensure_ascii=False)


def _valid_timestamp(value: str) -> str:
    """``value`` in UTC with a Z when it is ISO 8601 (Discord rejects the whole embed otherwise), else now."""
    return to_utc_iso(value) or utc_now_iso()


# --------------------------------------------------------------------------- Slack


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters; also keeps ``<!channel>`` out of alert text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SLACK_SECTION_MAX)}}


def _code_block(label: str, code: str, limit: int) -> str:
    """``label`` then ``code`` fenced, cut inside the fence so the block stays closed."""
    opening, closing = f"{label}\n```\n", "\n```"
    return opening + truncate(code, limit - len(opening) - len(closing)) + closing


def slack_payload(alert: Alert) -> dict[str, Any]:
    """An incoming-webhook message: a colour bar (attachment) around Block Kit blocks."""
    content = _Content.of(alert)
    details = [f"*Severity:* {content.severity}", f"*Timestamp:* {content.timestamp}"]
    if content.correlation_id:
        details.append(f"*Correlation ID:* `{_slack_escape(content.correlation_id)}`")
    if content.source:
        details.append(f"*Source:* {_slack_escape(content.source)}")
    header_text = truncate(content.headline, SLACK_HEADER_MAX)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": header_text}}]
    if content.message:
        blocks.append(_section(_slack_escape(content.message)))
    blocks.append(_section("\n".join(details)))
    if content.metadata:
        blocks.append(_section(_code_block("*Metadata:*", _slack_escape(content.metadata_json()), SLACK_SECTION_MAX)))
    if content.suppressed:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{content.suppressed}_"}]})
    return {
        # Notification and fallback text; the blocks carry the details.
        "text": truncate(_slack_escape(content.headline), SLACK_TEXT_MAX),
        "attachments": [{"color": f"#{COLOURS[content.severity]:06X}", "blocks": blocks[:SLACK_MAX_BLOCKS]}],
    }


# --------------------------------------------------------------------------- Discord


def _field(name: str, value: str, inline: bool = True) -> dict[str, Any]:
    # Discord rejects empty field names and values.
    return {
        "name": truncate(name, DISCORD_FIELD_NAME_MAX) or "(empty)",
        "value": truncate(value, DISCORD_FIELD_VALUE_MAX) or "(empty)",
        "inline": inline,
    }


def _field_chars(field: dict[str, Any]) -> int:
    return len(field["name"]) + len(field["value"])


def _metadata_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _omitted(count: int) -> dict[str, Any]:
    noun = "entry" if count == 1 else "entries"
    return _field(TRUNCATED, f"{count} more metadata {noun} not shown", inline=False)


def _metadata_fields(metadata: dict[str, Any], slots: int, budget: int) -> list[dict[str, Any]]:
    """One field per entry while they fit in ``slots`` fields and ``budget`` characters; the rest
    are counted in a last field (``budget`` must hold that field: later entries keep room for it)."""
    fields: list[dict[str, Any]] = []
    items = list(metadata.items())
    for index, (key, value) in enumerate(items):
        field = _field(str(key), _metadata_value(value))
        last = index == len(items) - 1
        slots_needed = 1 if last else 2
        chars_needed = _field_chars(field) + (0 if last else _field_chars(_omitted(len(items))))
        if len(fields) + slots_needed > slots or chars_needed > budget:
            return [*fields, _omitted(len(items) - index)]
        fields.append(field)
        budget -= _field_chars(field)
    return fields


def discord_payload(alert: Alert) -> dict[str, Any]:
    """A webhook message with one embed; mentions in alert text never ping anyone.

    Within the embed's 6,000 characters, in order of importance: title and the fixed fields, the
    message, the source (footer), then as many metadata entries as fit.
    """
    content = _Content.of(alert)
    title = truncate(content.headline, DISCORD_TITLE_MAX)
    embed: dict[str, Any] = {"title": title, "color": COLOURS[content.severity], "timestamp": content.timestamp}
    fields = [_field("Severity", content.severity)]
    if content.correlation_id:
        fields.append(_field("Correlation ID", f"`{content.correlation_id}`"))
    if content.suppressed:
        fields.append(_field("Suppressed", content.suppressed, inline=False))
    # Room for the "more entries not shown" field is kept from the start.
    marker_room = _field_chars(_omitted(len(content.metadata))) if content.metadata else 0
    room = DISCORD_EMBED_MAX - len(title) - sum(map(_field_chars, fields)) - marker_room
    if description := truncate(content.message, min(DISCORD_DESCRIPTION_MAX, room)):
        embed["description"] = description
        room -= len(description)
    if footer := truncate(content.source, min(DISCORD_FOOTER_MAX, room)):
        embed["footer"] = {"text": footer}
        room -= len(footer)
    fields += _metadata_fields(content.metadata, DISCORD_MAX_FIELDS - len(fields), room + marker_room)
    embed["fields"] = fields
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}
