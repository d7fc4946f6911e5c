"""The REST API end to end: a real Celery worker and beat feed the pipeline, a real Daphne
answers, and the test reads it over HTTP with `requests`, as an outside program would."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta
from urllib.parse import urljoin

import pytest
import requests

from apps.testing.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TICKERS = ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]
# docs/contracts.md#rest-api: the REST paths under /api/v1/ (alerts come with their own issue).
CONTRACT_PATHS = {
    "/api/v1/stocks",
    "/api/v1/stocks/{symbol}/price",
    "/api/v1/stocks/{symbol}/history",
    "/api/v1/stocks/{symbol}/indicators",
    "/api/v1/stocks/{symbol}/indicators/history",
    "/api/v1/stocks/{symbol}/bars",
    "/api/v1/market/overview",
}


def fetch(url: str, **params) -> dict:
    response = requests.get(url, params=params, timeout=10)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def when(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def test_a_program_reads_live_prices_history_and_bars(market, redis_client, processes):
    processes.celery_worker(TICK_INTERVAL="0.5")
    processes.celery_beat(TICK_INTERVAL="0.5")
    url = processes.daphne()
    api = f"{url}/api/v1"

    def price() -> dict:
        return fetch(f"{api}/stocks/AAPL/price")

    first = wait_for(lambda: (p := price())["price"] is not None and p, timeout=60,
                     what="a first AAPL price over HTTP")  # fmt: skip
    moved = wait_for(lambda: (p := price())["price"] != first["price"] and p, timeout=30,
                     what="the AAPL price to change")  # fmt: skip
    assert when(moved["ts"]) > when(first["ts"])
    assert isinstance(moved["volume"], int)
    same_day = when(moved["ts"]).date() == when(first["ts"]).date()
    assert moved["volume"] > first["volume"] or not same_day

    # History grows, oldest first, half a second between scheduled ticks.
    before = fetch(f"{api}/stocks/AAPL/history", limit=5000)["count"]
    wait_for(lambda: fetch(f"{api}/stocks/AAPL/history", limit=5000)["count"] > before,
             timeout=30, what="the history to grow")  # fmt: skip
    latest = price()
    history = fetch(f"{api}/stocks/aapl/history", limit=5000)
    stamps = [when(r["ts"]) for r in history["results"]]
    assert stamps == sorted(stamps)
    assert all(b - a >= timedelta(seconds=0.5) for a, b in itertools.pairwise(stamps))
    # A price that /price showed is stored: it is in a history read afterwards.
    assert {"ts": latest["ts"], "price": latest["price"]} in [
        {"ts": r["ts"], "price": r["price"]} for r in history["results"]
    ]

    # Every active symbol ticks; the overview and the list show them all priced.
    overview = fetch(f"{api}/market/overview")
    assert sorted(s["symbol"] for s in overview["symbols"]) == TICKERS
    wait_for(lambda: all(s["price"] is not None for s in fetch(f"{api}/stocks")["results"]),
             timeout=30, what="a price for every symbol")  # fmt: skip

    # The minute bar of the newest tick is there while its minute is still open.
    bars = fetch(f"{api}/stocks/AAPL/bars", interval="1m")
    newest = when(history["results"][-1]["ts"])
    assert bars["results"]
    assert when(bars["results"][-1]["ts"]) >= newest.replace(second=0, microsecond=0)
    assert fetch(f"{api}/stocks/AAPL/indicators")["symbol"] == "AAPL"

    # Odd bytes over real HTTP: a client error naming what is wrong, never a server error.
    for path, status in [
        ("/stocks/%00/price", 404),
        ("/stocks/%ff/price", 404),
        ("/stocks/AAPL%00/history", 404),
        ("/stocks/AAPL/history?limit=%00", 400),
        ("/stocks/AAPL/bars?start=%00", 400),
        ("/stocks/AAPL/bars?interval=2m", 400),
        ("/stocks?search=%00", 400),
    ]:
        response = requests.get(f"{api}{path}", timeout=10)
        assert response.status_code == status, (path, response.status_code, response.text[:200])
        assert response.json(), path


def scripts_of(html: str) -> list[str]:
    return re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)


@pytest.mark.parametrize(("page", "marker"), [("/docs", "swagger-ui"), ("/redoc", "redoc")])
def test_the_live_server_serves_the_api_docs_with_its_own_scripts(db, processes, page, marker):
    url = processes.daphne()
    for path in (page, f"{page}/"):
        response = requests.get(f"{url}{path}", timeout=10, allow_redirects=False)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert marker in response.text.lower()
    scripts = scripts_of(response.text)
    assert scripts, response.text[:1000]
    sizes = []
    for script in scripts:
        # Served here, not from a CDN: static files, and Swagger UI's start-up script from
        # /docs?script= (no inline script, for the content security policy).
        assert script.startswith(("/static/", f"{page}?", f"{page}/?")), script
        fetched = requests.get(urljoin(url, script.replace("&amp;", "&")), timeout=10)
        assert fetched.status_code == 200, script
        assert "javascript" in fetched.headers["Content-Type"]
        sizes.append(len(fetched.content))
    assert max(sizes) > 10_000  # the real bundle, not a stub


def test_the_live_server_serves_an_openapi_3_document_of_every_path(db, processes):
    url = processes.daphne()
    for path in ("/api/schema/", "/api/schema"):
        response = requests.get(f"{url}{path}", params={"format": "json"}, timeout=30)
        assert response.status_code == 200
        schema = response.json()
        assert schema["openapi"].startswith("3.")
        paths = {p.rstrip("/") for p in schema["paths"]}
        assert paths >= CONTRACT_PATHS, CONTRACT_PATHS - paths
        assert "/api/v1/auth/token" in paths
    # Every operation documents its answer, typed, with an example (none for a 204).
    missing = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            success = {"200", "201", "204"} & set(operation["responses"])
            assert success, (method, path)
            for code in success - {"204"}:
                content = operation["responses"][code]["content"]["application/json"]
                assert "$ref" in content["schema"] or content["schema"].get("type"), (method, path)
                if not (content.get("examples") or content.get("example")):
                    missing.append(f"{method.upper()} {path} {code}")
    assert not missing, f"no example: {missing}"
    # The default form is YAML, as drf-spectacular serves it.
    yaml = requests.get(f"{url}/api/schema/", timeout=30)
    assert yaml.status_code == 200
    assert yaml.text.startswith("openapi: 3.")
