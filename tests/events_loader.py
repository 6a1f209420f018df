"""The one way tests read the events in events/ (the files `sam local invoke -e` uses)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


@cache
def _read(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


def load_event(name: str, headers: dict[str, str | None] | None = None, **fields: Any) -> dict[str, Any]:
    """A fresh copy of ``events/<name>`` with ``headers`` set (None removes one) and top-level ``fields`` replaced."""
    event = copy.deepcopy(_read(name if name.endswith(".json") else f"{name}.json"))
    for key, value in (headers or {}).items():
        event.setdefault("headers", {})
        if value is None:
            event["headers"] = {k: v for k, v in event["headers"].items() if k.lower() != key.lower()}
        else:
            event["headers"][key] = value
    event.update(fields)
    return event
