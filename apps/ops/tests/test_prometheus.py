"""Prometheus and Grafana as provisioned from deploy/ (docs/operations.md#metrics): promtool
accepts the scrape config and the rules; every metric the rules and the dashboard name is in
a live `/metrics` (a renamed metric fails here); and a real Prometheus (Debian's
/usr/bin/prometheus, on 127.0.0.1) scrapes a live stack with the repository's config and
rules, evaluates every rule without error, and a recording rule's query returns data."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from websockets.sync.client import connect

from apps.market.models import Source, Symbol
from apps.ops.processes import free_port
from apps.ops.tests.scrape import scrape_url
from apps.testing import BASE_DIR
from apps.testing.alpaca import AlpacaServer
from apps.testing.waiting import wait_for
from marketflux_site import serving

PROMETHEUS_DIR = BASE_DIR / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
DASHBOARDS = sorted((BASE_DIR / "deploy" / "grafana" / "dashboards").glob("*.json"))
WAIT = 90.0
METRIC = re.compile(r"\bmarketflux_[a-z0-9_]+\b")
RECORDED = re.compile(r"\bmarketflux:[a-z0-9_:]+\b")


def tool(name: str) -> str:
    found = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: apt-get install prometheus (it brings {name})")
    return found


def test_promtool_accepts_the_scrape_config_and_the_rules():
    assert RULES, "no rule files under deploy/prometheus/rules"
    config = subprocess.run(
        [tool("promtool"), "check", "config", "prometheus.yml"],
        cwd=PROMETHEUS_DIR, capture_output=True, text=True,
    )  # fmt: skip
    assert config.returncode == 0, config.stdout + config.stderr
    assert f"SUCCESS: {len(RULES)} rule files found" in config.stdout
    rules = subprocess.run(
        [tool("promtool"), "check", "rules", *map(str, RULES)], capture_output=True, text=True
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_the_slo_rules_compute_what_the_hand_worked_series_say():
    """promtool's rule unit tests (deploy/prometheus/tests/): each SLO ratio, the REST p99
    and its alert on series whose answers are worked out by hand (docs/operations.md#slos)."""
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*_test.yml"))
    assert tests
    done = subprocess.run(
        [tool("promtool"), "test", "rules", *map(str, tests)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def rule_expressions() -> tuple[list[str], set[str]]:
    """Every rule's expression, and the names the recording rules define."""
    expressions, recorded = [], set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expressions.append(rule["expr"])
                if "record" in rule:
                    recorded.add(rule["record"])
    return expressions, recorded


def dashboard_expressions() -> list[str]:
    found = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            found.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    for path in DASHBOARDS:
        walk(json.loads(path.read_text())["panels"])
    return found


def test_the_dashboard_reads_the_provisioned_prometheus_and_only_recorded_names_it_has():
    datasources = yaml.safe_load(
        (BASE_DIR / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in datasources if d["type"] == "prometheus"}
    _, recorded = rule_expressions()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in uids, panel["title"]
    used = {name for expr in dashboard_expressions() for name in RECORDED.findall(expr)}
    assert used
    assert used <= recorded, used - recorded
    titles = " ".join(
        p["title"].lower() for path in DASHBOARDS for p in json.loads(path.read_text())["panels"]
    )
    for topic in ("throughput", "lag", "stage", "sockets", "errors", "sources"):
        assert topic in titles, topic


class Prometheus:
    """Debian's Prometheus on 127.0.0.1, with the repository's config (its one target
    pointed at the test's server, scraped every second) and rules."""

    def __init__(self, tmp: Path, target: str) -> None:
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(path) for path in RULES]
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        jobs["marketflux"]["static_configs"][0]["targets"] = [target]
        self.port = free_port()
        jobs["prometheus"]["static_configs"][0]["targets"] = [f"127.0.0.1:{self.port}"]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def api(self, path: str, **params: str) -> object:
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def named_metrics() -> set[str]:
    expressions, _ = rule_expressions()
    return {name for e in expressions + dashboard_expressions() for name in METRIC.findall(e)}


def missing_from(web: str, named: set[str]) -> set[str]:
    """The named metrics a live /metrics lacks, once every process had time to report."""
    deadline, missing = time.monotonic() + WAIT, named
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        with contextlib.suppress(requests.RequestException, AssertionError):
            scraped = scrape_url(web)
            missing = named - scraped.names() - set(scraped.families)
    return missing


def live_stack(processes, alpaca: AlpacaServer, shared: dict[str, str], monkeypatch) -> tuple:
    """Worker, beat, Daphne, the live sources (one Alpaca source, on the loopback server)
    and two granian workers, all on one multiprocess directory; the two base URLs."""
    source = Source.objects.create(
        name="alpaca", kind=Source.ALPACA, url=alpaca.stream_url(), rest_url=alpaca.rest_url,
        key_env="TEST_ALPACA_KEY", secret_env="TEST_ALPACA_SECRET",  # noqa: S106 (names)
    )  # fmt: skip
    Symbol.objects.create(ticker="LIVE", name="Live", exchange="NASDAQ", source=source,
                          start_price=100.0)  # fmt: skip
    processes.celery_worker(**shared)
    processes.celery_beat(**shared)
    asgi = processes.daphne("daphne", **shared)
    processes.start("sources", ["manage.py", "run_sources"], **shared)
    monkeypatch.setenv("MARKETFLUX_WEB_PROCESSES", "2")
    monkeypatch.setenv("MARKETFLUX_WEB_THREADS", "2")
    port = free_port()
    processes.start("granian", serving.web_command("127.0.0.1", port)[1:], **shared)
    alpaca.wait_subscribed(trades=["LIVE"], timeout=WAIT)
    alpaca.send_trades([{"S": "LIVE", "i": 1, "x": "V", "p": 100.5, "s": 10, "c": ["@"],
                         "t": time.time_ns(), "z": "C"}])  # fmt: skip
    return f"http://127.0.0.1:{port}", asgi


def check_prometheus(prometheus: Prometheus) -> None:
    """Scraping the stack, every rule evaluated without error, the recording rule's data."""
    wait_for(prometheus.ready, timeout=WAIT, what="Prometheus")

    def target_up() -> bool:
        result = prometheus.api("query", query='up{job="marketflux"}')["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_for(target_up, timeout=WAIT, what="Prometheus scraping the live stack")

    def stored_rate() -> float:
        result = prometheus.api("query", query="marketflux:pipeline_ticks_stored:rate1m")
        return float(result["result"][0]["value"][1]) if result["result"] else 0.0

    # Five symbols every half second: about ten ticks a second, once the minute's window
    # holds more than the first few scrapes.
    wait_for(lambda: stored_rate() > 5, timeout=WAIT, interval=1, what="ticks a second, recorded")
    assert stored_rate() < 20

    def every_rule_evaluated() -> list | None:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        ran = all(not r.get("lastEvaluation", "0001").startswith("0001") for r in rules)
        return rules if ran else None

    rules = wait_for(every_rule_evaluated, timeout=WAIT, what="every rule evaluated")
    assert len(rules) == len(rule_expressions()[0])
    failing = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not failing
    workers = prometheus.api("query", query="marketflux_celery_workers")["result"]
    assert [w["value"][1] for w in workers] == ["1"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_prometheus_scrapes_a_live_stack_and_every_named_metric_exists(
    processes, market, redis_client, tmp_path, monkeypatch
):
    directory = tmp_path / "metrics"
    directory.mkdir()
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "TICK_INTERVAL": "0.5",
              "TEST_ALPACA_KEY": "AKPROM", "TEST_ALPACA_SECRET": "prom-secret"}  # fmt: skip
    with AlpacaServer(key="AKPROM", secret="prom-secret") as alpaca:  # noqa: S106
        web, asgi = live_stack(processes, alpaca, shared, monkeypatch)
        prometheus = Prometheus(tmp_path, web.removeprefix("http://"))
        try:
            with connect(asgi.replace("http://", "ws://", 1) + "/ws/market", proxy=None,
                         open_timeout=WAIT):  # fmt: skip
                missing = missing_from(web, named_metrics())
                assert not missing, f"named in rules or dashboard, not in /metrics: {missing}"
                check_prometheus(prometheus)
        finally:
            prometheus.stop()
