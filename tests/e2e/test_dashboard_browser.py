"""GET /admin/monitor in a real headless Chromium, against the local API with real services behind it.

Anonymous, the page shows statuses only (the health routes give nothing more); an operator pastes the
admin token (kept in the tab's sessionStorage, sent as the Authorization header, never in a URL) to see
the figures.

PostgreSQL is the shared server (a database of the test's own), Redis a throwaway server of the
test's own, so it can be killed to watch the queue card turn red on the next poll. Screenshots go
to tests/artifacts/ (git-ignored). Debian's Chromium and ChromeDriver are required: missing is a
failure, never a skip, and selenium never downloads a browser or driver.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from probe_servers import Sites
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import services
from bullmq_scenario import run_scenario, unique_prefix
from live_workers import live_workers
from local_api import LocalApi

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
HP = "high-priority"
TOKEN = "browser-admin-token-4e8a2c6b0d"
TOKEN_KEY = "parel-monitor-admin-token"
GREEN, RED = "rgb(26, 127, 55)", "rgb(207, 34, 46)"  # the page's --healthy / --unhealthy
YELLOW = "rgb(212, 167, 44)"  # --degraded
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1100",
)  # fmt: skip

# Everything the assertions need from the page, read in one round trip (the cards re-render every poll).
SNAPSHOT_JS = """
const rows = (card) => Object.fromEntries([...card.querySelectorAll("tr[data-queue]")].map((row) => [
  row.dataset.queue, Object.fromEntries([...row.querySelectorAll("[data-count]")].map(
    (cell) => [cell.dataset.count, Number(cell.textContent)]))]));
const cell = (row, figure) => {
  const td = row.querySelector(`[data-figure="${figure}"]`);
  return td && {text: td.textContent, title: td.title, over: td.classList.contains("over")};
};
const liveness = (card) => Object.fromEntries([...card.querySelectorAll("tr[data-queue]")].map((row) => [
  row.dataset.queue, {workers: cell(row, "workers"), age: cell(row, "oldest-age")}]));
const cards = Object.fromEntries([...document.querySelectorAll("[data-component]")].map((card) => {
  const badge = card.querySelector(".badge");
  return [card.dataset.component, {
    status: card.dataset.status, badge: badge.textContent, colour: getComputedStyle(badge).backgroundColor,
    lastOk: Number(card.dataset.lastOk || 0), problem: card.querySelector(".problem").textContent,
    details: card.dataset.details || "", notice: card.querySelector(".notice").textContent,
    age: card.querySelector("[data-role=age]").textContent,
    fields: Object.fromEntries([...card.querySelectorAll(":scope > dl [data-field]")].map(
      (d) => [d.dataset.field, d.textContent])),
    targets: [...card.querySelectorAll("[data-target]")].map((t) => ({
      name: t.dataset.target, status: t.dataset.status, badge: t.querySelector(".badge").textContent,
      colour: getComputedStyle(t.querySelector(".badge")).backgroundColor,
      problem: t.querySelector(".problem").textContent,
      fields: Object.fromEntries([...t.querySelectorAll("[data-field]")].map(
        (d) => [d.dataset.field, d.textContent]))})),
    queues: rows(card), liveness: liveness(card),
    redis: Object.fromEntries([...card.querySelectorAll("[data-role=redis] [data-field]")].map(
      (d) => [d.dataset.field, {text: d.textContent, over: d.classList.contains("over")}]))}];
}));
const note = document.getElementById("access-note");
return {cards, overall: document.getElementById("overall").textContent,
        availabilityNote: document.querySelector("[data-role=availability]").textContent,
        lastRefresh: document.getElementById("last-refresh").textContent,
        mode: document.getElementById("access-mode").dataset.mode, note: note.textContent,
        noteWarns: note.classList.contains("warn"), stored: sessionStorage.getItem("parel-monitor-admin-token"),
        forgetHidden: document.getElementById("token-forget").hidden};
"""


@pytest.fixture
def chromium(tmp_path):
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    assert not missing, (
        f"{', '.join(missing)} not installed: the dashboard test needs Debian's Chromium and ChromeDriver "
        "(apt-get install -y chromium chromium-driver, or `make browser-deps`)"
    )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    yield driver
    driver.quit()


@pytest.fixture
def redis_server(tmp_path):
    """A throwaway Redis of this test's own (never the shared one on 6379): ``(process, url)``."""
    server = shutil.which("redis-server")
    assert server, "redis-server not found (apt-get install redis-server)"
    port = services._free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*argv, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        services._wait_listening(port, "Redis")
        yield process, f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


def wait_for(driver, condition: Callable[[dict[str, Any]], bool], what: str, timeout: float) -> dict[str, Any]:
    """Poll the page until ``condition(snapshot)``; on timeout fail with the last snapshot."""
    last: dict[str, Any] = {}

    def met(d) -> dict[str, Any] | bool:
        last.update(d.execute_script(SNAPSHOT_JS))
        return condition(last) and dict(last)

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(met)
    except TimeoutException:
        pytest.fail(f"{what} not seen within {timeout} s; page: {last}")


def others_keep_polling(driver, since: dict[str, Any]) -> None:
    """The app and db cards answer again after ``since`` and are still healthy (green)."""
    after = wait_for(
        driver,
        lambda s: all(s["cards"][name]["lastOk"] > since["cards"][name]["lastOk"] for name in ("app", "db")),
        "new app and db polls",
        timeout=15,
    )
    assert [(after["cards"][name]["status"], after["cards"][name]["colour"]) for name in ("app", "db")] == [
        ("healthy", GREEN)] * 2, after  # fmt: skip


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, f"{path} is not a real PNG"


def enter_token(driver, token: str) -> None:
    """What an operator does: paste the token into the field and press the button."""
    field = driver.find_element(By.ID, "token-input")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "token-save").click()
    assert field.get_attribute("value") == "", "the token stays visible in the field"


def all_healthy(snapshot: dict[str, Any]) -> bool:
    return all(card["status"] == "healthy" for card in snapshot["cards"].values())


def test_dashboard_shows_live_health_and_a_dead_redis(built, chromium, redis_server, database_url):
    redis_process, redis_url = redis_server
    prefix = unique_prefix("dash")
    run_scenario("populate", prefix, HP, redis_url, waiting=3, completed=5)
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "QUEUE_NAMES": HP, "BULLMQ_PREFIX": prefix,
           "HIGH_PRIORITY_QUEUE": HP, "ADMIN_API_TOKEN": TOKEN}  # fmt: skip

    with LocalApi(build_dir=built, extra_env=env) as api:
        page = f"{api.url}/admin/monitor"
        with urllib.request.urlopen(page, timeout=30) as response:  # noqa: S310 - our own local URL
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/html")
            csp = response.headers["content-security-policy"] or ""
        for directive in ("default-src 'none'", "script-src 'unsafe-inline'", "connect-src 'self'"):
            assert directive in csp, f"CSP {csp!r} lacks {directive!r}"

        # Anonymous: every status, no figure (the routes answer with none).
        chromium.get(f"{page}?interval=2&timeout=1.5")
        anonymous = wait_for(
            chromium, lambda s: all_healthy(s) and s["mode"] == "anonymous", "three healthy cards, anonymous", 30
        )
        assert {card["colour"] for card in anonymous["cards"].values()} == {GREEN}
        for card in anonymous["cards"].values():
            assert card["fields"] == {} and card["queues"] == {} and card["details"] == "false"
            assert card["notice"] == "Figures are shown to the admin token only."
        assert anonymous["overall"] == "healthy" and anonymous["stored"] is None and anonymous["forgetHidden"]
        screenshot(chromium, "dashboard-anonymous.png")

        # A wrong token: still statuses only, and the page says why.
        enter_token(chromium, "not-the-admin-token")
        refused = wait_for(chromium, lambda s: s["noteWarns"], "the refused-token note", 15)
        assert refused["mode"] == "anonymous" and refused["stored"] == "not-the-admin-token"
        assert "not accepted" in refused["note"] and not refused["forgetHidden"]

        # The operator pastes the real token: the figures appear on the next poll.
        enter_token(chromium, TOKEN)
        healthy = wait_for(
            chromium,
            lambda s: (
                all_healthy(s) and s["mode"] == "details"
                and s["cards"]["queue"]["queues"].get(HP, {}).get("waiting") == 3
            ),
            "all three cards healthy with the queue's counts",
            timeout=30,
        )  # fmt: skip
        app, db, queue = (healthy["cards"][name] for name in ("app", "db", "queue"))
        assert {card["badge"] for card in (app, db, queue)} == {"healthy"} and healthy["overall"] == "healthy"
        assert {card["colour"] for card in (app, db, queue)} == {GREEN}
        assert {"uptime", "memory", "rss", "python", "cold-start"} <= set(app["fields"])
        assert app["fields"]["python"].startswith("3.13")
        assert "threshold 1000ms" in db["fields"]["query-time"] and "max" in db["fields"]["connections"]
        assert queue["queues"][HP] == dict.fromkeys(("active", "failed", "delayed", "prioritized", "paused"), 0) | {
            "waiting": 3, "completed": 5}  # fmt: skip
        assert queue["fields"]["failure-rate"].startswith("0.00%") and queue["fields"]["lag"].startswith("3 jobs")
        assert healthy["lastRefresh"] != "never" and not healthy["noteWarns"] and healthy["stored"] == TOKEN
        # The token is in this tab's sessionStorage only: not in localStorage, a cookie or any URL.
        kept = chromium.execute_script(
            "return {local: JSON.stringify(localStorage), cookie: document.cookie, href: location.href,"
            " urls: performance.getEntriesByType('resource').map((e) => e.name)}"
        )
        assert TOKEN not in kept["local"] + kept["cookie"] + kept["href"] + " ".join(kept["urls"]), kept
        screenshot(chromium, "dashboard-healthy.png")

        # Redis frozen (SIGSTOP): the queue function hangs on its socket, the page gives up after 1.5 s.
        redis_process.send_signal(signal.SIGSTOP)
        hung = wait_for(
            chromium, lambda s: s["cards"]["queue"]["problem"].startswith("Error: no answer"), "a timeout", 20
        )
        assert hung["cards"]["queue"]["status"] == "unhealthy" and hung["cards"]["queue"]["colour"] == RED
        assert hung["cards"]["queue"]["queues"][HP]["waiting"] == 3  # the last good figures stay, dimmed
        others_keep_polling(chromium, hung)
        screenshot(chromium, "dashboard-redis-hung.png")

        # Redis dead: the queue route answers 503 with its full reason (the token sees it) on a following poll.
        redis_process.kill()
        redis_process.wait()
        # The request that hung on the frozen socket may answer first with "Connection reset by peer"; every
        # later poll opens a new connection and is refused: wait for that steady state.
        down = wait_for(
            chromium,
            lambda s: (
                s["cards"]["queue"]["problem"].startswith("Reason: ")
                and "Connection refused" in s["cards"]["queue"]["problem"]
            ),
            "a 503 reason naming the refused connection",
            25,
        )
        assert down["cards"]["queue"]["status"] == "unhealthy" and down["cards"]["queue"]["colour"] == RED
        assert down["cards"]["queue"]["queues"] == {} and down["overall"] == "unhealthy"
        others_keep_polling(chromium, down)
        screenshot(chromium, "dashboard-redis-down.png")

        # The token survives a reload (same tab); "Forget token" goes back to statuses and the category only.
        chromium.refresh()
        wait_for(chromium, lambda s: s["mode"] == "details" and s["stored"] == TOKEN, "details after a reload", 20)
        chromium.find_element(By.ID, "token-forget").click()
        forgotten = wait_for(
            chromium,
            lambda s: s["mode"] == "anonymous" and s["cards"]["queue"]["problem"] == "Reason: connection refused",
            "statuses only after forgetting the token",
            20,
        )
        assert forgotten["stored"] is None and forgotten["forgetHidden"] and forgotten["cards"]["app"]["fields"] == {}

        # Self-contained: every request the page made went to the API's own origin, only to the health routes.
        requested = chromium.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
        assert requested and all(name.startswith(f"{api.url}/") for name in requested), requested
        assert {urlsplit(name).path for name in requested} == {
        f"/api/health/{name}" for name in ("app", "db", "queue", "uptime")}  # fmt: skip
        console = [entry["message"] for entry in chromium.get_log("browser")]
        assert not [line for line in console if "Content Security Policy" in line or "Uncaught" in line], console


class CloudWatchStandIn:
    """An HTTP endpoint speaking CloudWatch's JSON protocol for GetMetricData (AWS_ENDPOINT_URL_CLOUDWATCH): while
    ``denied`` it refuses like IAM would; then it answers every query with ``AVERAGES`` by the query's period,
    except the second target's (``t1``), which has no data. It records what was asked."""

    AVERAGES = {86400: 1.0, 604800: 0.999, 2592000: 0.9995}

    def __init__(self) -> None:
        self.denied, self.queries = True, []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["content-length"])))
                stand_in.queries += request["MetricDataQueries"]
                if stand_in.denied:
                    status, answer = 400, {"__type": "AccessDenied", "message": "not authorized for the test"}
                else:
                    results = [stand_in.result(query) for query in request["MetricDataQueries"]]
                    status, answer = 200, {"MetricDataResults": results}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/x-amz-json-1.0")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def result(self, query: dict[str, Any]) -> dict[str, Any]:
        average = [] if query["Id"] == "t1" else [self.AVERAGES[query["MetricStat"]["Period"]]]
        return {"Id": query["Id"], "StatusCode": "Complete", "Timestamps": [time.time()] * len(average),
                "Values": average}  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cloudwatch():
    stand_in = CloudWatchStandIn()
    yield stand_in
    stand_in.close()


def test_uptime_cards_per_probe_target_statuses_for_anyone_figures_for_the_token(
    built, chromium, database_url, cloudwatch
):
    """A card per probe target (GET /api/health/uptime): state colours for anyone; latency, TTFB, HTTP status
    and certificate days only with the admin token; the targets are real local HTTP and HTTPS servers. With the
    token the page also asks GET /api/admin/uptime for the availability (AdminUptimeFunction reads it from a
    CloudWatch stand-in): refused, the card notes it without changing any status; answered, each target shows it."""
    with Sites() as sites:
        probe_targets = [
            {"name": "home", "url": f"{sites.http.base}/ok"},
            {"name": "api", "url": f"{sites.http.base}/unhealthy"},
            {"name": "slow", "url": f"{sites.http.base}/slow/600", "latencyWarnMs": 100},
            {"name": "secure", "url": f"{sites.https[10].base}/ok"},
        ]
        env = {"DATABASE_URL": database_url, "REDIS_URL": "redis://127.0.0.1:6379/0", "QUEUE_NAMES": HP,
               "BULLMQ_PREFIX": unique_prefix("dash-uptime"), "HIGH_PRIORITY_QUEUE": HP, "ADMIN_API_TOKEN": TOKEN,
               "PROBE_TARGETS": json.dumps(probe_targets), "PROBE_CA_BUNDLE": sites.ca_pem,
               "AWS_ENDPOINT_URL_CLOUDWATCH": cloudwatch.url, "AWS_MAX_ATTEMPTS": "1",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # fmt: skip
        with LocalApi(build_dir=built, extra_env=env) as api:
            chromium.get(f"{api.url}/admin/monitor?interval=2&timeout=5")

            def four_targets(s: dict[str, Any]) -> bool:
                return len(s["cards"]["uptime"]["targets"]) == 4

            anonymous = wait_for(chromium, four_targets, "four uptime target cards", 30)
            uptime = anonymous["cards"]["uptime"]
            assert uptime["status"] == "unhealthy" and uptime["colour"] == RED and anonymous["overall"] == "unhealthy"
            states = {t["name"]: (t["badge"], t["colour"]) for t in uptime["targets"]}
            assert states == {"home": ("up", GREEN), "api": ("down", RED), "slow": ("degraded", YELLOW),
                              "secure": ("up", GREEN)}  # fmt: skip
            by_name = {t["name"]: t for t in uptime["targets"]}
            assert by_name["api"]["problem"] == "Failure: status"
            assert all(t["fields"] == {} for t in uptime["targets"]) and uptime["details"] == "false"
            page_text = chromium.find_element(By.TAG_NAME, "body").text
            assert "127.0.0.1" not in page_text and " ms" not in page_text and "days left" not in page_text
            requested = chromium.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
            assert not [name for name in requested if "/api/admin/" in name], "an admin route without the token"
            screenshot(chromium, "dashboard-uptime-anonymous.png")

            enter_token(chromium, TOKEN)
            detailed = wait_for(
                chromium,
                lambda s: four_targets(s) and all(t["fields"] for t in s["cards"]["uptime"]["targets"]),
                "the uptime figures with the token",
                30,
            )
            by_name = {t["name"]: t for t in detailed["cards"]["uptime"]["targets"]}
            assert (
                by_name["home"]["fields"]["latency"].endswith(" ms")
                and by_name["home"]["fields"]["http-status"] == "200"
            )
            assert (
                by_name["home"]["fields"]["url"] == f"{sites.http.base}/ok"
                and "certificate-days" not in by_name["home"]["fields"]
            )
            assert by_name["secure"]["fields"]["certificate-days"] in ("9 days left", "10 days left")
            assert by_name["api"]["fields"]["http-status"] == "503" and by_name["api"]["problem"].startswith(
                "Failure: status: "
            )
            assert int(by_name["slow"]["fields"]["latency"].removesuffix(" ms")) >= 600
            assert detailed["cards"]["uptime"]["fields"]["targets"] == "4 (2 up, 1 degraded, 1 down)"
            noted = wait_for(
                chromium,
                lambda s: s["availabilityNote"].startswith("Availability unavailable: HTTP 502: cloudwatch"),
                "the availability note (CloudWatch refusing)",
                30,
            )
            assert "AccessDenied" in noted["availabilityNote"], noted["availabilityNote"]
            # Still unhealthy for the api target, not for CloudWatch.
            assert noted["cards"]["uptime"]["status"] == "unhealthy" and four_targets(noted)

            cloudwatch.denied = False
            shown = wait_for(
                chromium,
                lambda s: (
                    four_targets(s) and all("availability" in t["fields"] for t in s["cards"]["uptime"]["targets"])
                ),
                "the availability on every target card",
                30,
            )
            by_name = {t["name"]: t for t in shown["cards"]["uptime"]["targets"]}
            assert by_name["home"]["fields"]["availability"] == "24h 100.00 % · 7d 99.90 % · 30d 99.95 %"
            no_data = "24h \u2013 \u00b7 7d \u2013 \u00b7 30d \u2013"  # the page's dash: no data is not 100 %
            assert by_name["api"]["fields"]["availability"] == no_data
            assert shown["availabilityNote"] == ""
            asked = {(q["Id"], q["MetricStat"]["Period"]) for q in cloudwatch.queries}
            assert asked == {(f"t{n}", period) for n in range(4) for period in CloudWatchStandIn.AVERAGES}
            metric = next(q for q in cloudwatch.queries if q["Id"] == "t0")["MetricStat"]["Metric"]
            assert metric["Namespace"] == "ParelMonitoring" and metric["MetricName"] == "ProbeSuccess"
            assert {(d["Name"], d["Value"]) for d in metric["Dimensions"]} == {
                ("service", "parel-monitoring"), ("Stage", "dev"), ("Target", "home")}  # fmt: skip
            screenshot(chromium, "dashboard-uptime-details.png")
        console = [entry["message"] for entry in chromium.get_log("browser")]
        assert not [line for line in console if "Content Security Policy" in line or "Uncaught" in line], console


def test_queue_card_shows_workers_the_oldest_wait_and_redis_with_real_workers_present_then_gone(
    built, chromium, database_url, throwaway_redis
):
    """Issue 15 on the page, with the token: per queue the live workers (Node's count: two on each queue, one
    named) and the oldest waiting job's age; a Redis section with the evicting policy flagged and the memory
    against maxmemory. When the workers exit, the high-priority queue's waiting jobs are stranded: its workers
    cell turns red and the card unhealthy. Anonymous, none of it shows."""
    redis_url = throwaway_redis("maxmemory 256mb", "maxmemory-policy allkeys-lru")
    prefix = unique_prefix("dash-live")
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "QUEUE_NAMES": f"{HP},default",
           "BULLMQ_PREFIX": prefix, "HIGH_PRIORITY_QUEUE": HP, "ADMIN_API_TOKEN": TOKEN,
           "QUEUE_NO_WORKER_GRACE_S": "1"}  # fmt: skip
    run_scenario("populate", prefix, "default", redis_url, completed=4)  # its own worker, closed: jobs done
    with LocalApi(build_dir=built, extra_env=env) as api:
        with live_workers(prefix, [HP, "default"], redis_url, count=2, names=["mailer"]) as node_counts:
            assert node_counts == {HP: 2, "default": 2}
            run_scenario("populate", prefix, HP, redis_url, waiting=3)  # the workers process nothing: they wait
            chromium.get(f"{api.url}/admin/monitor?interval=2&timeout=5")
            anonymous = wait_for(chromium, lambda s: s["cards"]["queue"]["status"] == "degraded", "the queue card", 30)
            assert anonymous["cards"]["queue"]["liveness"] == {} and anonymous["cards"]["queue"]["redis"] == {}
            page_text = chromium.find_element(By.TAG_NAME, "body").text
            assert "allkeys-lru" not in page_text and "Redis" not in page_text

            enter_token(chromium, TOKEN)
            present = wait_for(
                chromium,
                lambda s: (s["cards"]["queue"]["liveness"].get(HP, {}).get("workers") or {}).get("text") == "2",
                "the workers of the high-priority queue",
                30,
            )
            queue = present["cards"]["queue"]
            assert queue["status"] == "degraded" and queue["colour"] == YELLOW  # the evicting policy, workers live
            assert {name: row["workers"] for name, row in queue["liveness"].items()} == {
                HP: {"text": "2", "title": "", "over": False},
                "default": {"text": "2", "title": "", "over": False},
            }
            age = queue["liveness"][HP]["age"]
            assert re.fullmatch(r"(0\.\d|\d+)s", age["text"]) and age["title"].endswith(" s") and not age["over"]
            assert queue["liveness"]["default"]["age"] == {"text": "\u2013", "title": "", "over": False}  # none waits
            policy, memory = queue["redis"]["redis-policy"], queue["redis"]["redis-memory"]
            assert policy["text"].startswith("allkeys-lru: BullMQ requires noeviction") and policy["over"]
            shown = r"[\d.]+ (KiB|MiB) of 256\.0 MiB \([\d.]+ %; warn 80 %, critical 90 %\)"
            assert re.fullmatch(shown, memory["text"]) and not memory["over"]
            assert "allkeys-lru" in queue["fields"]["reasons"]

        # The workers exit: the three high-priority jobs wait on with nobody to run them.
        gone = wait_for(
            chromium, lambda s: s["cards"]["queue"]["status"] == "unhealthy", "the stranded high-priority queue", 30
        )
        queue = gone["cards"]["queue"]
        assert queue["colour"] == RED and gone["overall"] == "unhealthy" and queue["queues"][HP]["waiting"] == 3
        assert queue["liveness"][HP]["workers"] == {"text": "0", "title": "", "over": True}
        assert queue["liveness"]["default"]["workers"] == {"text": "0", "title": "", "over": False}  # nothing waits
        assert re.fullmatch(r"\d+s", queue["liveness"][HP]["age"]["text"])
        assert "allkeys-lru" in queue["fields"]["reasons"] and "no live worker" in queue["fields"]["reasons"]
        assert "missing" not in queue["fields"]
        screenshot(chromium, "dashboard-queue-liveness.png")  # docs/img/monitor-dashboard.png in the README
        console = [entry["message"] for entry in chromium.get_log("browser")]
        assert not [line for line in console if "Content Security Policy" in line or "Uncaught" in line], console


def test_an_unknown_worker_count_shows_unknown_with_the_reason_on_hover(built, chromium, database_url, throwaway_redis):
    """A Redis that refuses CLIENT (as some hosted services do): the workers cell says "unknown", its title the
    reason; the status is the other signals' (healthy: nothing waits, noeviction, no maxmemory)."""
    redis_url = throwaway_redis('rename-command CLIENT ""')
    prefix = unique_prefix("dash-nocl")
    run_scenario("open", prefix, HP, redis_url)
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "QUEUE_NAMES": HP, "BULLMQ_PREFIX": prefix,
           "HIGH_PRIORITY_QUEUE": HP, "ADMIN_API_TOKEN": TOKEN}  # fmt: skip
    with LocalApi(build_dir=built, extra_env=env) as api:
        chromium.get(f"{api.url}/admin/monitor?interval=2&timeout=5")
        enter_token(chromium, TOKEN)
        shown = wait_for(chromium, lambda s: s["cards"]["queue"]["liveness"].get(HP), "the queue's row", 30)
        queue = shown["cards"]["queue"]
        workers = queue["liveness"][HP]["workers"]
        assert workers["text"] == "unknown" and "CLIENT" in workers["title"] and not workers["over"]
        assert queue["status"] == "healthy" and queue["colour"] == GREEN
        assert queue["redis"]["redis-policy"] == {"text": "noeviction", "over": False}
        assert queue["redis"]["redis-memory"]["text"].endswith(" used (no maxmemory limit)")
