"""The example program (examples/polygon_client.py) and the vendor's two official WebSocket
clients against the whole stack, as `make run` starts it: Celery beat schedules the
simulator's ticks, a worker ingests them, Daphne streams them on `/stocks`
(docs/polygon.md#websocket). Nothing here calls the pipeline: every trade and minute bar is
the simulator's, so each test waits for one wall-clock minute to close. Expected values come
from the /api/v1 door, or are worked out by hand."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest
import requests
from django.core.management import call_command

from apps.testing import BASE_DIR
from apps.testing.waiting import wait_for

TICKERS = ["AAPL", "AMZN", "GOOGL", "MSFT", "TSLA"]  # the default market
TICK_INTERVAL = "0.5"  # of beat and the worker: each symbol ticks twice a second
EXAMPLE = BASE_DIR / "examples" / "polygon_client.py"
MINUTE_WAIT = 100.0  # s: a minute closes within 60 s of any moment, plus the first ticks
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix(iso: str, unit: timedelta) -> int:
    """An /api/v1 time ("...Z") as a whole number of `unit`s since the epoch."""
    return (datetime.fromisoformat(iso) - EPOCH) // unit


MS, US = timedelta(milliseconds=1), timedelta(microseconds=1)


@pytest.fixture
def example() -> ModuleType:
    """examples/polygon_client.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("polygon_client", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stack(market, fresh_state, processes, monkeypatch) -> str:
    """Daphne, a Celery worker and beat on the test database, public read on (any key
    reads), every default symbol ticking; returns Daphne's host:port."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    processes.celery_worker(TICK_INTERVAL=TICK_INTERVAL)
    processes.celery_beat(TICK_INTERVAL=TICK_INTERVAL)
    url = processes.daphne(TICK_INTERVAL=TICK_INTERVAL)

    def every_symbol_priced() -> bool:
        stocks = requests.get(f"{url}/api/v1/stocks", timeout=10).json()["results"]
        return sorted(s["symbol"] for s in stocks if s["price"] is not None) == TICKERS

    wait_for(every_symbol_priced, timeout=60, what="a first tick of every symbol")
    return url.removeprefix("http://")


def ours(host: str, path: str, **params) -> dict:
    answer = requests.get(f"http://{host}/api/v1/{path}", params=params, timeout=10)
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()


def test_crossover_on_a_hand_made_series(example):  # no stack: a plain function
    closes = [10, 10, 10, 13, 14, 12, 9, 8, 9, 12]
    # SMA2 / SMA3 after each close from the third: 10/10, 11.5/11, 13.5/12.33, 13/13,
    # 10.5/11.67, 8.5/9.67, 8.5/8.67, 10.5/9.67. The fast one goes from equal to above at
    # the 4th close, from equal (13 = 13) to below at the 7th, from below to above at the
    # 10th; at the 6th it only touches the slow one, which is no crossing.
    expected = [None, None, None, "up", None, None, "down", None, None, "up"]
    got = [example.crossover(closes[:k], fast=2, slow=3) for k in range(1, len(closes) + 1)]
    assert got == expected
    assert example.crossover([10.1] * 21, fast=5, slow=20) is None  # rounding is no cross

    line = example.crossover_line("AAPL", closes[:4], fast=2, slow=3, minute="10:04")
    words = line.split()
    assert words[:3] == ["BUY", "AAPL", "10:04"]
    assert "above" in words
    assert [float(w) for w in words if w[0].isdigit() and ":" not in w] == [11.5, 11.0]
    sell = example.crossover_line("AAPL", closes[:7], fast=2, slow=3, minute="10:07").split()
    assert sell[0] == "SELL"
    assert "below" in sell
    assert example.crossover_line("AAPL", closes[:5], fast=2, slow=3, minute="10:05") is None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_example_prints_trades_and_a_minute_bar_and_exits(stack):
    host = stack
    # A day of minute bars before the live ones, as an operator seeds them, so the program
    # starts with closes to average (the simulator's ticks still come from beat and worker).
    call_command("backfill", days=1)
    # Run past a minute boundary at least 10 s away, so the program has read its closes and
    # subscribed (about 2 s) before the minute closes, and 12 s beyond it.
    to_boundary = 60 - time.time() % 60
    seconds = round(to_boundary + (60 if to_boundary < 10 else 0) + 12)
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "MARKETFLUX_API_KEY": "any"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--host", host, "--fast", "2", "--slow", "3",
         "--seconds", str(seconds)],
        capture_output=True, text=True, timeout=seconds + 60, env=env, cwd=BASE_DIR,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert {words[1] for words in lines if words[0] == "T"} == set(TICKERS), result.stdout[-2000:]
    assert [words for words in lines if words[0] == "seeded"] == [
        ["seeded", symbol, "with", "4", "minute", "closes"] for symbol in TICKERS
    ]  # SMA3 now and a minute ago: 4 closes
    minute_lines = [i for i, words in enumerate(lines) if words[0] == "AM"]
    assert minute_lines, result.stdout[-2000:]
    for i in minute_lines:  # AM SYM HH:MM o O h H l L c C v V SMA2 S2 SMA3 S3
        symbol, minute = lines[i][1], lines[i][2]
        printed = dict(zip(lines[i][3::2], lines[i][4::2], strict=True))
        bars = ours(host, f"stocks/{symbol}/bars", interval="1m", limit=10)["results"]
        at = [datetime.fromisoformat(b["ts"]).strftime("%H:%M") for b in bars].index(minute)
        bar = bars[at]
        assert float(printed["o"]) == pytest.approx(bar["open"], abs=5e-5)
        assert float(printed["h"]) == pytest.approx(bar["high"], abs=5e-5)
        assert float(printed["l"]) == pytest.approx(bar["low"], abs=5e-5)
        assert float(printed["c"]) == pytest.approx(bar["close"], abs=5e-5)
        assert int(printed["v"]) == bar["volume"]
        # The averages of this minute's close and the ones before it, as /api/v1 has them.
        closes = [b["close"] for b in bars[: at + 1]]
        assert len(closes) >= 4  # backfilled minutes come first
        assert float(printed["SMA2"]) == pytest.approx(sum(closes[-2:]) / 2, abs=5e-5)
        assert float(printed["SMA3"]) == pytest.approx(sum(closes[-3:]) / 3, abs=5e-5)

        # A BUY line follows when SMA2 went from at or below SMA3 a minute before to above
        # it now; a SELL line when from at or above to below.
        def fast_minus_slow(end: int, closes: list = closes) -> float:
            return sum(closes[end - 2 : end]) / 2 - sum(closes[end - 3 : end]) / 3

        was, now = fast_minus_slow(len(closes) - 1), fast_minus_slow(len(closes))
        expected = "BUY" if was <= 0 < now else "SELL" if was >= 0 > now else None
        after = lines[i + 1] if i + 1 < len(lines) else ["", ""]
        signal = after[0] if after[0] in ("BUY", "SELL") and after[1] == symbol else None
        assert signal == expected, (lines[i], after, closes)


@contextmanager
def streaming(client) -> Iterator[Callable[[Callable[[list], bool], str], list]]:
    """`client.connect` on its own event loop in a thread; yields `wait(done, what)`, which
    returns what was received once `done(received)` holds (bounded by MINUTE_WAIT). The
    client is closed afterwards, and must end cleanly."""
    received: list = []
    errors: list[BaseException] = []
    loop = asyncio.new_event_loop()

    async def handler(messages: list) -> None:
        received.extend(messages)

    def run() -> None:
        try:
            loop.run_until_complete(
                asyncio.wait_for(client.connect(handler), timeout=2 * MINUTE_WAIT)
            )
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def wait(done: Callable[[list], bool], what: str) -> list:
        deadline = time.monotonic() + MINUTE_WAIT
        while not done(received):
            assert not errors, errors
            assert time.monotonic() < deadline, f"no {what}: {received[-5:]}"
            time.sleep(0.1)
        return list(received)

    try:
        yield wait
    finally:
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(client.close(), loop).result(30)
        thread.join(30)
        assert not thread.is_alive()
        assert not errors, errors  # close() ends connect() cleanly


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_streamed_trades_and_minute_bars_equal_what_is_stored(stack):
    """Both official clients, `massive` (current) and `polygon` (polygon-api-client, frozen),
    streaming at once from one stack: one wall-clock minute to wait, not one each."""
    host = stack
    clients = {
        package: importlib.import_module(package).WebSocketClient(
            api_key="any",
            feed=host,
            market="stocks",
            secure=False,
            subscriptions=["T.*", "AM.*"],
        )
        for package in ("massive", "polygon")
    }

    def a_minute_bar_of_every_symbol(received: list) -> bool:
        return {m.symbol for m in received if m.event_type == "AM"} == set(TICKERS)

    with streaming(clients["massive"]) as current, streaming(clients["polygon"]) as frozen:
        received = {
            package: wait(a_minute_bar_of_every_symbol, f"{package}: minute bar of every symbol")
            for package, wait in (("massive", current), ("polygon", frozen))
        }
    for package, events in received.items():
        assert_equal_to_what_is_stored(host, events, package)


def assert_equal_to_what_is_stored(host: str, received: list, package: str) -> None:
    trades = [m for m in received if m.event_type == "T"]
    minute_bars = [m for m in received if m.event_type == "AM"]
    for symbol in TICKERS:
        history = ours(host, f"stocks/{symbol}/history", limit=5000)["results"]
        stored = {
            (symbol, h["price"], h["size"], unix(h["ts"], MS), unix(h["ts"], US)) for h in history
        }
        streamed = [
            (t.symbol, t.price, t.size, t.timestamp, t.sequence_number)
            for t in trades
            if t.symbol == symbol
        ]
        assert streamed, f"{package}: no trade of {symbol}"
        assert [t for t in streamed if t not in stored] == []
        assert len(set(streamed)) == len(streamed)  # each trade once

        bars = ours(host, f"stocks/{symbol}/bars", interval="1m", limit=5000)["results"]
        by_start = {unix(b["ts"], MS): b for b in bars}
        for agg in (m for m in minute_bars if m.symbol == symbol):
            bar = by_start[agg.start_timestamp]
            assert (agg.open, agg.high, agg.low, agg.close, agg.volume) == (
                bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]
            )  # fmt: skip
            assert agg.end_timestamp - agg.start_timestamp == 60_000
            # The UTC day so far (every bar here is this test's): its volume and first open.
            day = datetime.fromtimestamp(agg.start_timestamp / 1000, tz=UTC).date()
            so_far = [
                b for b in bars
                if datetime.fromisoformat(b["ts"]).date() == day
                and unix(b["ts"], MS) <= agg.start_timestamp
            ]  # fmt: skip
            assert agg.accumulated_volume == sum(b["volume"] for b in so_far)
            assert agg.official_open_price == so_far[0]["open"]
