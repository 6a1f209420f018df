"""Options of a heal run: ``dryRun``, ``routines`` and ``force``, from the query string or the schedule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parel_monitoring.http import HttpError

# routine option name -> key of its count in the seed's summary
ROUTINES = {"sessions": "staleSessions", "jobs": "stuckJobs", "orphans": "orphanedRecords"}
OPTIONS = ("dryRun", "routines", "force")


@dataclass(frozen=True)
class HealOptions:
    dry_run: bool = False
    routines: tuple[str, ...] = tuple(ROUTINES)
    force: bool = False


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise HttpError(400, "bad_request", f"{name} must be true or false", parameter=name)


def parse_options(params: Mapping[str, Any] | None) -> HealOptions:
    """Options from the query string (or the schedule's input); anything else is a 400 naming it."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise HttpError(400, "bad_request", "options must be an object", parameter="options")
    unknown = sorted(str(name) for name in params if name not in OPTIONS)
    if unknown:
        raise HttpError(
            400, "bad_request", f"unknown option {unknown[0]!r}; allowed: {', '.join(OPTIONS)}", parameter=unknown[0]
        )
    routines: tuple[str, ...] = tuple(ROUTINES)
    if "routines" in params:
        raw = params["routines"]
        names = [name.strip() for name in raw.split(",")] if isinstance(raw, str) else []
        if not names or any(name not in ROUTINES for name in names):
            raise HttpError(
                400, "bad_request", f"routines must be a comma-separated subset of {','.join(ROUTINES)}",
                parameter="routines",
            )  # fmt: skip
        routines = tuple(dict.fromkeys(names))
    return HealOptions(
        dry_run=_boolean("dryRun", params.get("dryRun", False)),
        routines=routines,
        force=_boolean("force", params.get("force", False)),
    )
