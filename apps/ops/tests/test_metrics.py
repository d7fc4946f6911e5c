"""`GET /metrics` (docs/operations.md#metrics): for the allowed scrapers only; the build it
runs; REST requests counted by route template, method and status; and, in multiprocess
mode, one scrape of one process that sums every process of the host (two granian workers
and a Daphne here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime

import pytest
import requests

from apps.ingest.tasks import tick
from apps.ops.metrics import FOLD_EVERY
from apps.ops.processes import free_port
from apps.ops.tests.scrape import delta, scrape_client, scrape_url
from apps.testing import BASE_DIR
from apps.testing.waiting import wait_for
from marketflux_site import serving

FOREIGN = "203.0.113.7"  # TEST-NET-3: an address that is no scraper


@pytest.mark.django_db
def test_metrics_answers_the_allowed_networks_and_the_token_only(client, settings):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1

    refused = client.get("/metrics", REMOTE_ADDR=FOREIGN)
    assert refused.status_code == 403
    assert b"marketflux_" not in refused.content

    # Behind one proxy on this machine, the client is the address the proxy saw: a foreign
    # one is refused, even when it wrote a loopback address into the header itself.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR=FOREIGN).status_code == 403
    spoofed = client.get("/metrics", HTTP_X_FORWARDED_FOR=f"127.0.0.1, {FOREIGN}")
    assert spoofed.status_code == 403
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200

    # Another network allowed: its addresses get in, loopback no longer does.
    settings.MARKETFLUX_METRICS_ALLOW = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics").status_code == 403

    # A bearer token lets a scraper in from anywhere; a wrong one does not.
    settings.MARKETFLUX_METRICS_TOKEN = "scrape-secret-1"  # noqa: S105
    bearer = {"HTTP_AUTHORIZATION": "Bearer scrape-secret-1"}
    assert client.get("/metrics", REMOTE_ADDR=FOREIGN, **bearer).status_code == 200
    wrong = {"HTTP_AUTHORIZATION": "Bearer scrape-secret-2"}
    assert client.get("/metrics", REMOTE_ADDR=FOREIGN, **wrong).status_code == 403


def test_a_malformed_allowed_network_stops_the_start_naming_the_setting():
    env = {**os.environ, "MARKETFLUX_METRICS_ALLOW": "127.0.0.1/32,not-a-network"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**env, "DJANGO_SETTINGS_MODULE": "marketflux_site.settings"},
        capture_output=True, text=True, cwd=BASE_DIR,
    )  # fmt: skip
    assert done.returncode != 0
    assert "MARKETFLUX_METRICS_ALLOW" in done.stderr
    assert "not-a-network" in done.stderr


@pytest.mark.django_db
def test_build_info_names_the_version_the_commit_and_timescaledb(client):
    version = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]["version"]
    commit = subprocess.run(
        [shutil.which("git") or "git", "-C", str(BASE_DIR), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        timescale = "true" if cursor.fetchone()[0] else "false"

    scrape = scrape_client(client)
    assert scrape.labelled("marketflux_build_info") == [
        {"version": version, "commit": commit, "timescaledb": timescale}
    ]
    assert scrape.value("marketflux_build_info", version=version, commit=commit,
                        timescaledb=timescale) == 1  # fmt: skip
    assert scrape.value("marketflux_db_up") == 1


def _slot() -> float:
    now = datetime.now(UTC).timestamp()
    return now - now % 0.5


@pytest.mark.django_db(transaction=True)
def test_rest_requests_are_counted_by_route_template_method_and_status(
    client, market, fresh_state, reset_simulator_cache
):
    tick.apply(kwargs={"shard": 0, "shards": 1, "scheduled_ts": _slot()})  # a hot state
    price, page = "/api/v1/stocks/{symbol}/price", "unmatched"
    before = scrape_client(client)

    for _ in range(3):  # anonymous JSON reads: the lean path
        assert client.get("/api/v1/stocks/AAPL/price").status_code == 200
    assert client.get("/api/v1/stocks/MSFT/price", HTTP_ACCEPT="text/html").status_code == 200
    assert client.get("/api/v1/stocks/NOPE/price").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert client.post("/api/v1/stocks/AAPL/price").status_code in (401, 403, 405)
    after = scrape_client(client)

    total = "marketflux_http_requests_total"
    assert delta(before, after, total, route=price, method="GET", status="200") == 4
    assert delta(before, after, total, route=price, method="GET", status="404") == 1
    assert delta(before, after, total, route=page, method="GET", status="404") == 1
    posted = [
        labels for labels in after.labelled(total)
        if labels["route"] == price and labels["method"] == "POST"
    ]  # fmt: skip
    assert len(posted) == 1
    assert delta(before, after, total, **posted[0]) == 1
    seconds = "marketflux_http_request_duration_seconds_count"
    assert delta(before, after, seconds, route=price, method="GET") == 5
    buckets = "marketflux_http_request_duration_seconds_bucket"
    assert delta(before, after, buckets, route=price, method="GET", le="+Inf") == 5
    assert delta(before, after, buckets, route=price, method="GET", le="10.0") == 5
    took = delta(before, after, "marketflux_http_request_duration_seconds_sum", route=price,
                 method="GET")  # fmt: skip
    assert 0 < took < 10 * 5
    # Nothing is labelled with a path itself: no ticker in any route.
    assert not [labels for labels in after.labelled(total) if "AAPL" in labels["route"]]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_one_scrape_sums_every_process_of_the_host(processes, tmp_path, monkeypatch):
    """Two granian workers and a Daphne write one directory; whichever process answers
    /metrics counts the requests all three served."""
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    monkeypatch.setenv("MARKETFLUX_WEB_PROCESSES", "2")
    monkeypatch.setenv("MARKETFLUX_WEB_THREADS", "2")
    port = free_port()
    processes.start("granian", serving.web_command("127.0.0.1", port)[1:], **shared)
    web = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(web), timeout=60, what="granian")
    asgi = processes.daphne("daphne", **shared)

    health = {"route": "/health", "method": "GET", "status": "200"}
    total = "marketflux_http_requests_total"

    def settled():
        """A scrape once the start-up probes' /health requests are all folded in: the
        count no longer moves over a fold period."""
        first = scrape_url(web)
        time.sleep(FOLD_EVERY + 0.2)
        second = scrape_url(web)
        return second if second.value(total, **health) == first.value(total, **health) else None

    before = wait_for(settled, timeout=30, what="the start-up requests counted")
    session = requests.Session()
    for _ in range(20):
        assert session.get(f"{web}/health", timeout=10).ok
    for _ in range(3):
        assert requests.get(f"{asgi}/health", timeout=10).ok  # a new connection each
    for _ in range(5):
        assert requests.get(f"{asgi}/health", timeout=10).ok

    # Each process folds its counts into the shared files once a second.
    def all_counted():
        scraped = scrape_url(web)
        return scraped if delta(before, scraped, total, **health) >= 28 else None

    from_web = wait_for(all_counted, timeout=10, what="28 /health requests counted")
    from_asgi = scrape_url(asgi)

    # Both tiers' answers agree: the sum of every process, whoever is asked.
    assert delta(before, from_web, total, **health) == 28
    assert from_asgi.value(total, **health) == from_web.value(total, **health)
    assert delta(before, from_web, "marketflux_http_request_duration_seconds_count",
                 route="/health", method="GET") == 28  # fmt: skip


def _answers(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=1).ok
    except requests.RequestException:
        return False


@pytest.mark.django_db(transaction=True)
def test_a_tick_that_cannot_reach_redis_is_retried_and_each_error_counted(
    client, market, settings, fresh_state
):
    before = scrape_client(client)
    reachable = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    try:
        result = tick.apply(kwargs={"shard": 0, "shards": 1, "scheduled_ts": _slot()})
    finally:
        settings.REDIS_URL = reachable
    assert result.failed()
    after = scrape_client(client)
    # The first try and its 5 retries (the task's max_retries), each refused once.
    retries = "marketflux_tick_retries_total"
    assert delta(before, after, retries, error="ConnectionError") == 5
    errors = "marketflux_redis_errors_total"
    assert delta(before, after, errors, error="ConnectionError") == 6
    # After the last, its slot is lost: counted as dropped, not as one more retry.
    assert delta(before, after, "marketflux_tick_dropped_total", reason="failed") == 1
