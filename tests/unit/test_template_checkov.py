"""checkov on the transformed template: every finding fixed or accepted with its reason (tools/checkov_review.py).
Needs `make checkov` (its own virtualenv); about 6 s per run."""

from __future__ import annotations

import copy

from checkov_review import ACCEPTED, FIXED, review, review_template

from sam_template import load


def test_every_checkov_finding_is_fixed_or_accepted():
    result = review_template()
    assert result.passed > 100, "checkov ran almost no check: is the transformed template read at all?"
    assert not result.problems, [(v.verdict, v.check_id, v.resources) for v in result.problems]
    assert {v.check_id for v in result.verdicts if v.verdict == "fixed"} == set(FIXED)


def test_a_fixed_finding_that_comes_back_fails_the_review():
    broken = copy.deepcopy(load())
    del broken["Resources"]["HealthDbFunction"]["Properties"]["ReservedConcurrentExecutions"]
    problems = review_template(broken).problems
    assert [(v.verdict, v.check_id, v.resources) for v in problems] == [
        ("FIXED CHECK FAILS", "CKV_AWS_115", ("HealthDbFunction",))
    ]


def _report(*failed: tuple[str, str]) -> dict:
    checks = [{"check_id": check, "check_name": check, "resource": f"AWS::Lambda::Function.{resource}"}
              for check, resource in failed]  # fmt: skip
    passing = [{"check_id": check, "check_name": check, "resource": "AWS::Lambda::Function.X"} for check in FIXED]
    return {"results": {"failed_checks": checks, "passed_checks": passing}, "summary": {"checkov_version": "test"}}


def test_a_finding_neither_fixed_nor_accepted_fails_the_review():
    problems = review(_report(("CKV_AWS_999", "HealthDbFunction"))).problems
    assert [(v.verdict, v.check_id) for v in problems] == [("NOT ACCEPTED", "CKV_AWS_999")]


def test_an_accepted_check_on_a_resource_outside_its_scope_fails_the_review():
    """Outside the VPC is accepted for the four functions that reach nothing private, not for a database one."""
    assert ACCEPTED["CKV_AWS_117"][0] is not None
    result = review(_report(("CKV_AWS_117", "AlertsFunction"), ("CKV_AWS_117", "HealthDbFunction")))
    assert [(v.verdict, v.resources) for v in result.verdicts if v.check_id == "CKV_AWS_117"] == [
        ("accepted", ("AlertsFunction",)),
        ("NOT ACCEPTED", ("HealthDbFunction",)),
    ]
