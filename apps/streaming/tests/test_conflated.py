"""A conflated `/ws/market` subscription (`"every"`, docs/contracts.md#wsmarket) against a
real Daphne on a loopback port: ticks and overviews enter through the real pipeline in this
process (`pipeline.ingest`, `publish_overview_if_due`), as the Celery worker publishes them,
over the real Redis channel layer; clients are the `websockets` library, each read on a
thread of its own as frames arrive. Expected values are what was ingested, and what a plain
subscriber on the same server got.

No timing is asserted beyond the option's promise, counted with slack: over `elapsed`
seconds a client gets at most `elapsed / period + 1` updates of a symbol.
"""

from __future__ import annotations

import json
import random
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from apps.ingest.pipeline import TickBatch, ingest
from apps.ingest.services import publish_overview_if_due
from apps.market import keys
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0
# docs/contracts.md#wsmarket: the answer to a period that is not 0 or 0.25 to 60 seconds.
BAD_EVERY = '"every" must be 0 (every tick) or seconds from 0.25 to 60'


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


def open_socket(base: str, path: str = "/ws/market") -> ClientConnection:
    return connect(ws_url(base, path), proxy=None, max_size=None, open_timeout=WAIT)


def receive(ws: ClientConnection) -> list[dict]:
    frame = json.loads(ws.recv(timeout=WAIT))
    assert isinstance(frame, list), frame  # every /ws/market frame is a JSON array
    return frame


def answer(ws: ClientConnection, message: dict) -> list[dict]:
    """Send a message; the frame that answers it (nothing else comes while nothing ticks)."""
    ws.send(json.dumps(message))
    return receive(ws)


def ticks_in(frame: list[dict]) -> list[tuple[str, str, float]]:
    return [(m["symbol"], m["ts"], m["price"]) for m in frame if m["type"] == "tick"]


class Pusher:
    """Batches of the given symbols through the real pipeline, each followed by the
    overview, as the tick task sends them."""

    def __init__(self, tickers: list[str], redis_client):
        self.tickers = tickers
        self.redis = redis_client
        self.rng = random.Random(22)
        self.prices = dict.fromkeys(tickers, 100.0)
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.slot = 0
        self.published: list[tuple[str, str, float]] = []  # (symbol, ts, price) of each tick
        self.overviews = 0

    def push(self, batches: int = 1, *, overview: bool = True) -> None:
        for _ in range(batches):
            ts = self.start + timedelta(seconds=0.5 * self.slot)
            self.slot += 1
            rows = []
            for ticker in self.tickers:
                price = self.prices[ticker] = self.prices[ticker] * (1 + self.rng.gauss(0, 0.002))
                rows.append((ticker, ts, price, self.rng.randint(1, 900)))
            result = ingest(TickBatch.from_rows(rows))
            self.published += [(m["symbol"], m["ts"], m["price"]) for m in result.messages]
            if overview:
                self.redis.delete(keys.OVERVIEW_DUE)  # one a second: this one is due now
                assert publish_overview_if_due(result.states)
                self.overviews += 1

    def of(self, symbol: str) -> list[tuple[str, str, float]]:
        return [p for p in self.published if p[0] == symbol]

    def newest(self, symbol: str) -> tuple[str, str, float]:
        return self.of(symbol)[-1]


class Reader:
    """A /ws/market client past its subscription's answer, reading every frame on a thread
    of its own as it arrives (so none waits unread in a buffer)."""

    def __init__(self, base: str, subscription: dict):
        self.stack = ExitStack()
        self.ws = self.stack.enter_context(open_socket(base))
        assert [m["type"] for m in receive(self.ws)] == ["overview"]  # on connect
        self.ack = answer(self.ws, {"action": "subscribe", **subscription})[-1]
        self.frames: list[list[dict]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                self.frames.append(json.loads(self.ws.recv()))
        except ConnectionClosed:
            pass

    def close(self) -> None:
        self.stack.close()
        self.thread.join(timeout=WAIT)

    def messages(self, kind: str) -> list[dict]:
        return [m for frame in list(self.frames) for m in frame if m["type"] == kind]

    def ticks(self, symbol: str | None = None) -> list[tuple[str, str, float]]:
        return [(m["symbol"], m["ts"], m["price"]) for m in self.messages("tick")
                if symbol in (None, m["symbol"])]  # fmt: skip

    def has(self, *ticks: tuple[str, str, float]) -> bool:
        return set(ticks) <= set(self.ticks())


def test_a_conflated_subscription_gets_each_symbols_newest_tick_at_most_once_a_period(
    market, redis_client, processes
):
    pusher = Pusher([s.ticker for s in market], redis_client)
    base = processes.daphne()
    began = time.monotonic()
    pair = {"symbols": ["AAPL", "msft"]}
    plain = Reader(base, pair)
    conflated_a = Reader(base, {**pair, "every": 2})
    conflated_b = Reader(base, {**pair, "every": 2.0})
    everything = Reader(base, {"symbols": "*", "every": 0.5})
    assert plain.ack == {"type": "subscribed", "symbols": ["AAPL", "MSFT"]}
    assert conflated_a.ack == {"type": "subscribed", "symbols": ["AAPL", "MSFT"], "every": 2}
    assert conflated_b.ack == conflated_a.ack
    assert everything.ack == {"type": "subscribed", "symbols": ["*"], "every": 0.5}

    # Three bursts of four batches (every symbol ticks four times, back to back), each
    # batch followed by an overview; the plain subscriber gets each burst before the next.
    for _ in range(3):
        pusher.push(4)
        newest = pusher.newest("AAPL"), pusher.newest("MSFT")
        wait_for(lambda n=newest: plain.has(*n), timeout=WAIT, what="the plain subscriber")
    wait_for(lambda: len(plain.messages("overview")) == pusher.overviews, timeout=WAIT,
             what="every overview on the plain subscriber")  # fmt: skip
    last_overview = plain.messages("overview")[-1]

    # The conflated ones get, in time, the newest tick of each symbol and the newest overview.
    def up_to_date(reader: Reader, symbols: list[str]) -> bool:
        overviews = reader.messages("overview")
        return (
            reader.has(*(pusher.newest(s) for s in symbols))
            and bool(overviews)
            and overviews[-1] == last_overview
        )

    tickers = [s.ticker for s in market]
    for reader, symbols in ((conflated_a, ["AAPL", "MSFT"]), (conflated_b, ["AAPL", "MSFT"]),
                            (everything, tickers)):  # fmt: skip
        wait_for(lambda r=reader, s=symbols: up_to_date(r, s), timeout=WAIT,
                 what="the newest values on a conflated subscriber")  # fmt: skip
    for reader in (plain, conflated_a, conflated_b, everything):
        reader.close()
    elapsed = time.monotonic() - began  # every frame counted arrived within it

    # The plain subscriber beside them got every tick of its symbols, in order, and every
    # overview.
    assert plain.ticks() == [p for p in pusher.published if p[0] in ("AAPL", "MSFT")]
    assert len(plain.messages("overview")) == pusher.overviews == 12
    plain_ticks = {(m["symbol"], m["ts"]): m for m in plain.messages("tick")}

    for reader, symbols, period in ((conflated_a, ["AAPL", "MSFT"], 2.0),
                                    (conflated_b, ["AAPL", "MSFT"], 2.0),
                                    (everything, tickers, 0.5)):  # fmt: skip
        # Nothing of the symbols not subscribed; in each frame at most one tick of a symbol
        # and one overview.
        assert {s for s, _, _ in reader.ticks()} == set(symbols)
        for frame in reader.frames:
            kinds = [m["symbol"] if m["type"] == "tick" else m["type"] for m in frame]
            assert len(kinds) == len(set(kinds)), frame
            assert set(kinds) <= {*symbols, "overview"}, frame
        # Each symbol's ticks: ones that were published, in order, the last its newest; at
        # most one a period.
        for symbol in symbols:
            got = reader.ticks(symbol)
            published = pusher.of(symbol)
            assert set(got) <= set(published), symbol
            order = [published.index(t) for t in got]
            assert order == sorted(set(order)), (symbol, got)
            assert got[-1] == published[-1]
            assert len(got) <= elapsed / period + 1, (symbol, len(got), elapsed)
        overviews = reader.messages("overview")
        assert len(overviews) <= elapsed / period + 1, (len(overviews), elapsed)
        assert overviews[-1] == last_overview
        # A conflated tick is the very message a plain subscriber gets.
        for m in reader.messages("tick"):
            if (m["symbol"], m["ts"]) in plain_ticks:
                assert m == plain_ticks[m["symbol"], m["ts"]]

    # The two with the same subscription and period got the same frames.
    assert conflated_b.frames == conflated_a.frames


def test_ticks_of_a_symbol_within_one_period_reach_the_client_as_only_the_newest(
    market, redis_client, processes
):
    pusher = Pusher([s.ticker for s in market], redis_client)
    base = processes.daphne()
    plain = Reader(base, {"symbols": ["AAPL", "TSLA"]})
    conflated = Reader(base, {"symbols": ["AAPL", "TSLA"], "every": 5})

    # A first batch, to see a flush come: the next one is a whole period after it.
    pusher.push(1, overview=False)
    wait_for(lambda: conflated.frames, timeout=WAIT, what="a first flush")
    flushed = len(conflated.frames)
    # Right after it, five ticks of each symbol, back to back (far less than 5 s of work).
    pushed_at = time.monotonic()
    pusher.push(5, overview=False)
    newest = pusher.newest("AAPL"), pusher.newest("TSLA")
    wait_for(lambda: plain.has(*newest), timeout=WAIT, what="the plain subscriber")
    burst = time.monotonic() - pushed_at
    wait_for(lambda: len(conflated.frames) > flushed, timeout=WAIT, what="the next flush")
    for reader in (plain, conflated):
        reader.close()

    # The plain subscriber got all six of each; the conflated one, of the burst, only the
    # newest of each symbol, in one frame.
    assert plain.ticks() == [p for p in pusher.published if p[0] in ("AAPL", "TSLA")]
    assert len(plain.ticks("AAPL")) == len(plain.ticks("TSLA")) == 6
    first, following = conflated.frames[:flushed], conflated.frames[flushed:]
    assert sorted(t for f in first for t in ticks_in(f)) == [pusher.of("AAPL")[0],
                                                           pusher.of("TSLA")[0]]  # fmt: skip
    got = sorted(ticks_in(following[0]))
    assert got == sorted(newest), f"the burst took {burst:.1f} s"
    assert conflated.ticks() == [t for f in first + following[:1] for t in ticks_in(f)]


def test_a_bad_period_is_refused_and_every_0_goes_back_to_every_tick(
    market, redis_client, processes
):
    pusher = Pusher([s.ticker for s in market], redis_client)
    base = processes.daphne()
    with open_socket(base) as ws:
        assert [m["type"] for m in receive(ws)] == ["overview"]
        subscribed = answer(ws, {"action": "subscribe", "symbols": ["AAPL"], "every": 5})
        assert subscribed == [{"type": "subscribed", "symbols": ["AAPL"], "every": 5}]

        # Each refused with the documented error, and nothing changed (not even MSFT).
        for bad in (-1, 0.1, 0.24, 60.5, 1e6, "1", True, None, [1], {"seconds": 1}):
            refused = answer(ws, {"action": "subscribe", "symbols": ["MSFT"], "every": bad})
            assert refused == [{"type": "error", "message": BAD_EVERY, "field": "every"}], bad
        refused = answer(ws, {"action": "unsubscribe", "symbols": ["AAPL"], "every": 1})
        assert refused == [
            {"type": "error", "message": '"every" goes with "subscribe" only', "field": "every"}
        ]

        # A subscribe without "every" keeps the period. What was held for the subscription
        # before it (an AAPL tick, which a plain subscriber beside it has got) comes first,
        # then the answer.
        with open_socket(base) as beside:
            receive(beside)  # the overview
            answer(beside, {"action": "subscribe", "symbols": ["AAPL"]})
            pusher.push(1, overview=False)
            assert ticks_in(receive(beside)) == pusher.of("AAPL")
        ws.send(json.dumps({"action": "subscribe", "symbols": ["TSLA"]}))
        received: list[dict] = []
        while not any(m["type"] == "subscribed" for m in received):
            received += receive(ws)
        assert ticks_in(received) == pusher.of("AAPL")
        assert received[-1] == {"type": "subscribed", "symbols": ["AAPL", "TSLA"], "every": 5}

        # A period is rounded to a quarter second; 0 is every tick again (and the answer no
        # longer names a period).
        rounded = answer(ws, {"action": "subscribe", "symbols": [], "every": 0.3})
        assert rounded == [{"type": "subscribed", "symbols": ["AAPL", "TSLA"], "every": 0.25}]
        back = answer(ws, {"action": "subscribe", "symbols": [], "every": 0})
        assert back == [{"type": "subscribed", "symbols": ["AAPL", "TSLA"]}]

        before = len(pusher.published)
        pusher.push(3, overview=False)
        frames = [receive(ws) for _ in range(3)]  # one frame a batch, as without "every"
    assert [t for f in frames for t in ticks_in(f)] == [
        p for p in pusher.published[before:] if p[0] in ("AAPL", "TSLA")
    ]
