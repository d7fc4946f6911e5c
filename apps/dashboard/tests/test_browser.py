"""The dashboard in a real browser (Playwright driving Debian's chromium) against a live
Daphne, with a real Celery worker and beat feeding the pipeline, as `make run` serves it.

Needs /usr/bin/chromium (`apt-get install chromium`); without it these tests are skipped
and the test summary says so (conftest.py). Screenshots of every page, 1280 and 390 px wide,
dark and light, go to var/test-artifacts/screenshots/.

The database work (seeding, the backfill) happens before Playwright starts: its sync API
runs an event loop in this thread, and Django refuses ORM calls from a thread that has one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from apps.testing.waiting import wait_for

# Debian's chromium; MARKETFLUX_CHROMIUM points elsewhere (another distribution's path).
CHROMIUM = Path(os.environ.get("MARKETFLUX_CHROMIUM", "/usr/bin/chromium"))
pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need {CHROMIUM}: run `apt-get install chromium`",
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api")

BASE_DIR = Path(__file__).resolve().parents[3]
SCREENSHOTS = BASE_DIR / "var" / "test-artifacts" / "screenshots"
TICKERS = ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]
WAIT_MS = 15_000  # the longest any single wait in a browser may take
VIEWPORTS = {"1280": {"width": 1280, "height": 900}, "390": {"width": 390, "height": 844}}
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def stack(market, redis_client, processes) -> str:
    """A day of AAPL history, then worker, beat and Daphne; the site's URL once it ticks."""
    call_command("backfill", days=1, symbols="AAPL", stdout=StringIO())
    processes.celery_worker(TICK_INTERVAL="0.5")
    processes.celery_beat(TICK_INTERVAL="0.5")
    url = processes.daphne()
    wait_for(
        lambda: all(
            s["price"] is not None
            for s in requests.get(f"{url}/api/v1/market/overview", timeout=5).json()["symbols"]
        ),
        timeout=60,
        what="a first price for every symbol",
    )
    return url


@pytest.fixture
def anomaly_two_hours_ago(stack) -> str:
    """An anomalous snapshot of AAPL inside the chart's first window: a marker to draw."""
    from apps.indicators.models import IndicatorSnapshot
    from apps.market.messages import format_ts

    ts = (datetime.now(UTC) - timedelta(hours=2)).replace(second=7, microsecond=0)
    IndicatorSnapshot.objects.create(symbol_id="AAPL", ts=ts, price=228.0, anomaly=True)
    return format_ts(ts)


@pytest.fixture
def browser() -> Iterator:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


class Console:
    """Errors a page reports: console errors, uncaught exceptions, failed requests."""

    def __init__(self, page, *, expected: tuple[str, ...] = ()) -> None:
        self.errors: list[str] = []
        self.expected = expected
        page.on("console", lambda m: m.type == "error" and self._add(f"console: {m.text}"))
        page.on("pageerror", lambda e: self._add(f"pageerror: {e}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and self._add(f"HTTP {r.status} {r.url}"),
        )

    def _add(self, text: str) -> None:
        if not any(pattern in text for pattern in self.expected):
            self.errors.append(text)


def screenshots(page, name: str) -> None:
    """The page at both widths, in both themes (the toggle, remembered across reloads)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for theme in ("dark", "light"):
        if page.evaluate("document.documentElement.dataset.theme") != theme:
            page.click("[data-theme-toggle]")
        for width, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            page.wait_for_timeout(300)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}-{theme}.png"), full_page=True)
    page.click("[data-theme-toggle]")  # back to dark for the next test
    page.set_viewport_size(VIEWPORTS["1280"])


def price_text(page, symbol: str) -> str:
    return page.locator(f'td[data-symbol="{symbol}"][data-field="price"]').inner_text()


def test_the_overview_paints_prices_first_and_then_updates_live(stack, browser):
    # First paint: with JavaScript off, every symbol already has its price.
    static = browser.new_context(java_script_enabled=False).new_page()
    static.goto(f"{stack}/")
    for ticker in TICKERS:
        text = price_text(static, ticker)
        assert re.fullmatch(r"[\d,]+\.\d\d", text), (ticker, text)
    static.context.close()

    page = browser.new_page(viewport=VIEWPORTS["1280"])
    console = Console(page)
    page.goto(f"{stack}/")
    page.wait_for_selector('[data-field="connection"][data-state="live"]', timeout=WAIT_MS)
    first = {t: price_text(page, t) for t in TICKERS}
    page.wait_for_function(
        """(first) => Object.entries(first).some(([s, p]) =>
             document.querySelector(`td[data-symbol="${s}"][data-field="price"]`)
               .textContent.trim() !== p)""",
        arg=first,
        timeout=WAIT_MS,
    )
    # The overview message keeps the breadth and movers current.
    assert page.locator('[data-symbol="market"][data-field="advancers"]').inner_text().isdigit()
    # Sorting by change % reorders the rows; the heatmap sizes tiles by volume on request.
    page.click('button[data-sort="change_pct"]')
    assert page.get_attribute('th:has(button[data-sort="change_pct"])', "aria-sort") == "ascending"
    page.click('label[for="tile-volume"]')
    weights = page.eval_on_selector_all(
        '[data-field="tile"]', "ts => ts.map(t => t.style.getPropertyValue('--w'))"
    )
    assert len(weights) == len(TICKERS)
    assert set(weights) != {"1"}, "tiles sized by their volume"
    page.click('label[for="tile-equal"]')
    # An `alert` message of /ws/market (the alerts app sends them) becomes a toast.
    page.evaluate(
        """() => window.marketflux.feed.messageHandlers.forEach((handle) => handle({
             type: "alert", id: 1, rule: 7, symbol: "AAPL", ts: "2026-12-02T16:04:33Z",
             condition: "price_above", value: 230.5, message: "AAPL above 230"}))"""
    )
    toast = page.locator("[data-toasts] .toast")
    assert toast.count() == 1
    assert "AAPL above 230" in toast.inner_text()
    screenshots(page, "overview")
    # The theme is remembered: a reload paints light straight away.
    page.click("[data-theme-toggle]")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.get_attribute("[data-theme-toggle]", "aria-pressed") == "true"
    assert not console.errors, console.errors


def test_the_symbol_page_draws_the_chart_switches_interval_and_toggles_studies(
    stack, anomaly_two_hours_ago, browser
):
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    console = Console(page)
    page.goto(f"{stack}/stocks/aapl/")
    chart = page.locator("[data-chart]")
    page.wait_for_selector("[data-chart][data-state=ready] canvas", timeout=WAIT_MS)
    assert page.title().startswith("AAPL")
    minute_candles = int(chart.get_attribute("data-candles"))
    assert minute_candles == 500  # a day of backfilled minutes: the first paint's window
    assert page.evaluate("window.marketflux.panes()") == 3  # price+volume, RSI, MACD
    assert page.evaluate("window.marketflux.candles") == minute_candles
    assert chart.get_attribute("data-markers") == "1"  # the anomaly, on its minute's candle

    # The live panel follows the ticks of the pipeline, and the open candle with it.
    page.wait_for_selector('[data-field="connection"][data-state="live"]', timeout=WAIT_MS)
    ts = page.locator('time[data-symbol="AAPL"][data-field="ts"]').get_attribute("datetime")
    page.wait_for_function(
        """(ts) => document.querySelector('time[data-symbol="AAPL"][data-field="ts"]')
             .getAttribute('datetime') !== ts""",
        arg=ts,
        timeout=WAIT_MS,
    )
    last, price = page.evaluate(  # read together: a tick lands every half second
        """() => [window.marketflux.lastCandle(),
                  document.querySelector('dd[data-symbol="AAPL"][data-field="price"]')
                    .textContent]"""
    )
    assert f"{last['close']:,.2f}" in price
    assert last["time"] % 60 == 0
    page.wait_for_function(  # RSI 14 has a value once the live series is 15 ticks long
        '() => document.querySelector(\'[data-symbol="AAPL"][data-field="rsi_14"]\')'
        ".textContent.trim() !== '—'",
        timeout=WAIT_MS,
    )

    # 5-minute candles come from the bars endpoint: a day holds fewer of them.
    page.click('label[for="interval-5m"]')
    page.wait_for_selector('[data-chart][data-interval="5m"][data-state="loaded"]', timeout=WAIT_MS)
    five = int(chart.get_attribute("data-candles"))
    assert 280 <= five <= 290, five
    assert page.evaluate("window.marketflux.interval") == "5m"
    assert page.evaluate("window.marketflux.lastCandle().time") % 300 == 0
    assert chart.get_attribute("data-markers") == "1"

    # Overlays: labelled checkboxes show and hide their lines.
    assert page.evaluate("window.marketflux.overlaysVisible()") == {
        "sma": True, "ema": False, "bb": False,
    }  # fmt: skip
    page.get_by_label("Bollinger 20/2").check()
    page.get_by_label("SMA 20").uncheck()
    assert page.evaluate("window.marketflux.overlaysVisible()") == {
        "sma": False, "ema": False, "bb": True,
    }  # fmt: skip
    assert chart.get_attribute("data-overlays") == "bb"
    page.get_by_label("SMA 20").check()
    page.click('label[for="interval-1m"]')
    page.wait_for_selector('[data-chart][data-interval="1m"][data-state="loaded"]', timeout=WAIT_MS)
    screenshots(page, "symbol")

    page.goto(f"{stack}/accounts/login/")
    screenshots(page, "login")
    assert not console.errors, console.errors


def test_the_connection_state_recovers_after_the_server_drops_the_socket(stack, browser, processes):
    port = stack.rsplit(":", 1)[1]
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    # While Daphne is down the browser logs each refused WebSocket handshake; that is expected.
    console = Console(page, expected=("WebSocket connection to",))
    page.goto(f"{stack}/stocks/AAPL/")
    state = '[data-field="connection"]'
    page.wait_for_selector(f'{state}[data-state="live"]', timeout=WAIT_MS)
    bars_requests: list[str] = []
    page.on(
        "request", lambda r: "/api/v1/stocks/AAPL/bars" in r.url and bars_requests.append(r.url)
    )

    processes.stop("web")
    page.wait_for_selector(f'{state}[data-state="reconnecting"]', timeout=WAIT_MS)
    time.sleep(1)  # the server stays down through at least one reconnect attempt
    processes.start(
        "web2",
        ["-m", "daphne", "-b", "127.0.0.1", "-p", port, "marketflux_site.asgi:application"],
    )
    wait_for(lambda: _answers(f"{stack}/health"), timeout=30, what="the new Daphne")
    page.wait_for_selector(f'{state}[data-state="live"]', timeout=WAIT_MS)
    # After the reconnect the page read the snapshot and the bars again, and ticks flow.
    page.wait_for_selector('[data-chart][data-state="loaded"]', timeout=WAIT_MS)
    assert bars_requests, "the bars of the current interval were read again"
    ts = page.locator('time[data-symbol="AAPL"][data-field="ts"]').get_attribute("datetime")
    page.wait_for_function(
        """(ts) => document.querySelector('time[data-symbol="AAPL"][data-field="ts"]')
             .getAttribute('datetime') !== ts""",
        arg=ts,
        timeout=WAIT_MS,
    )
    assert not console.errors, console.errors


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False
