"""checkov on the template SAM deploys, every finding reviewed: fixed, or accepted with its reason.

checkov runs on the transformed template (tools/sam_template.py: SAM's own transform, as JSON, the
CloudFormation framework), not on template.yaml, whose SAM resources it would mostly not understand.
It lives in its own virtualenv (``make checkov``: requirements-checkov.txt), because checkov pins a boto3
that conflicts with the one the rest of the tooling pins. ``--skip-download``: no call to the vendor's API.

A finding is a failed check on one resource. Each must be ACCEPTED (this check on these resources, for
the reason given) or the review fails; each FIXED check must pass on every resource it applies to.
Used by ``make reliability`` (a section of RELIABILITY.md) and tests/unit/test_template_checkov.py.

    PYTHONPATH=tools .venv/bin/python tools/checkov_review.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sam_template import transform

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".cache" / "checkov-venv" / "bin" / "checkov"
TIMEOUT_S = 300

NON_VPC_FUNCTIONS = ("HealthAppFunction", "DashboardFunction", "AdminAuthorizerFunction", "AlertsFunction",
                     "ProbeFunction", "HealthUptimeFunction", "AdminUptimeFunction", "OpenApiFunction")  # fmt: skip

# check id -> how this repository fixed it: checkov reported it before (issue 11) and must now pass
# everywhere it applies. (The other least-privilege fixes of issue 11 were no checkov findings: the
# template tests hold them.)
FIXED = {
    "CKV_AWS_115": "every function has reserved concurrency from a stack parameter (README, Bounded footprint)",
}

# check id -> (the resources it is accepted on, or None for all; the reason).
ACCEPTED: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "CKV_AWS_116": (
        None,
        "A dead-letter queue only receives failed asynchronous invocations. The health, dashboard and authorizer "
        "functions are only invoked synchronously (API Gateway), so one would stay empty; HealFunction and "
        "AlertsFunction send failed asynchronous events to SQS on-failure destinations (EventInvokeConfig, the "
        "successor of DeadLetterConfig, which checkov does not read); the schedules have their own dead-letter "
        "queue; a failed sweep (MonitorFunction) is replaced by the next one 5 minutes later and raises the "
        "function-errors alarm.",
    ),
    "CKV_AWS_117": (
        NON_VPC_FUNCTIONS,
        "These functions reach nothing private: the app check, the static monitoring page, the static API contract "
        "and the authorizer touch "
        "no network resource, and AlertsFunction calls the Slack and Discord webhooks on the internet (in a VPC it "
        "would need a NAT gateway); the uptime probes (ProbeFunction, GET /api/health/uptime) call the app's "
        "public URLs like a visitor, and GET /api/admin/uptime calls the CloudWatch API. The five functions that "
        "reach PostgreSQL or Redis join the VPC when SubnetIds are given.",
    ),
    "CKV_AWS_158": (
        None,
        "CloudWatch Logs encrypts every log group at rest by default. The log lines carry no secrets (every "
        "secret value is registered with the scrubber; tests/integration/test_no_secret_leaks.py), so a customer "
        "managed key would add a key policy to maintain and a monthly cost without protecting anything more.",
    ),
    "CKV_AWS_173": (
        None,
        "Lambda encrypts environment variables at rest with an AWS managed key. Ours hold settings and secret "
        "ARNs, never secret values: secrets arrive from Secrets Manager at run time (the settings test keeps "
        "DATABASE_URL, REDIS_URL, ... empty in the template).",
    ),
    "CKV_AWS_27": (
        None,
        "The three dead-letter queues are encrypted at rest with SQS managed keys (SqsManagedSseEnabled); checkov "
        "only accepts a KMS key. They hold heal and alert events (correlation IDs, options, alert texts), no "
        "secrets; a customer managed key would have to be granted to Lambda's destinations and the Scheduler.",
    ),
}


@dataclass(frozen=True)
class Verdict:
    check_id: str
    check_name: str
    verdict: str  # "fixed", "accepted", "NOT ACCEPTED", "FIXED CHECK FAILS", "FIXED CHECK NOT RUN"
    resources: tuple[str, ...]
    reason: str

    @property
    def ok(self) -> bool:
        return self.verdict in ("fixed", "accepted")


@dataclass(frozen=True)
class Review:
    version: str
    passed: int
    failed: int
    verdicts: list[Verdict]

    @property
    def problems(self) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if not verdict.ok]


def run_checkov(template: dict) -> dict:
    """checkov's JSON report on ``template`` (a transformed template)."""
    if not CHECKOV.exists():
        raise RuntimeError(f"{CHECKOV.relative_to(ROOT)} not found: run `make checkov` (requirements-checkov.txt)")
    with tempfile.TemporaryDirectory(prefix="parel-checkov-") as tmp:
        path = Path(tmp) / "template.json"
        path.write_text(json.dumps(template, indent=1))
        command = [str(CHECKOV), "-f", str(path), "--framework", "cloudformation", "-o", "json", "--skip-download"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode not in (0, 1):  # 1: some check failed
        raise RuntimeError(f"checkov exited {done.returncode}: {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def review(report: dict) -> Review:
    results = report.get("results", {})
    failed, passed = results.get("failed_checks", []), results.get("passed_checks", [])
    names = {check["check_id"]: check["check_name"] for check in failed + passed}
    failing: dict[str, list[str]] = {}
    for check in failed:
        failing.setdefault(check["check_id"], []).append(check["resource"].split(".", 1)[-1])
    passing: dict[str, list[str]] = {}
    for check in passed:
        passing.setdefault(check["check_id"], []).append(check["resource"].split(".", 1)[-1])
    verdicts = []
    for check_id, how in FIXED.items():
        if check_id in failing:
            verdicts.append(
                Verdict(check_id, names[check_id], "FIXED CHECK FAILS", tuple(sorted(failing[check_id])), how)
            )
        elif check_id not in passing:
            verdicts.append(Verdict(check_id, check_id, "FIXED CHECK NOT RUN", (), how))
        else:
            verdicts.append(Verdict(check_id, names[check_id], "fixed", tuple(sorted(passing[check_id])), how))
    for check_id, resources in sorted(failing.items()):
        if check_id in FIXED:
            continue
        scope, reason = ACCEPTED.get(check_id, ((), ""))
        accepted = [r for r in resources if scope is None or r in scope]
        rejected = [r for r in resources if r not in accepted]
        if accepted:
            verdicts.append(Verdict(check_id, names[check_id], "accepted", tuple(sorted(accepted)), reason))
        if rejected:
            reason = "neither fixed nor accepted: fix it, or add it to ACCEPTED with the reason"
            verdicts.append(Verdict(check_id, names[check_id], "NOT ACCEPTED", tuple(sorted(rejected)), reason))
    version = report.get("summary", {}).get("checkov_version", "?")
    return Review(version, len(passed), len(failed), verdicts)


def review_template(template: dict | None = None) -> Review:
    """checkov on the transformed ``template`` (default: template.yaml), reviewed."""
    return review(run_checkov(transform(template)))


if __name__ == "__main__":
    result = review_template()
    print(f"checkov {result.version}: {result.passed} passed, {result.failed} failed")
    for verdict in result.verdicts:
        print(f"{verdict.verdict:>18}  {verdict.check_id}  {', '.join(verdict.resources)}")
    sys.exit(1 if result.problems else 0)
