"""Availability of the uptime probe targets, read back from CloudWatch (GET /api/admin/uptime).

ProbeFunction writes ``ProbeSuccess`` (1 or 0 per probe) per target as EMF into the namespace
``ParelMonitoring`` with the dimensions ``service``, ``Stage`` and ``Target``. A target's availability
over a window is the metric's Average over that window times 100, the same arithmetic as the dashboard's
widgets and the SLO alarms: one ``GetMetricData`` call per window (24 h, 7 d, 30 d), each with one
query per target whose period is the whole window, so each query answers one number. CloudWatch aligns
a period of an hour or more to the hour, so a window ends at most an hour before now. A target without
a probe in the window has ``null``: no data is not 100 %.

boto3 is imported at the first request, never at init: the route is admin-only and rare.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from parel_monitoring.clock import utc_now_iso
from parel_monitoring.metrics import NAMESPACE

METRIC = "ProbeSuccess"
WINDOWS = (("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)))


@cache
def cloudwatch_client() -> Any:
    import boto3

    return boto3.client("cloudwatch")


def _query(index: int, target: str, period_s: int, service: str, stage: str) -> dict[str, Any]:
    dimensions = [{"Name": "service", "Value": service}, {"Name": "Stage", "Value": stage},
                  {"Name": "Target", "Value": target}]  # fmt: skip
    return {
        "Id": f"t{index}",
        "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": METRIC, "Dimensions": dimensions},
            "Period": period_s,
            "Stat": "Average",
        },
        "ReturnData": True,
    }


def availability(
    targets: list[str], service: str, stage: str, client: Any = None, now: datetime | None = None
) -> dict[str, Any]:
    """``{"windows": [...], "targets": [{"name", "availability": {"24h": pct|None, ...}}], "generatedAt"}``."""
    if targets and client is None:  # no target, no client (and no AWS lookup at all)
        client = cloudwatch_client()
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    found: dict[str, dict[str, float | None]] = {name: {} for name in targets}
    for label, window in WINDOWS:
        period_s = int(window.total_seconds())
        queries = [_query(index, name, period_s, service, stage) for index, name in enumerate(targets)]
        values: dict[str, list[float]] = {}
        for start in range(0, len(queries), 500):  # GetMetricData: at most 500 queries per call
            kwargs: dict[str, Any] = {"MetricDataQueries": queries[start : start + 500],
                                      "StartTime": end - window, "EndTime": end}  # fmt: skip
            while True:
                page = client.get_metric_data(**kwargs)
                for result in page.get("MetricDataResults", []):
                    values.setdefault(result["Id"], []).extend(result.get("Values", []))
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        for index, name in enumerate(targets):
            points = values.get(f"t{index}") or []
            # One period per window; should CloudWatch split it at an hour boundary, the newest point counts.
            found[name][label] = round(points[0] * 100, 3) if points else None
    return {
        "windows": [label for label, _ in WINDOWS],
        "targets": [{"name": name, "availability": found[name]} for name in targets],
        "generatedAt": utc_now_iso(),
    }
