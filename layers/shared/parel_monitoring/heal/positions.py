"""Where a partial ``tid-range`` walk stopped, kept in Redis so that the next run (scheduled or from the API)
resumes there by itself.

One key per table (``parel-monitoring:heal:position:<database>:<table oid>``, expiring after
``POSITION_TTL_S``) holds ``{"block", "filenode", "pages"}``: the page where the next run starts, and the
table's file node and size in pages when it was recorded. A finished walk deletes the key: the next run
starts at page 0. A recorded position is ignored (the walk starts at page 0, and the result says why) when
the table was rewritten since (``VACUUM FULL``, ``TRUNCATE``, ``CLUSTER``: a new file node) or has shrunk
(``VACUUM`` cut empty pages off its end). Whatever the position, a walk that starts further on wraps around
to page 0, so a resumed run that finishes has visited every page: a stale position can cost a run that
starts mid-table, never a row left for good.

Redis unavailable: the walk starts at page 0 and the position is not kept (the result says so); the heal
itself does not depend on Redis.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import redis

from parel_monitoring.db import Database
from parel_monitoring.heal.budget import Budget
from parel_monitoring.heal.tables import Progress, TidRangeWalk, Walk, run_walk

KEY_PREFIX = "parel-monitoring:heal:position"
POSITION_TTL_S = 30 * 24 * 3600
UNAVAILABLE = "position store (Redis) unavailable: started at page 0, position not kept"


def position_key(database: str, walk: TidRangeWalk) -> str:
    return f"{KEY_PREFIX}:{database}:{walk.oid}"


class PositionStore:
    """Positions of ``tid-range`` walks in Redis (``client``: a Redis or RedisCluster client). After one Redis
    failure the store is not asked again in this run (each walk would wait for the connect timeout)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.unavailable = False

    def resume(self, database: str, walk: TidRangeWalk) -> tuple[TidRangeWalk, str | None]:
        """``walk`` starting where the last partial run on its table stopped, and why not, if it does not."""
        if self.unavailable:
            return walk, UNAVAILABLE
        try:
            raw = self.client.get(position_key(database, walk))
        except redis.RedisError:
            self.unavailable = True
            return walk, UNAVAILABLE
        if raw is None:
            return walk, None
        try:
            stored = json.loads(raw)
            block, filenode, pages = int(stored["block"]), int(stored["filenode"]), int(stored["pages"])
        except (ValueError, TypeError, KeyError):
            return walk, "recorded position unreadable: started at page 0"
        if filenode != walk.filenode:
            return walk, "table rewritten since the last run (VACUUM FULL, TRUNCATE or CLUSTER): started at page 0"
        if walk.pages < pages or not 0 <= block < walk.pages:
            return walk, f"table shrank since the last run ({pages} pages, now {walk.pages}): started at page 0"
        return dataclasses.replace(walk, start=block), None

    def record(self, database: str, walk: TidRangeWalk, block: int | None) -> bool:
        """Keep ``block`` as the table's next start (None: the walk finished, forget it); False if Redis failed."""
        key = position_key(database, walk)
        try:
            if block is None:
                self.client.delete(key)
            else:
                value = json.dumps({"block": block, "filenode": walk.filenode, "pages": walk.pages})
                self.client.set(key, value, ex=POSITION_TTL_S)
        except redis.RedisError:
            self.unavailable = True
            return False
        return True


def walk_position(walk: TidRangeWalk, stopped_at: int | None, note: str | None, kept: bool | None) -> dict[str, Any]:
    """A ``tid-range`` walk's position in a routine's result."""
    return {"pages": walk.pages, "startedAt": walk.start, "stoppedAt": stopped_at, "note": note, "kept": kept}


def run_resumable(
    db: Database,
    walk: Walk,
    budget: Budget,
    dry_run: bool,
    positions: PositionStore | None,
    database: str,
    on_batch: Callable[[float], None] | None = None,
) -> tuple[Progress, dict[str, Any] | None]:
    """:func:`run_walk`; a ``tid-range`` walk starts where the last partial run stopped and records where it
    stops (not in a dry run, which always counts from page 0), and its position is returned for the result
    (None for the other walks)."""
    if not isinstance(walk, TidRangeWalk):
        return run_walk(db, walk, budget, dry_run, on_batch), None
    store = None if dry_run else positions
    note = None
    if store is not None:
        walk, note = store.resume(database, walk)
    progress = run_walk(db, walk, budget, dry_run, on_batch)
    stopped = walk.stopped_at(progress.position) if progress.partial else None
    kept = None
    if store is not None and note != UNAVAILABLE:
        kept = store.record(database, walk, stopped)
    return progress, walk_position(walk, stopped, note, kept)
