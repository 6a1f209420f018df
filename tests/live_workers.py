"""Real BullMQ workers kept alive for a test: ``node tests/bullmq/scenario.mjs workers`` in the background.

    with live_workers(prefix, ["high-priority", "default"], redis_url, count=2, names=["mailer"]) as counts:
        counts  # {"high-priority": 2, "default": 2}: Node's queue.getWorkersCount() once they are all connected

The workers connect (BullMQ names their connections ``<prefix>:<base64 of the queue name>``, ``...:w:<name>``
for a named one: what ``getWorkers()`` reads from ``CLIENT LIST``) but process nothing unless ``run=True``, so
jobs added to their queue stay waiting. Leaving the block closes the process's stdin: the workers close
gracefully and the process exits (killed if it does not within the wait).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Sequence

from bullmq_scenario import REDIS_URL, SCENARIO, ScenarioError

START_TIMEOUT_S = 60


@contextlib.contextmanager
def live_workers(
    prefix: str, queues: Sequence[str], redis_url: str = REDIS_URL, *, count: int = 1,
    names: Sequence[str] = (), run: bool = False, major: int | None = None,
) -> Iterator[dict[str, int]]:  # fmt: skip
    argv = ["node", str(SCENARIO), "workers", "--redis", redis_url, "--prefix", prefix, "--queue", queues[0],
            "--queues", ",".join(queues), "--count", str(count)]  # fmt: skip
    argv += ["--names", ",".join(names)] if names else []
    argv += ["--run"] if run else []
    argv += ["--major", str(major)] if major else []
    process = subprocess.Popen(argv, cwd=SCENARIO.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = process.stdout.readline()  # the first document: once Node sees every worker (its own timeout)
        try:
            started = json.loads(line)
        except ValueError:
            process.kill()
            raise ScenarioError(f"scenario.mjs workers printed {line!r}: {process.communicate()[1]}") from None
        yield started["workersCount"]
    finally:
        if process.poll() is None:
            try:
                process.communicate(timeout=START_TIMEOUT_S)  # closes stdin: the workers close, the process exits
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
