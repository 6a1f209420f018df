"""Schemathesis against the local API (tools/fuzz_api.py), bounded: a few cases per operation and phase.

The full run (more cases) is `make reliability SECTIONS=schemathesis`; both fail on any Schemathesis failure."""

from __future__ import annotations

import pytest

from fuzz_api import CHECKS, fuzz

# Small and seeded: every phase (examples, coverage, fuzzing) on every operation within about a minute here.
MAX_EXAMPLES, SEED = 5, 20261129
HEALTH_ROUTES = ("/api/health", "/api/health/app", "/api/health/db", "/api/health/queue", "/api/health/uptime")


@pytest.fixture(scope="module")
def run(built):
    return fuzz(max_examples=MAX_EXAMPLES, workers=2, seed=SEED, build_dir=built)


def test_schemathesis_finds_no_failure_against_the_local_api(run):
    """Every operation of openapi.yaml tested, every check run, no failure: a failure's curl reproduction (token
    filtered) is the assertion message."""
    assert run.passed, f"Schemathesis: {run.failures or run.errors}\n{run.output[-12000:]}"
    assert run.operations_tested == run.operations > 0, run.output[-3000:]
    assert set(run.checks) == set(CHECKS), run.checks
    assert all(total > 0 and failed == 0 for total, failed in run.checks.values()), run.checks


def test_the_run_reached_the_functions_and_the_webhook_sink(run):
    """The answers are the functions' own (not the local gateway's 500 or 429), the alerts route delivered to the
    webhook stand-ins, the admin routes were also tried without the token (ignored_auth: 401), and the health
    routes were called anonymously too (their public documents)."""
    answers = {status.split()[0] for counts in run.statuses.values() for status in counts}
    assert not answers & {"500", "429"}, run.statuses
    assert run.statuses["POST /api/admin/alerts"]["200"] > 0 and run.webhook_posts > 0, run.statuses
    assert run.statuses["POST /api/admin/heal"]["200"] > 0, run.statuses
    assert all(run.statuses[label]["401"] > 0 for label in run.statuses if " /api/admin/" in label), run.statuses
    anonymous = {label for label in run.statuses if label.endswith(" (anonymous)")}
    assert anonymous == {f"GET {path} (anonymous)" for path in HEALTH_ROUTES}, run.statuses
    assert all(run.statuses[label]["200"] > 0 for label in anonymous), run.statuses
