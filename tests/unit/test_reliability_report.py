"""tools/reliability.py judges what it reports: a skipped test is not a passed one, a connection bound with no
sample is not met, and the expected behaviour is the test's docstring as it is now."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import reliability

ROOT = Path(__file__).resolve().parents[2]


def _case(inner: str = "") -> ET.Element:
    return ET.fromstring(f'<testcase classname="tests.unit.test_x" name="test_y" time="0.1">{inner}</testcase>')  # noqa: S314


@pytest.mark.parametrize(
    ("inner", "passed", "observed"),
    [
        ("", True, ""),
        ('<skipped message="no Redis" />', False, "skipped: no Redis"),
        ("<skipped />", False, "skipped"),
        ('<failure message="assert 1 == 2">trace</failure>', False, "assert 1 == 2"),
        ('<error message="fixture broke" />', False, "fixture broke"),
    ],
    ids=["passed", "skipped-with-reason", "skipped", "failed", "error"],
)
def test_only_a_test_that_ran_and_passed_counts_as_passed(inner, passed, observed):
    assert reliability.outcome(_case(inner)) == (passed, observed)


@pytest.mark.parametrize(
    ("samples", "met"),
    [([], False), ([0, 0], False), ([1, 4, 3], True), ([4], True), ([2, 5], False)],
    ids=["no-samples", "none-seen", "within", "at-limit", "over"],
)
def test_the_connection_bound_needs_samples(samples, met):
    assert reliability.connections_within(samples, 4) is met


def test_the_report_reads_each_listed_module_and_no_docstring_reports_a_fixed_bug():
    """Every module the report runs exists, and no test docstring it copies still describes a fixed bug."""
    for module in reliability.TEST_MODULES:
        path = ROOT / module
        assert path.exists(), f"{module} is listed in tools/reliability.py but does not exist"
        docs = reliability._docstrings(path)
        tree = ast.parse(path.read_text())
        tests = [
            node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test")
        ]
        assert docs and set(tests) <= {name.rsplit(".", 1)[-1] for name in docs}, module
        stale = {name: doc for name, doc in docs.items() if doc.upper().startswith("BUG")}
        assert not stale, f"{module}: passing tests described as bugs: {stale}"


def test_a_partial_run_replaces_only_its_sections():
    """`--sections schemathesis` rewrites the Schemathesis section and keeps every other one as it was; a section
    the old report lacks is appended."""
    old = "# R\n\nintro\n\n## Load\n\nold load\n\n### detail\n\nold detail\n\n## Checkov\n\nold checkov\n"
    new = "# R\n\nnew intro\n\n## Load\n\nnew load\n\n## Checkov\n\nnew checkov\n\n## Schemathesis\n\nnew fuzz\n"
    merged = reliability.merge_sections(old, new, ["Load", "Schemathesis"])
    assert merged == "# R\n\nintro\n\n## Load\n\nnew load\n\n## Checkov\n\nold checkov\n\n## Schemathesis\n\nnew fuzz\n"
    assert reliability.merge_sections(merged, new, ["Schemathesis"]) == merged


def test_the_schemathesis_section_lists_figures_checks_and_operations():
    from collections import Counter

    from fuzz_api import CHECKS, FuzzResult

    result = FuzzResult(0, 12.0, operations=2, operations_tested=2, cases=40, seed="7",
                        checks={name: [10, 0] for name in CHECKS}, statuses={"GET /a": Counter({"200": 3, "404": 1})},
                        webhook_posts=2, commands=["schemathesis run openapi.yaml", "schemathesis run b"])  # fmt: skip
    text = "\n".join(reliability.schemathesis_section(result))
    assert "| 2 of 2 | 40 | 90 | 0 | 0 | 2 |" in text
    assert "| `not_a_server_error` | 10 | 0 |" in text and "| `GET /a` | 4 | 200: 3, 404: 1 |" in text
    assert "`schemathesis run openapi.yaml` then `schemathesis run b`" in text and "seed 7" in text
    assert "Not run (`--skip-schemathesis`)." in "\n".join(reliability.schemathesis_section(None))
