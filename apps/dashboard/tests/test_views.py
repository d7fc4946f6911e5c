"""The dashboard's server-rendered pages: what the first paint shows, before any JavaScript.

Ticks go in through the real pipeline (`pipeline.ingest`), so the hot state in Redis and the
rows in PostgreSQL are the ones the live system writes; expected values are read back from
the hot state the pages are supposed to show.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.dashboard import selectors
from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest
from apps.market.messages import INDICATOR_FIELDS
from apps.market.models import Symbol
from apps.market.selectors import hot_states

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[3]
TICKERS = ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]
TICKS = 40
JS_CSS_BUDGET = 50 * 1024
PASSWORD = "pw-reader-123"  # noqa: S105 (a throwaway test user)
STUDIES = "static/js/studies.js"


@pytest.fixture
def live_market(market, redis_client) -> dict[str, dict]:
    """Forty one-second ticks of every default symbol ending now; AAPL jumps on the last one
    (an anomaly). Returns the hot state the pipeline wrote."""
    store.forget()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=TICKS - 1)
    for i in range(TICKS):
        rows = []
        for k, symbol in enumerate(market):
            price = symbol.start_price * (1 + 0.0004 * ((i * (k + 3)) % 7 - 3))
            if symbol.ticker == "AAPL" and i == TICKS - 1:
                price = symbol.start_price * 1.05
            rows.append((symbol.ticker, start + timedelta(seconds=i), price, 100 + i + k))
        ingest(TickBatch.from_rows(rows))
    yield hot_states(TICKERS)
    store.forget()


class Elements(HTMLParser):
    """Every start tag with its attributes and the text directly inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self._template = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        if not self._template:  # a <template>'s content is not on the page
            self.elements.append(element)
        self._template += tag == "template"
        if tag not in {"input", "link", "meta", "br", "img", "option", "polyline"}:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        self._template -= tag == "template"
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data


def parse(html: str) -> list[dict]:
    parser = Elements()
    parser.feed(html)
    return parser.elements


def live_values(html: str, symbol: str, field: str) -> list[str]:
    return [
        e["text"].strip()
        for e in parse(html)
        if e["attrs"].get("data-symbol") == symbol and e["attrs"].get("data-field") == field
    ]


def assert_site_layout(html: str) -> None:
    assert 'class="brand"' in html
    assert 'data-field="connection"' in html
    assert 'id="symbol-search"' in html


def json_script(html: str, element_id: str) -> dict:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    assert match, element_id
    return json.loads(match.group(1))


def signed(value: float, suffix: str = "") -> str:
    """A change as a person reads it: with its sign, but `0.00` (never `-0.00`) at zero."""
    magnitude = f"{abs(value):,.2f}"
    return magnitude + suffix if magnitude == "0.00" else f"{value:+,.2f}{suffix}"


# --- The market overview ---------------------------------------------------------------------


def overview_rows(initial: dict) -> dict[str, dict]:
    """The market page's embedded rows, by symbol, as dicts of its columns."""
    columns = initial["columns"]
    rows = {row[0]: dict(zip(columns, row, strict=True)) for row in initial["rows"]}
    for row in rows.values():
        row["sector"] = initial["sectors"][row["sector"]]
    return rows


def test_the_overview_paints_every_symbol_with_its_hot_state(client, live_market):
    html = client.get("/").content.decode()
    for ticker in TICKERS:
        hot = live_market[ticker]
        assert hot is not None
        assert live_values(html, ticker, "price") == [f"{hot['price']:,.2f}"]
        assert signed(hot["change_pct"], "%") in live_values(html, ticker, "change_pct")
        assert live_values(html, ticker, "change") == [signed(hot["change"])]
        assert live_values(html, ticker, "volume") == [f"{hot['volume']:,}"]
        assert live_values(html, ticker, "rsi_14") == [f"{hot['indicators']['rsi_14']:,.1f}"]
    names = Symbol.objects.values_list("name", flat=True)
    assert all(name.replace("&", "&amp;") in html for name in names)
    # The jump made AAPL an anomaly: its badge shows, it is in the latest anomalies.
    assert live_market["AAPL"]["indicators"]["anomaly"] is True
    badge = re.search(
        r'data-symbol="AAPL" data-field="anomaly"[^>]*><span class="badge"( hidden)?', html
    )
    assert badge
    assert not badge.group(1), "the badge is not hidden"
    anomalies = re.search(r'data-list="anomalies">(.*?)</ol>', html, re.S).group(1)
    assert "AAPL" in anomalies
    # The data the page's script starts from: every symbol's values at full precision, its
    # name and sector, and the first screen's sparklines from the minute bars.
    initial = json_script(html, "overview-initial")
    rows = overview_rows(initial)
    assert set(rows) == set(TICKERS)
    for ticker, row in rows.items():
        hot = live_market[ticker]
        assert row["price"] == hot["price"]
        assert row["change"] == hot["change"]
        assert row["change_pct"] == hot["change_pct"]
        assert row["volume"] == hot["volume"]
        assert row["rsi_14"] == hot["indicators"]["rsi_14"]
        assert row["anomaly"] is hot["indicators"]["anomaly"]
        symbol = Symbol.objects.get(ticker=ticker)
        assert (row["name"], row["sector"]) == (symbol.name, symbol.sector)
    assert {"Technology", "Communication Services", "Consumer Discretionary"} <= set(
        initial["sectors"]
    )
    spark = initial["sparklines"]["AAPL"]
    assert len(spark["closes"]) == selectors.SPARKLINE_MINUTES
    assert spark["closes"][-1] == live_market["AAPL"]["price"], "the current minute's close"
    assert spark["start"].endswith(":00Z")


def test_the_first_paint_has_the_first_screen_of_rows_and_the_rest_as_data(client, market):
    """At market scale the page stays small: rows for the first screen, every symbol in the
    page's data, the header's suggestions from that data instead of a <datalist>."""
    from apps.market.services import symbols_seed

    tickers = [f"Z{i:03d}" for i in range(3 * selectors.FIRST_SCREEN_ROWS)]
    symbols_seed(tickers=tickers)
    html = client.get("/").content.decode()
    rows = re.findall(r'<tr data-row="([A-Z0-9]+)" aria-rowindex="(\d+)"', html)
    shown = sorted([*TICKERS, *tickers])[: selectors.FIRST_SCREEN_ROWS]
    assert rows == [(t, str(i + 2)) for i, t in enumerate(shown)]
    assert f'aria-rowcount="{len(tickers) + len(TICKERS) + 1}"' in html
    initial = json_script(html, "overview-initial")
    assert len(initial["rows"]) == len(tickers) + len(TICKERS)
    assert set(initial["sparklines"]) == set(shown)
    assert "<option value=" not in html  # no <datalist> of every symbol
    assert '<option value="AAPL"' in client.get("/stocks/AAPL/").content.decode()


def test_the_sparklines_of_rows_scrolled_into_view(client, live_market):
    answer = client.get("/sparklines", {"symbols": "aapl,MSFT,NOPE"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["minutes"] == selectors.SPARKLINE_MINUTES
    assert set(body["sparklines"]) == {"AAPL", "MSFT", "NOPE"}
    aapl = body["sparklines"]["AAPL"]
    assert aapl["closes"][-1] == live_market["AAPL"]["price"]
    assert body["sparklines"]["NOPE"]["closes"] == [None] * selectors.SPARKLINE_MINUTES
    html = client.get("/").content.decode()
    assert aapl == json_script(html, "overview-initial")["sparklines"]["AAPL"]
    assert client.get("/sparklines/", {"symbols": "AAPL"}).status_code == 200
    too_many = ",".join(f"Z{i}" for i in range(selectors.MAX_SPARKLINE_SYMBOLS + 1))
    for bad in ("", "AAPL,%00", "1AB", too_many):
        answer = client.get("/sparklines", {"symbols": bad})
        assert answer.status_code == 400, bad
        assert "symbols" in answer.json()


def test_sparkline_points_skip_minutes_without_a_bar():
    assert selectors.sparkline_points([None, None]) == ""
    assert selectors.sparkline_points([1.0, None, 3.0]) == "0.0,24.0 100.0,0.0"
    assert selectors.sparkline_points([2.0, 2.0]) == "0.0,24.0 100.0,24.0"


HEATMAP_SCRIPT = """
const { pathToFileURL } = await import("node:url");
const h = await import(pathToFileURL(process.argv[1]).href);
const buckets = [5.0, 9.0, -0.3, 0.1, -0.26, null, -12].map(h.changeBucket);
const weights = [50, 20, 10, 10, 5, 3, 1, 1];
const tiles = h.squarify(weights.map((weight) => ({ weight })), 10, 20, 300, 200);
process.stdout.write(JSON.stringify({ buckets, tiles }));
"""


def test_the_heatmap_colours_by_a_diverging_scale_and_lays_out_a_squarified_treemap():
    """static/js/heatmap.js: the colour step of a change %, and tiles that fill their
    rectangle without overlapping, each with an area in proportion to its weight."""
    run = subprocess.run(
        ["node", "--input-type=module", "-e", HEATMAP_SCRIPT,
         str(BASE_DIR / "static/js/heatmap.js")],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    out = json.loads(run.stdout)
    assert out["buckets"] == [5, 5, -1, 0, -1, None, -5]
    tiles = out["tiles"]
    area = 300 * 200
    assert sum(t["w"] * t["h"] for t in tiles) == pytest.approx(area)
    for t, weight in zip(tiles, [50, 20, 10, 10, 5, 3, 1, 1], strict=True):
        assert t["w"] * t["h"] == pytest.approx(area * weight / 100)
        assert 10 - 1e-9 <= t["x"] <= t["x"] + t["w"] <= 310 + 1e-9
        assert 20 - 1e-9 <= t["y"] <= t["y"] + t["h"] <= 220 + 1e-9
    for i, a in enumerate(tiles):
        for b in tiles[i + 1 :]:
            overlap_w = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            overlap_h = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            assert overlap_w <= 1e-9 or overlap_h <= 1e-9, (a, b)
    assert max(max(t["w"] / t["h"], t["h"] / t["w"]) for t in tiles[:4]) < 3  # squarish


def test_the_movers_are_the_overviews(client, live_market):
    html = client.get("/").content.decode()
    assert 'value="volume" data-tile-size' in html  # the equal / by volume toggle
    gainers = re.search(r'data-list="top_gainers">(.*?)</ol>', html, re.S).group(1)
    assert "AAPL" in gainers  # +5 % on its last tick


def test_the_overview_without_ticks_says_so_and_still_renders(client, market, redis_client):
    store.forget()
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert set(live_values(html, "AAPL", "price")) == {"—"}


def test_every_live_value_carries_data_symbol_and_data_field(client, live_market):
    for path in ("/", "/stocks/AAPL/"):
        elements = parse(client.get(path).content.decode())
        fields = [e for e in elements if "data-field" in e["attrs"]]
        assert fields
        for e in fields:
            if e["attrs"]["data-field"] in {"connection", "user"}:
                continue  # the page's own state, not a market value
            assert e["attrs"].get("data-symbol"), (path, e)
    # The symbol page's live panel: price, change, volume and every indicator.
    html = client.get("/stocks/AAPL/").content.decode()
    for field in ["price", "change", "change_pct", "volume", "ts", *INDICATOR_FIELDS]:
        assert live_values(html, "AAPL", field), field


# --- The symbol page -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/stocks/AAPL/", "/stocks/AAPL", "/stocks/aapl/", "/stocks/aApL"])
def test_the_symbol_page_answers_any_case_with_and_without_the_slash(client, live_market, path):
    response = client.get(path)
    assert response.status_code == 200  # no redirect
    html = response.content.decode()
    assert "<title>AAPL · MarketFlux</title>" in html
    hot = live_market["AAPL"]
    assert live_values(html, "AAPL", "price")[0] == f"{hot['price']:,.2f}"
    assert live_values(html, "AAPL", "rsi_14") == [f"{hot['indicators']['rsi_14']:,.4f}"]
    assert live_values(html, "AAPL", "anomaly") == ["⚠ yes"]


def test_the_symbol_page_embeds_candles_anomalies_and_the_live_snapshot(client, live_market):
    html = client.get("/stocks/AAPL/").content.decode()
    initial = json_script(html, "symbol-initial")
    bars = client.get("/api/v1/stocks/AAPL/bars", {"interval": "1m", "limit": 500}).json()
    assert initial["candles"] == bars["results"]  # the same candles the API answers
    assert initial["interval"] == "1m"
    assert f'data-candles="{len(bars["results"])}"' in html
    assert initial["live"]["price"] == live_market["AAPL"]["price"]
    assert initial["live"]["indicators"] == live_market["AAPL"]["indicators"]
    assert initial["anomalies"] == [live_market["AAPL"]["ts"]]  # the jump's tick
    for interval in ("1m", "5m", "15m", "1h", "1d"):
        assert f'value="{interval}" data-interval' in html
    for overlay, label in (("sma", "SMA 20"), ("ema", "EMA 20"), ("bb", "Bollinger 20/2")):
        assert re.search(
            rf'<label><input type="checkbox" data-overlay="{overlay}"[^>]*> {label}', html
        )
    assert "/static/vendor/lightweight-charts/" in html  # served here, not from a CDN


def test_the_symbol_page_paints_the_interval_and_overlays_its_url_names(client, live_market):
    html = client.get("/stocks/AAPL/", {"interval": "5m", "overlays": "ema,bb"}).content.decode()
    initial = json_script(html, "symbol-initial")
    bars = client.get("/api/v1/stocks/AAPL/bars", {"interval": "5m", "limit": 500}).json()
    assert initial["interval"] == "5m"
    assert initial["candles"] == bars["results"]
    assert 'value="5m" data-interval checked' in html
    assert '<input type="checkbox" data-overlay="sma"> SMA 20' in html
    assert '<input type="checkbox" data-overlay="ema" checked> EMA 20' in html
    assert '<input type="checkbox" data-overlay="bb" checked> Bollinger 20/2' in html
    # None, or anything unknown: the defaults.
    html = client.get("/stocks/AAPL/", {"overlays": ""}).content.decode()
    assert "checked> SMA 20" not in html
    html = client.get("/stocks/AAPL/", {"interval": "2m", "overlays": "nope"}).content.decode()
    assert json_script(html, "symbol-initial")["interval"] == "1m"


def test_anomaly_markers_are_bounded_and_oldest_first(live_market):
    since = datetime.now(UTC) - timedelta(hours=1)
    assert selectors.anomaly_times("AAPL", since=since) == [live_market["AAPL"]["ts"]]
    assert selectors.anomaly_times("AAPL", since=since, limit=0) == []
    assert selectors.anomaly_times("MSFT", since=since) == []


@pytest.mark.parametrize(
    "path",
    ["/stocks/NOPE/", "/stocks/nope", "/stocks/%00/", "/stocks/AAPL%00", "/stocks/1AB/",
     "/stocks/" + "A" * 17 + "/", "/stocks/%ff/", "/no-such-page/"],
)  # fmt: skip
def test_unknown_or_malformed_symbols_get_the_404_page(client, market, path):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 404
    html = response.content.decode()
    assert_site_layout(html)
    assert "<h1>Not found</h1>" in html
    symbol_lookups = [q["sql"] for q in queries if 'FROM "market_symbol" WHERE' in q["sql"]]
    if path != "/stocks/NOPE/" and path != "/stocks/nope":
        assert not symbol_lookups, "a malformed ticker reaches no query"


@pytest.mark.parametrize("path", ["/stocks/NOPE/", "/no-such-page/"])
def test_with_debug_on_as_make_run_serves_a_404_is_still_the_sites_page(market, settings, path):
    settings.DEBUG = True
    response = Client().get(path)  # a new client: middleware is set up with the settings
    assert response.status_code == 404
    html = response.content.decode()
    assert "<h1>Not found</h1>" in html
    assert "URLconf" not in html  # none of Django's technical page
    # The API's 404s stay JSON.
    assert Client().get("/api/v1/stocks/NOPE/price").json()["detail"]
    # A developer can ask for Django's page.
    settings.MARKETFLUX_DEBUG_404 = True
    assert "URLconf" in Client().get("/no-such-page/").content.decode()


def test_the_header_search_goes_to_the_symbol_page(client, market):
    response = client.get("/stocks/", {"q": " msft "})
    assert response.status_code == 302
    assert response["Location"] == "/stocks/MSFT/"
    assert client.get("/stocks/", {"q": "no such!"}).status_code == 404
    html = client.get("/stocks/AAPL/").content.decode()
    assert '<label for="symbol-search">' in html
    # The suggestions name each symbol's company (static/js/search.js matches on it too);
    # the market page has them in its data instead.
    for symbol in market:
        assert f'<option value="{symbol.ticker}" label="{symbol.name}">' in html.replace(
            "&amp;", "&"
        )


@pytest.mark.parametrize(
    ("query", "ticker"),
    [("micro", "MSFT"), ("Microsoft", "MSFT"), ("tesla", "TSLA"), ("amazon.com", "AMZN"),
     ("aapl", "AAPL"), ("GOOG", "GOOGL")],
)  # fmt: skip
def test_the_search_finds_a_symbol_by_its_company_name(client, market, query, ticker):
    response = client.get("/stocks/", {"q": query})
    assert response.status_code == 302, query
    assert response["Location"] == f"/stocks/{ticker}/"


def test_a_search_that_several_names_match_lists_them(client, market):
    response = client.get("/stocks/", {"q": "inc"})  # Apple Inc., Alphabet Inc., ...
    assert response.status_code == 200
    html = response.content.decode()
    found = re.findall(r'<li><a href="/stocks/([A-Z]+)/">', html)
    assert set(found) == {"AAPL", "GOOGL", "AMZN", "TSLA"}
    assert "Apple Inc." in html


# --- Layout, accounts, theme -----------------------------------------------------------------


def test_login_then_logout_with_djangos_auth_views(client, market):
    User.objects.create_user("reader", password=PASSWORD)
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    html = page.content.decode()
    assert_site_layout(html)
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    bad = client.post("/accounts/login/", {"username": "reader", "password": "wrong"})
    assert bad.status_code == 200
    assert 'role="alert"' in bad.content.decode()
    response = client.post("/accounts/login/", {"username": "reader", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    html = client.get("/").content.decode()
    assert 'data-signed-in="true"' in html
    assert re.search(r'<form action="/accounts/logout/" method="post"', html)
    assert 'data-nav="admin"' not in html  # not staff
    assert client.get("/accounts/logout/").status_code == 405  # Django 5: POST only
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/"
    html = client.get("/").content.decode()
    assert 'data-signed-in="false"' in html
    assert 'href="/accounts/login/' in html


def test_staff_see_the_admin_link(client, market):
    staff = User.objects.create_user("staff", password=PASSWORD, is_staff=True)
    assert 'data-nav="admin"' not in client.get("/").content.decode()
    client.force_login(staff)
    html = client.get("/").content.decode()
    assert '<a href="/admin/" data-nav="admin">Admin</a>' in html


def test_the_theme_is_applied_before_the_first_paint_and_can_be_toggled(client, market):
    html = client.get("/").content.decode()
    head = html.split("</head>")[0]
    assert '<html lang="en" data-theme="dark">' in html  # dark by default
    # The saved theme is read in <head>, before the stylesheet: no flash of the wrong one.
    # A classic script of its own (no inline script under the content security policy).
    assert '<script src="/static/js/theme-init.js"></script>' in head
    assert head.index("js/theme-init.js") < head.index("marketflux.css")
    assert 'localStorage.getItem("mf-theme")' in (BASE_DIR / "static/js/theme-init.js").read_text()
    # The button says what pressing it does; the stylesheet shows the half for the theme.
    button = re.search(
        r'<button type="button" class="theme-toggle" data-theme-toggle>(.*?)</button>', html
    )
    assert button
    assert '<span class="to-light">Switch to light theme</span>' in button.group(1)
    assert '<span class="to-dark">Switch to dark theme</span>' in button.group(1)
    assert '<link rel="icon" href="/static/favicon.svg"' in html
    assert " on" + "click=" not in html.lower()  # no inline event handlers
    assert '<div class="toasts" aria-live="polite"' in html


def module_graph(*entries: str) -> set[Path]:
    """The JS files a page loads: its scripts and everything they import, transitively."""
    seen: set[Path] = set()
    todo = [BASE_DIR / "static/js" / name for name in entries]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in re.findall(r'from "\./([\w-]+\.js)"', path.read_text()):
            todo.append(BASE_DIR / "static/js" / name)
    return seen


def test_static_files_are_found_and_within_budget():
    assert finders.find("vendor/lightweight-charts/lightweight-charts.standalone.production.mjs")
    for name in ("js/site.js", "js/feed.js", "js/overview.js", "js/table.js", "js/heatmap.js",
                 "js/symbol.js", "js/alerts.js", "js/search.js", "favicon.svg"):  # fmt: skip
        assert finders.find(name), name
    # What each page loads (base.html's site.js and stylesheet, the page's own script and
    # stylesheet) stays within the budget, lightweight-charts excluded
    # (docs/benchmarks.md#pages).
    css = BASE_DIR / "static/css"
    pages = {"overview.js": [], "symbol.js": ["symbol.css"], "alerts.js": [], None: []}
    for page_script, sheets in pages.items():
        files = module_graph("site.js", *([page_script] if page_script else []))
        files |= {css / name for name in ["marketflux.css", *sheets]}
        total = sum(p.stat().st_size for p in files)
        assert total < JS_CSS_BUDGET, f"{page_script}: its JS+CSS is {total:,} bytes"
    own = [*(BASE_DIR / "static/js").glob("*.js"), *css.glob("*.css")]
    for path in own:
        assert "console.log" not in path.read_text(), path


FORMAT_SCRIPT = """
const fs = await import("node:fs");
const src = fs.readFileSync(process.argv[1], "utf8");
const f = await import("data:text/javascript," + encodeURIComponent(src));
const values = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(values.map((v) => [f.price(v), f.signed(v), f.percent(v),
  f.direction(v)])));
"""


def test_prices_read_at_the_tick_size_and_a_zero_change_has_no_sign():
    """One price format on both sides (Reg NMS rule 612: $0.01 from $1.00, $0.0001 below),
    the template filter and static/js/format.js alike; `0.00`, never `-0.00`."""
    from apps.dashboard.templatetags import dashboard as filters

    values = [228.21636189711106, 1234.5, 1.0, 0.99996, 0.123456, 0.0001234, -0.001, -0.0049,
              0.004, 0.0, -1.25, 2.5]  # fmt: skip
    python = [
        [filters.price(v), filters.signed(v), filters.percent(v), filters.direction(v)]
        for v in values
    ]
    assert python[0] == ["228.22", "+228.22", "+228.22%", "up"]
    assert python[1][0] == "1,234.50"
    assert python[2][0] == "1.00"
    assert python[4][0] == "0.1235"
    assert python[5][0] == "0.0001"
    assert python[6] == ["-0.0010", "0.00", "0.00%", "flat"]
    assert python[7][1:] == ["0.00", "0.00%", "flat"]
    assert python[9][1:] == ["0.00", "0.00%", "flat"]
    assert python[10][1:] == ["-1.25", "-1.25%", "down"]
    run = subprocess.run(
        ["node", "--input-type=module", "-e", FORMAT_SCRIPT, str(BASE_DIR / "static/js/format.js")],
        input=json.dumps(values), capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    browser = json.loads(run.stdout)
    # The browser writes a minus sign (U+2212) where Python writes a hyphen; all else is equal.
    assert [[t.replace("\u2212", "-") for t in row] for row in browser] == python


# --- Chart studies: the JavaScript against TA-Lib ------------------------------------------


STUDIES_SCRIPT = """
const fs = await import("node:fs");
const src = fs.readFileSync(process.argv[1], "utf8");
const s = await import("data:text/javascript," + encodeURIComponent(src));
const closes = JSON.parse(fs.readFileSync(0, "utf8"));
const m = s.macd(closes, 12, 26, 9);
const bb = s.bollinger(closes, 20, 2);
process.stdout.write(JSON.stringify({
  sma: s.sma(closes, 20), ema: s.ema(closes, 20), rsi: s.rsi(closes, 14),
  macd: m.macd, signal: m.signal, hist: m.hist, upper: bb.upper, middle: bb.middle, lower: bb.lower,
}));
"""


def test_chart_studies_match_talib():
    import numpy as np
    import talib

    rng = np.random.default_rng(7)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    closes[150] *= 1.08  # a jump
    closes[200:230] = closes[199]  # a flat stretch: RSI with no moves, zero deviation
    run = subprocess.run(
        ["node", "--input-type=module", "-e", STUDIES_SCRIPT, str(BASE_DIR / STUDIES)],
        input=json.dumps(closes.tolist()), capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    got = {
        k: np.array([np.nan if v is None else v for v in vs])
        for k, vs in json.loads(run.stdout).items()
    }
    macd, signal, hist = talib.MACD(closes, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(closes, 20, 2, 2)
    expected = {
        "sma": talib.SMA(closes, 20), "ema": talib.EMA(closes, 20), "rsi": talib.RSI(closes, 14),
        "macd": macd, "signal": signal, "hist": hist, "upper": upper, "middle": middle,
        "lower": lower,
    }  # fmt: skip
    for name, want in expected.items():
        assert np.array_equal(np.isnan(got[name]), np.isnan(want)), f"{name}: warm-up differs"
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-9, err_msg=name, equal_nan=True)


def test_the_favicon_that_the_admin_and_redoc_ask_for_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"].startswith("image/svg+xml")
