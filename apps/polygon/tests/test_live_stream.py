"""The vendor's two official WebSocket clients, unchanged but for the host, against a live
Daphne's `/stocks` (docs/polygon.md#websocket). Ticks enter through `pipeline.ingest` in
this process, as the Celery worker sends them, with times across a minute boundary so a
minute closes without waiting for one. Expected values come from the /api/v1 door."""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from apps.ingest.pipeline import TickBatch, ingest

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WAIT = 30.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(milliseconds=1)


@pytest.fixture(params=["massive", "polygon"])
def vendor(request):
    """The client package: `massive` (current) or `polygon` (polygon-api-client, frozen)."""
    return importlib.import_module(request.param)


@pytest.fixture
def live(market, fresh_state, processes, monkeypatch):
    """A live Daphne with MARKETFLUX_PUBLIC_READ=0; (host:port, a user's key, base URL)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    key = Token.objects.create(user=get_user_model().objects.create_user("quant")).key
    url = processes.daphne(MARKETFLUX_PUBLIC_READ="0")
    return url.removeprefix("http://"), key, url


class Running:
    """A client's `connect(handler)` on its own event loop in a thread, bounded in time."""

    def __init__(self, client) -> None:
        self.client = client
        self.received: list = []
        self.error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        async def handler(messages: list) -> None:
            self.received += messages

        try:
            self.loop.run_until_complete(
                asyncio.wait_for(self.client.connect(handler), timeout=4 * WAIT)
            )
        except BaseException as exc:  # reported to the test
            self.error = exc

    def wait_for(self, done, what: str) -> list:
        deadline = time.monotonic() + WAIT
        while not done(self.received):
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"no {what}: {self.received[-5:]}"
            time.sleep(0.05)
        return list(self.received)

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(WAIT)
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        assert self.error is None, self.error  # close() ends connect() cleanly


def test_trades_quotes_and_aggregates_equal_what_is_stored(live, vendor):
    feed, key, url = live
    client = vendor.WebSocketClient(api_key=key, feed=feed, market="stocks", secure=False,
                                    subscriptions=["T.*", "Q.*", "A.*", "AM.*"])  # fmt: skip
    running = Running(client)
    try:
        # The client never waits for its subscription's answer: MSFT ticks until one arrives.
        probe = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        i = 0
        while not any(getattr(m, "symbol", None) == "MSFT" for m in running.received):
            ingest(TickBatch.from_rows([("MSFT", probe + timedelta(seconds=0.5 * i), 300.0, 1)]))
            i += 1
            assert running.error is None, running.error
            assert i < 200, "no trade reached the client"
            time.sleep(0.1)
        minute = probe + timedelta(minutes=10)
        times = [minute + timedelta(seconds=s) for s in (3, 17, 44, 59.5, 61)]  # 61: closes it
        for n, ts in enumerate(times):
            price = 190.0 + n / 4 - (n % 2)
            ingest(TickBatch.from_rows([("AAPL", ts, price, 100 + n, price - 0.02, price + 0.01,
                                         100 * (n + 1), 200)]))  # fmt: skip

        def of_aapl(received, event_type):
            return [m for m in received if m.event_type == event_type and m.symbol == "AAPL"]

        received = running.wait_for(
            lambda r: (
                len(of_aapl(r, "T")) >= len(times)
                and of_aapl(r, "AM")
                and len(of_aapl(r, "A")) >= 3
            ),
            "AAPL trades, quotes, second and minute aggregates",
        )
    finally:
        running.stop()

    headers = {"Authorization": f"Token {key}"}
    history = requests.get(f"{url}/api/v1/stocks/AAPL/history", params={"limit": 50},
                           headers=headers, timeout=WAIT).json()["results"]  # fmt: skip
    assert [(t.symbol, t.price, t.size, t.timestamp) for t in of_aapl(received, "T")] == [
        ("AAPL", h["price"], h["size"], ms(datetime.fromisoformat(h["ts"]))) for h in history
    ]
    assert len(history) == len(times)
    assert [(q.bid_price, q.ask_price, q.bid_size, q.ask_size, q.timestamp)
            for q in of_aapl(received, "Q")] == [
        (h["bid"], h["ask"], h["bid_size"] // 100, h["ask_size"] // 100,
         ms(datetime.fromisoformat(h["ts"]))) for h in history
    ]  # fmt: skip
    # One trade a second from the second on: each whole second is that trade.
    seconds = of_aapl(received, "A")
    assert [(a.start_timestamp, a.open, a.close, a.volume) for a in seconds] == [
        (ms(datetime.fromisoformat(h["ts"]).replace(microsecond=0)), h["price"], h["price"],
         h["size"]) for h in history[1:4]
    ]  # fmt: skip
    assert [a.end_timestamp - a.start_timestamp for a in seconds] == [1000] * 3
    bars = requests.get(f"{url}/api/v1/stocks/AAPL/bars", params={"interval": "1m"},
                        headers=headers, timeout=WAIT).json()["results"]  # fmt: skip
    bar = bars[0]
    (agg,) = of_aapl(received, "AM")  # the second minute is still open
    assert (agg.open, agg.high, agg.low, agg.close, agg.volume, agg.accumulated_volume) == (
        bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"], bar["volume"]
    )  # fmt: skip
    assert (agg.start_timestamp, agg.end_timestamp) == (ms(minute), ms(minute) + 60_000)
    assert agg.vwap == pytest.approx((bar["high"] + bar["low"] + bar["close"]) / 3)


def test_a_bad_key_is_an_auth_error_and_no_reconnect(live, vendor):
    feed, _, _ = live
    client = vendor.WebSocketClient(api_key="not-a-key", feed=feed, market="stocks",
                                    secure=False, subscriptions=["T.*"])  # fmt: skip
    exceptions = importlib.import_module(f"{vendor.__name__}.exceptions")

    async def nothing(messages) -> None:
        raise AssertionError(messages)

    with pytest.raises(exceptions.AuthError, match="authentication failed"):
        asyncio.run(asyncio.wait_for(client.connect(nothing), timeout=WAIT))
