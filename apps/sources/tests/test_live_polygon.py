"""The Polygon/Massive connector against a second MarketFlux (apps/testing/vendor.py): its
gateway streams `T` and `Q` events on `/stocks` and serves `/v3/trades`, as the vendor does
(docs/polygon.md, proven there with the vendor's own clients). `manage.py run_sources`, as
`make run` starts it, turns them into this instance's ticks; a proxy between the two takes
the vendor away for 10 s. Expected values are the vendor instance's own stored rows."""

from __future__ import annotations

import time
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from apps.market.models import Bar, Source, Symbol, Tick
from apps.testing.network import TcpProxy
from apps.testing.vendor import vendor_instance
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TICKERS = ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]  # the vendor's default market
OUTAGE = 10.0  # s


def ours_ticks() -> dict[tuple[str, datetime], tuple]:
    rows = Tick.objects.values_list("symbol_id", "ts", "price", "size", "bid", "ask")
    return {(s, ts): tuple(rest) for s, ts, *rest in rows}


def vendor_ticks(vendor, since: dict[str, datetime]) -> dict[tuple[str, datetime], tuple]:
    rows = vendor.query("SELECT symbol_id, ts, price, size, bid, ask FROM market_tick")
    return {(s, ts): tuple(rest) for s, ts, *rest in rows if ts >= since[s]}


def bars(rows) -> dict[tuple[str, datetime], tuple]:
    return {(s, ts): tuple(rest) for s, ts, *rest in rows}


def minute_bars(ticks: dict[tuple[str, datetime], tuple]) -> dict[tuple[str, datetime], tuple]:
    """The 1-minute bars of ticks (one trade each), worked out here."""
    minutes: dict[tuple[str, datetime], list] = {}
    for (symbol, ts), (price, size, *_) in sorted(ticks.items()):
        minutes.setdefault((symbol, ts.replace(second=0, microsecond=0)), []).append((price, size))
    return {
        key: (trades[0][0], max(p for p, _ in trades), min(p for p, _ in trades), trades[-1][0],
              sum(s for _, s in trades), len(trades))
        for key, trades in minutes.items()
    }  # fmt: skip


def test_the_connector_stores_the_vendors_ticks_and_fills_an_outage(
    fresh_state, processes, tmp_path, client, admin_client
):
    with vendor_instance(tmp_path) as vendor:
        proxy = TcpProxy("127.0.0.1", urlsplit(vendor.url).port)
        try:
            source = Source.objects.create(
                name="massive", kind=Source.POLYGON, url=f"ws://127.0.0.1:{proxy.port}/stocks",
                rest_url=f"http://127.0.0.1:{proxy.port}", key_env="VENDOR_KEY",
            )  # fmt: skip
            for ticker in TICKERS:
                Symbol.objects.create(ticker=ticker, name=ticker, exchange="NASDAQ",
                                      source=source, start_price=100.0)  # fmt: skip
            processes.start("sources", ["manage.py", "run_sources"], VENDOR_KEY="any-key",
                            MARKETFLUX_SOURCE_RECONNECT_MAX="2")  # fmt: skip
            wait_for(lambda: Tick.objects.count() >= 20, timeout=60,
                     what="ticks from the vendor's stream")  # fmt: skip

            proxy.cut()  # the vendor is gone: its socket drops, nothing answers
            cut_at = time.time()
            time.sleep(OUTAGE)
            proxy.restore()
            restored_at = time.time()

            def gap_filled() -> dict | None:
                state = client.get("/health").json().get("sources", {}).get("massive", {})
                gap = state.get("last_gap") or {}
                return state if gap.get("filled_at") and state["connected"] else None

            state = wait_for(gap_filled, timeout=60, what="the outage's gap filled")
            assert state["reconnects"] >= 1
            assert state["last_gap"]["trades"] > 0
            assert "error" not in state["last_gap"]
            listing = admin_client.get("/admin/market/source/").content.decode()
            assert "connected" in listing
            assert (
                "last_gap"
                in admin_client.get("/admin/market/source/massive/change/").content.decode()
            )
            time.sleep(3)  # the stream runs on after the outage
            vendor.processes.stop("beat")  # the vendor's market closes: its record is final
            time.sleep(1)
            (newest,) = vendor.query("SELECT max(ts) FROM market_tick")[0]
            wait_for(lambda: Tick.objects.filter(ts=newest).count() == len(TICKERS),
                     timeout=30, what="the vendor's last ticks here")  # fmt: skip
            time.sleep(1.5)  # nothing more comes
        finally:
            proxy.close()
        processes.stop("sources")

        first = {
            s: Tick.objects.filter(symbol_id=s).order_by("ts").values_list("ts", flat=True)[0]
            for s in TICKERS
        }
        ours, theirs = ours_ticks(), vendor_ticks(vendor, first)
        # Every tick of the vendor since our first, and only those: the outage's too.
        assert {k: v[:2] for k, v in ours.items()} == {k: v[:2] for k, v in theirs.items()}
        in_outage = [k for k in ours if cut_at + 1 < k[1].timestamp() < restored_at - 1]
        assert len(in_outage) >= len(TICKERS) * (OUTAGE - 2)  # two a second, each symbol
        # Quotes: as the vendor's wherever the stream brought them (the outage's are unknown).
        quoted = {k: v for k, v in ours.items() if v[2] is not None}
        assert {k: v[2:] for k, v in quoted.items()} == {k: theirs[k][2:] for k in quoted}
        back = datetime.fromisoformat(state["connected_since"]).timestamp()
        streamed = [k for k in ours if not cut_at - 1 < k[1].timestamp() < back + 1]
        assert streamed
        assert all(k in quoted for k in streamed)
        assert not any(k in quoted for k in in_outage)
        # Bars: each minute is the bar of the vendor's trades since our first tick, counted
        # once (and, for a minute wholly after it, the vendor's own stored bar).
        columns = ("symbol_id", "ts", "open", "high", "low", "close", "volume", "trades")
        mine = bars(Bar.objects.filter(interval="1m").values_list(*columns))
        assert mine == minute_bars(theirs)
        vendor_bars = bars(vendor.query(
            "SELECT symbol_id, ts, open, high, low, close, volume, trades FROM market_bar"
            " WHERE interval = '1m'"
        ))  # fmt: skip
        whole = [k for k in mine if k[1] > first[k[0]].replace(second=0, microsecond=0)]
        assert all(mine[k] == vendor_bars[k] for k in whole)
