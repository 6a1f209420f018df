import re
from datetime import datetime

from parel_monitoring.health.app import AppHealthSettings, check_app_health, gigabytes, megabytes

MB_PATTERN = re.compile(r"^\d+\.\d{2} MB$")
GB_PATTERN = re.compile(r"^\d+\.\d{2} GB$")


def test_seed_fields_and_units_outside_lambda():
    result = check_app_health(AppHealthSettings(90.0))
    assert result["status"] == "healthy"
    assert datetime.fromisoformat(result["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert result["timestamp"].endswith("Z")
    uptime = result["uptime"]
    assert set(uptime) == {"ms", "seconds", "minutes", "hours"}
    assert uptime["seconds"] == uptime["ms"] // 1000 and uptime["hours"] == uptime["ms"] // 3_600_000
    assert MB_PATTERN.match(result["memory"]["process"]["rss"])
    assert MB_PATTERN.match(result["memory"]["process"]["heapUsed"])
    system = result["memory"]["system"]
    assert GB_PATTERN.match(system["total"]) and GB_PATTERN.match(system["free"])
    assert re.match(r"^\d+\.\d{2}$", system["usagePercent"]) and system["scope"] == "machine"
    assert result["runtime"]["python"].startswith("3.")


def test_inside_lambda_usage_is_against_configured_memory(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
    result = check_app_health(AppHealthSettings(90.0))
    system = result["memory"]["system"]
    assert system["total"] == "2.00 GB" and system["scope"] == "function"
    rss_mb = float(result["memory"]["process"]["rss"].split()[0])
    assert abs(float(system["usagePercent"]) - rss_mb / 2048 * 100) < 1
    assert result["runtime"]["memoryLimitMB"] == 2048


def test_unhealthy_above_the_threshold(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    assert check_app_health(AppHealthSettings(0.5))["status"] == "unhealthy"
    assert check_app_health(AppHealthSettings(100.0))["status"] == "healthy"


def test_human_units():
    assert megabytes(157_526_753) == "150.23 MB"
    assert gigabytes(16 * 1024**3) == "16.00 GB"
