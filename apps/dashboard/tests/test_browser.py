"""The dashboard in a real browser (Playwright driving Debian's chromium) against a live
Daphne, with a real Celery worker and beat feeding the pipeline, as `make run` serves it.

Needs /usr/bin/chromium (`apt-get install chromium`); without it these tests fail
saying so. Screenshots of every page, 1280 and 390 px wide,
dark and light, go to var/test-artifacts/screenshots/.

The database work (seeding, the backfill) happens before Playwright starts: its sync API
runs an event loop in this thread, and Django refuses ORM calls from a thread that has one.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from apps.testing.browser import (
    SCREENSHOTS,
    VIEWPORTS,
    WAIT_MS,
    PageWatch,
    browser_test_marks,
    chromium,
    ticking_site,
)
from apps.testing.waiting import wait_for

pytestmark = browser_test_marks()

TICKERS = ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]


@pytest.fixture
def stack(market, redis_client, processes) -> str:
    """A day of AAPL history, then worker, beat and Daphne; the site's URL once it ticks."""
    call_command("backfill", days=1, symbols="AAPL", stdout=StringIO())
    return ticking_site(processes)


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
    with chromium() as launched:
        yield launched


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


def page_width(page, width: str = "390") -> int:
    """How wide the page is at a viewport `width` (wider than it: it scrolls sideways)."""
    page.set_viewport_size(VIEWPORTS[width])
    page.wait_for_timeout(100)
    return page.evaluate("document.documentElement.scrollWidth")


def theme_button(page) -> str:
    return page.locator("[data-theme-toggle]").inner_text().strip()


def inject(page, message: dict) -> None:
    """A message as /ws/market delivers it, handed to the page's feed handlers."""
    page.evaluate(
        "(m) => window.marketflux.feed.messageHandlers.forEach((handle) => handle(m))", message
    )


# Watches the movers for 2.5 s after a tick that takes a gainer 10 % below its session open
# (or a loser 10 % above): what shows there with the wrong sign, and whether the table got it.
MOVERS_AFTER_A_CONTRARY_TICK = """() => new Promise((resolve) => {
  const MINUS = "\\u2212";
  const wrong = [];
  const field = (list) => `[data-list="${list}"] [data-field="change_pct"]`;
  const check = () => {
    for (const [list, sign] of [["top_gainers", MINUS], ["top_losers", "+"]]) {
      for (const el of document.querySelectorAll(field(list))) {
        if (el.textContent.startsWith(sign)) wrong.push(`${list}: ${el.dataset.symbol}`);
      }
    }
  };
  const watch = new MutationObserver(check);
  watch.observe(document.querySelector(".movers"),
    { subtree: true, childList: true, characterData: true });
  // No real tick may replace the contrary one before the table draws it (the page keeps the
  // newest tick per symbol until the next frame): the live ticks stop, the overviews go on.
  window.marketflux.feed.send({ action: "unsubscribe", symbols: "*" });
  setTimeout(() => {
    const gainer = document.querySelector(field("top_gainers"));
    const [el, factor] = gainer ? [gainer, 0.9]
      : [document.querySelector(field("top_losers")), 1.1];
    const symbol = el.dataset.symbol;
    const open = window.marketflux.symbols[symbol].reference;
    window.marketflux.feed.messageHandlers.forEach((handle) => handle({
      type: "tick", symbol, ts: new Date().toISOString(), price: open * factor, size: 1,
      indicators: { rsi_14: 50, anomaly: false } }));
    // The page shows the newest values at most 4 times a second: the tick is in the table
    // well within a second, and the movers still say what the last overview said.
    const sign = factor < 1 ? MINUS : "+";
    const cell = () =>
      document.querySelector(`td[data-symbol="${symbol}"][data-field="change_pct"]`);
    const began = performance.now();
    const seen = () => {
      if (cell().textContent.startsWith(sign)) {
        check();
        setTimeout(() => { watch.disconnect(); check(); resolve(wrong); }, 2500);
      } else if (performance.now() - began > 1000) {
        wrong.push("the table missed it");
        watch.disconnect();
        resolve(wrong);
      } else requestAnimationFrame(seen);
    };
    requestAnimationFrame(seen);
  }, 1000);
})"""


def tile_areas(page) -> list[float]:
    """The area of each symbol's heatmap tile (a canvas: its test hook says where each is)."""
    return page.evaluate(
        """(symbols) => symbols.map((s) => window.marketflux.heatmap.tileAt(s))
             .map((t) => t.w * t.h)""",
        TICKERS,
    )


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
    console = PageWatch(page, site=stack)
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
    areas = tile_areas(page)
    assert len(areas) == len(TICKERS)
    assert max(areas) == pytest.approx(min(areas), rel=0.02), "tiles of equal size"
    page.click('label[for="tile-volume"]')
    areas = tile_areas(page)
    assert max(areas) > 1.1 * min(areas), "tiles sized by their volume"
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
    # The theme button says what pressing it does; the theme is remembered across a reload.
    assert theme_button(page) == "Switch to light theme"
    page.click("[data-theme-toggle]")
    assert theme_button(page) == "Switch to dark theme"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert theme_button(page) == "Switch to dark theme"
    assert not console.errors, console.errors


def test_at_390_px_only_tables_scroll_sideways_never_the_page(stack, browser):
    page = browser.new_page(viewport=VIEWPORTS["390"])
    console = PageWatch(page, site=stack)
    for path in ("/", "/stocks/AAPL/", "/accounts/login/"):
        page.goto(f"{stack}{path}", wait_until="networkidle")
        assert page_width(page) <= 390, path
    # The table is wider than the screen: it scrolls inside its own box.
    page.goto(f"{stack}/")
    box = page.evaluate(
        """() => { const b = document.querySelector('.table-scroll');
                   return [b.scrollWidth, b.clientWidth]; }"""
    )
    assert box[0] > box[1]
    assert not console.errors, console.errors


def test_movers_and_counts_come_from_the_overview_not_from_ticks(stack, browser):
    """A tick between overviews moves the table and the tile, but the top gainers and losers
    are the overview's snapshot: a falling stock never shows among the gainers."""
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    console = PageWatch(page, site=stack)
    page.goto(f"{stack}/")
    page.wait_for_selector('[data-field="connection"][data-state="live"]', timeout=WAIT_MS)
    page.wait_for_selector('[data-list] [data-field="change_pct"]', timeout=WAIT_MS)
    wrong = page.evaluate(MOVERS_AFTER_A_CONTRARY_TICK)
    assert not wrong, wrong
    assert not console.errors, console.errors


def _in_thread(work) -> None:
    """ORM work while Playwright's event loop owns this thread: in a thread of its own."""
    from django.db import connection

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)


def test_a_symbol_added_while_the_page_is_open_gets_its_row_and_tile(stack, browser):
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    console = PageWatch(page, site=stack)
    page.goto(f"{stack}/")
    page.wait_for_selector('[data-field="connection"][data-state="live"]', timeout=WAIT_MS)
    assert page.locator('tr[data-row="NVDA"]').count() == 0

    def add_symbol() -> None:
        from apps.market.models import Symbol

        Symbol.objects.create(
            ticker="NVDA", name="NVIDIA Corporation", exchange="NASDAQ",
            sector="Semiconductors", start_price=120.0,
        )  # fmt: skip

    _in_thread(add_symbol)  # as the admin or seed_symbols would
    row = 'tr[data-row="NVDA"]'
    page.wait_for_selector(row, timeout=WAIT_MS)
    page.wait_for_function(
        r"""() => /^[\d,]+\.\d\d$/.test(document.querySelector(
             'td[data-symbol="NVDA"][data-field="price"]').textContent)""",
        timeout=WAIT_MS,
    )
    page.wait_for_function(  # its tile, in its own sector once its name and sector are read
        """() => window.marketflux.heatmap.tileAt("NVDA")?.sector === "Semiconductors"
             && window.marketflux.heatmap.tileAt("NVDA").w > 0""",
        timeout=WAIT_MS,
    )
    page.wait_for_function(
        """() => document.querySelector('tr[data-row="NVDA"] td').textContent
             === "NVIDIA Corporation" """,
        timeout=WAIT_MS,
    )
    tile = page.evaluate('window.marketflux.heatmap.tileAt("NVDA")')
    assert re.fullmatch(r"[\d,]+\.\d\d", tile["price"]), tile
    sectors = page.evaluate("window.marketflux.heatmap.sectors()")
    assert sum(count for _, count, _ in sectors) == len(TICKERS) + 1
    assert page.locator('[data-sectors] button[data-sector="Semiconductors"]').count() == 1
    assert not console.errors, console.errors


def test_the_search_suggests_company_names_and_opens_the_match(stack, browser):
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    console = PageWatch(page, site=stack)
    page.goto(f"{stack}/")
    page.fill("#symbol-search", "micro")
    suggestions = page.locator('[role="listbox"] [role="option"]')
    suggestions.first.wait_for(timeout=WAIT_MS)
    assert suggestions.count() == 1
    assert suggestions.first.inner_text().startswith("MSFT")
    assert "Microsoft" in suggestions.first.inner_text()
    page.press("#symbol-search", "Enter")
    page.wait_for_url(f"{stack}/stocks/MSFT/", timeout=WAIT_MS)
    # A ticker's start still works, and a click on a suggestion opens it.
    page.fill("#symbol-search", "ts")
    page.locator('[role="option"][data-ticker="TSLA"]').click()
    page.wait_for_url(f"{stack}/stocks/TSLA/", timeout=WAIT_MS)
    assert not console.errors, console.errors


def test_the_symbol_page_draws_the_chart_switches_interval_and_toggles_studies(
    stack, anomaly_two_hours_ago, browser
):
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    console = PageWatch(page, site=stack)
    page.goto(f"{stack}/stocks/aapl/")
    chart = page.locator("[data-chart]")
    page.wait_for_selector("[data-chart][data-state=ready] canvas", timeout=WAIT_MS)
    assert page.title().startswith("AAPL")
    # The first paint's window is 500 of the day's backfilled minutes; a minute that closes
    # between the paint and these reads adds the live candle.
    minute_candles = int(chart.get_attribute("data-candles"))
    assert minute_candles in (500, 501)
    assert page.evaluate("window.marketflux.panes()") == 3  # price+volume, RSI, MACD
    assert page.evaluate("window.marketflux.candles") in (minute_candles, minute_candles + 1)
    assert chart.get_attribute("data-markers") == "1"  # the anomaly, on its minute's candle

    # Older history loads as the reader scrolls back, 500 candles at a time, never all at once.
    older: list[str] = []
    page.on("request", lambda r: "/bars?" in r.url and "end=" in r.url and older.append(r.url))
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.3, steps=10)
    page.mouse.up()
    right_edge = page.evaluate("window.marketflux.chart.timeScale().getVisibleRange().to")
    page.wait_for_function(
        "(n) => Number(document.querySelector('[data-chart]').dataset.candles) > n",
        arg=minute_candles + 1,
        timeout=WAIT_MS,
    )
    assert len(older) == 1, older
    assert 900 <= int(chart.get_attribute("data-candles")) <= minute_candles + 501
    # The candles that were in view stay where they were.
    assert page.evaluate("window.marketflux.chart.timeScale().getVisibleRange().to") == right_edge
    page.mouse.move(0, 0)

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

    # The interval and the overlays are kept in the URL: a reload restores them.
    assert "interval=5m" in page.url
    assert "overlays=bb" in page.url
    page.reload()
    page.wait_for_selector("[data-chart][data-state=ready] canvas", timeout=WAIT_MS)
    assert page.evaluate("window.marketflux.interval") == "5m"
    assert page.is_checked("#interval-5m")
    assert page.evaluate("window.marketflux.overlaysVisible()") == {
        "sma": False, "ema": False, "bb": True,
    }  # fmt: skip

    # Legends: the bar's OHLC and volume and every visible study, each line in its colour.
    page.get_by_label("SMA 20").check()
    page.get_by_label("EMA 20").check()
    legend = page.locator('[data-legend="price"]')
    latest = legend.inner_text()
    for text in ("O ", "H ", "L ", "C ", "Vol ", "SMA 20", "EMA 20", "BB 20/2"):
        assert text in latest, (text, latest)
    assert re.search(r"C\s+[\d,]+\.\d\d", latest), latest
    assert "RSI 14" in page.locator('[data-legend="rsi"]').inner_text()
    assert "Signal" in page.locator('[data-legend="macd"]').inner_text()
    colours = page.evaluate("window.marketflux.studyColors()")
    assert len(set(colours.values())) == len(colours), colours  # MACD and signal too
    swatches = page.eval_on_selector_all(
        "[data-legend] .legend-item i", "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert len(set(swatches)) >= 6, swatches
    assert page.evaluate("window.marketflux.volumeShare()") <= 0.15  # a band, not a third
    # Under the crosshair, the legend shows that bar's values instead of the latest.
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.wait_for_function(
        "(latest) => document.querySelector('[data-legend=price]').innerText !== latest",
        arg=latest,
        timeout=WAIT_MS,
    )
    page.mouse.move(0, 0)

    # An hourly chart of a day's history is too short for MACD: its pane says so in words.
    page.click('label[for="interval-1h"]')
    page.wait_for_selector('[data-chart][data-interval="1h"][data-state="loaded"]', timeout=WAIT_MS)
    hours = int(chart.get_attribute("data-candles"))
    assert hours < 34
    assert page.locator('[data-legend="macd"]').inner_text() == (
        f"MACD 12/26/9 needs 34 bars; this chart has {hours}."
    )
    screenshots(page, "symbol-1h")
    assert page_width(page) <= 390  # after a resize from 1280 px too
    page.set_viewport_size(VIEWPORTS["1280"])
    page.click('label[for="interval-1m"]')
    page.wait_for_selector('[data-chart][data-interval="1m"][data-state="loaded"]', timeout=WAIT_MS)
    screenshots(page, "symbol-1m")

    page.goto(f"{stack}/accounts/login/")
    screenshots(page, "login")
    assert not console.errors, console.errors


def test_the_connection_state_recovers_after_the_server_drops_the_socket(stack, browser, processes):
    port = stack.rsplit(":", 1)[1]
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    # While Daphne is down the browser logs each refused WebSocket handshake; that is expected.
    console = PageWatch(page, site=stack, expected=("WebSocket connection to",))
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


@pytest.fixture
def alice_signed_in(stack, alice) -> dict:
    """Alice's session cookie and API token (made before Playwright starts: ORM work)."""
    from django.conf import settings
    from django.test import Client
    from rest_framework.authtoken.models import Token

    client = Client()
    client.force_login(alice)
    name = settings.SESSION_COOKIE_NAME
    return {
        "cookie": {"name": name, "value": client.cookies[name].value, "url": stack},
        "token": Token.objects.create(user=alice).key,
    }


def test_the_alerts_page_adds_events_live_and_shows_only_the_fields_a_condition_uses(
    stack, alice_signed_in, browser
):
    context = browser.new_context(viewport=VIEWPORTS["1280"])
    context.add_cookies([alice_signed_in["cookie"]])
    page = context.new_page()
    console = PageWatch(page, site=stack)
    page.goto(f"{stack}/alerts/")
    page.wait_for_selector('[data-field="connection"][data-state="live"]', timeout=WAIT_MS)
    events = page.locator("table[data-events]")
    assert "No alerts have fired yet" in events.inner_text()

    # The form: no symbol chosen for you; only the chosen condition's fields.
    assert page.locator("#id_symbol").input_value() == ""
    shown = lambda selector: page.locator(selector).is_visible()  # noqa: E731
    page.select_option("#id_condition", "anomaly")
    assert not shown("#id_threshold")
    assert not shown("#id_window_seconds")
    page.select_option("#id_condition", "change_pct_up")
    assert shown("#id_threshold")
    assert shown("#id_window_seconds")
    assert "percent" in page.locator("#id_threshold_helptext").inner_text()
    page.select_option("#id_condition", "price_above")
    assert shown("#id_threshold")
    assert not shown("#id_window_seconds")
    assert not shown("#id_cooldown_seconds")
    page.select_option("#id_frequency", "every_time")
    assert shown("#id_cooldown_seconds")

    # A rule made elsewhere (here the API) fires on the next tick: its event is in the table
    # at once, with its price at the tick size, beside its toast.
    made = requests.post(
        f"{stack}/api/v1/alerts/rules/",
        json={"symbol": "AAPL", "condition": "price_above", "threshold": 1, "frequency": "once"},
        headers={"Authorization": f"Token {alice_signed_in['token']}"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    row = events.locator("tr[data-alert-id]").first
    row.wait_for(timeout=WAIT_MS)
    assert "No alerts have fired yet" not in events.inner_text()
    assert re.fullmatch(r"[\d,]+\.\d\d", row.locator('[data-field="price"]').inner_text())
    assert re.fullmatch(r"[\d,]+\.\d\d", row.locator('[data-field="value"]').inner_text())
    assert row.get_by_role("button", name=re.compile("Acknowledge alert")).is_visible()
    alert_id = row.get_attribute("data-alert-id")
    page.wait_for_selector(f'[data-toasts] .toast[data-alert-id="{alert_id}"]', timeout=WAIT_MS)
    toast_price = page.locator(f'.toast[data-alert-id="{alert_id}"] .toast-price').inner_text()
    assert re.fullmatch(r"at [\d,]+\.\d\d", toast_price.strip())
    # The page reloaded shows the same event, from the server.
    page.reload()
    page.wait_for_selector(f'table[data-events] tr[data-alert-id="{alert_id}"]')

    assert page_width(page) <= 390
    page.set_viewport_size(VIEWPORTS["1280"])
    screenshots(page, "alerts")
    assert not console.errors, console.errors
