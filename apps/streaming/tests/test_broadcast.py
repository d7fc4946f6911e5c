"""The broadcaster (apps/streaming/broadcast.py) against a real Daphne on a loopback port:
ticks enter through `pipeline.ingest` in this process, as the Celery worker publishes them,
over the real Redis channel layer; clients are the `websockets` library (one in a process
of its own) and a raw socket that stops reading. Expected values are what was ingested.
"""

from __future__ import annotations

import json
import random
import socket
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from django.conf import settings
from websockets.sync.client import ClientConnection, connect

from apps.ingest.pipeline import TickBatch, ingest
from apps.market import keys
from apps.market.models import Symbol
from apps.market.services import symbols_seed
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


def open_socket(base: str, path: str, **options) -> ClientConnection:
    return connect(ws_url(base, path), proxy=None, max_size=None, open_timeout=WAIT, **options)


def receive(ws: ClientConnection):
    return json.loads(ws.recv(timeout=WAIT))


def read_until(ws: ClientConnection, done) -> list:
    """Frames until `done(frames so far)`."""
    frames: list = []
    while not done(frames):
        frames.append(receive(ws))
    return frames


def subscribe(ws: ClientConnection, symbols) -> list[dict]:
    """A /ws/market subscription change; every message up to and including its answer."""
    ws.send(json.dumps({"action": "subscribe", "symbols": symbols}))
    received: list[dict] = []
    while not any(m["type"] == "subscribed" for m in received):
        received += receive(ws)
    return received


class Pusher:
    """Batches of every symbol (with quotes) through the real pipeline from this process."""

    def __init__(self, tickers: list[str]):
        self.tickers = tickers
        self.rng = random.Random(7)
        self.prices = dict.fromkeys(tickers, 100.0)
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.slot = 0
        self.published: list[tuple[str, str]] = []  # (symbol, ts) of every tick sent out

    def push(self, batches: int = 1, tickers: list[str] | None = None) -> None:
        for _ in range(batches):
            ts = self.start + timedelta(seconds=0.5 * self.slot)
            self.slot += 1
            rows = []
            for ticker in tickers or self.tickers:
                price = self.prices[ticker] = self.prices[ticker] * (1 + self.rng.gauss(0, 0.002))
                rows.append((ticker, ts, price, self.rng.randint(1, 900), price - 0.01,
                             price + 0.01, 300, 500))  # fmt: skip
            result = ingest(TickBatch.from_rows(rows))
            self.published += [(m["symbol"], m["ts"]) for m in result.messages]

    def of(self, *symbols: str) -> list[tuple[str, str]]:
        return [p for p in self.published if p[0] in symbols]


# A /ws/market client in a process of its own that reads everything: one line per tick.
READER = r"""
import json, sys
from websockets.sync.client import connect

url, out = sys.argv[1], sys.argv[2]
with connect(url, proxy=None, max_size=None, open_timeout=30) as ws, open(out, "w") as f:
    ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
    while True:
        for m in json.loads(ws.recv()):
            if m["type"] == "subscribed":
                f.write("subscribed\n")
            elif m["type"] == "tick":
                f.write(m["symbol"] + " " + m["ts"] + "\n")
        f.flush()
"""


def newest_lines(path: Path, size: int = 1 << 16) -> list[str]:
    """The complete lines in the last `size` bytes of a file (a few batches' worth)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        start = max(0, f.tell() - size)
        f.seek(start)
        text = f.read().decode()
    text = text[: text.rfind("\n") + 1]
    if start:
        text = text[text.find("\n") + 1 :]  # the first line may be cut
    return text.splitlines()


def read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    return text[: text.rfind("\n") + 1].splitlines()  # complete lines only


def test_a_slow_reader_is_coalesced_while_a_fast_reader_beside_it_gets_every_tick(
    db, redis_client, processes, tmp_path
):
    symbols_seed()
    symbols_seed(tickers=[f"BC{i:03d}" for i in range(200)])
    pusher = Pusher(sorted(Symbol.objects.values_list("ticker", flat=True)))
    base = processes.daphne()

    # Both subscribe to "*": the broadcaster builds one frame per batch for the two.
    lines = tmp_path / "fast.txt"
    processes.start("fast", ["-c", READER, ws_url(base, "/ws/market"), str(lines)])
    wait_for(lambda: "subscribed" in read_lines(lines), timeout=WAIT, what="the fast reader")
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, and then
    raw.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))  # websockets stops reading
    with open_socket(base, "/ws/market", sock=raw, max_queue=1, ping_interval=None) as slow:
        subscribe(slow, ["*"])

        # About 6 MB a client, far more than the kernel and Twisted hold, two batches at a
        # time: the fast reader keeps up if it has read two before the next two are sent
        # (it is then never more than one batch behind; batches back to back come much
        # faster than live, and a reader the machine's load holds up would be behind).
        def fast_has(ts: str) -> bool:
            return sum(line.endswith(" " + ts) for line in newest_lines(lines)) == len(
                pusher.tickers
            )

        for _ in range(30):
            pusher.push(2)
            last = pusher.published[-1][1]
            wait_for(partial(fast_has, last), timeout=60, interval=0.01, what="the fast reader")

        # The fast reader got every tick once, each symbol's in order.
        got = [tuple(line.split(" ")) for line in read_lines(lines) if line != "subscribed"]
        assert sorted(got) == sorted(pusher.published)
        for symbol in ("AAPL", "BC000", "BC199"):
            assert [p for p in got if p[0] == symbol] == pusher.of(symbol)

        # The slow reader, reading at last, gets each symbol's ticks in order up to its
        # newest; what it could not take was coalesced away.
        newest: dict[str, str] = {}
        seen = 0
        while sum(ts == last for ts in newest.values()) < len(pusher.tickers):
            for m in receive(slow):
                if m["type"] == "tick":
                    if m["symbol"] in newest:
                        assert _at(m["ts"]) > _at(newest[m["symbol"]])
                    newest[m["symbol"]] = m["ts"]
                    seen += 1
        assert seen < len(pusher.published)

    # Once it has gone, what it missed is counted; the fast reader missed nothing.
    dropped = wait_for(lambda: int(redis_client.get(keys.WS_TICKS_DROPPED) or 0), timeout=WAIT,
                       what="the dropped count")  # fmt: skip
    assert dropped == len(pusher.published) - seen


def test_an_unsubscribed_symbol_never_arrives_on_any_feed(market, redis_client, processes):
    pusher = Pusher([s.ticker for s in market])
    base = processes.daphne()
    with (
        open_socket(base, "/ws/market") as pair_a,
        open_socket(base, "/ws/market") as pair_b,
        open_socket(base, "/ws/market") as all_but_tsla,
        open_socket(base, "/ws/stocks/aapl") as stock,
        open_socket(base, "/stocks") as gateway,
    ):
        for ws in (pair_a, pair_b, all_but_tsla):
            receive(ws)  # the overview
        assert subscribe(pair_a, ["AAPL", "MSFT"])[-1]["symbols"] == ["AAPL", "MSFT"]
        assert subscribe(pair_b, ["msft", "aapl"])[-1]["symbols"] == ["AAPL", "MSFT"]
        subscribe(all_but_tsla, "*")
        all_but_tsla.send(json.dumps({"action": "unsubscribe", "symbols": ["TSLA"]}))
        assert receive(all_but_tsla)[-1]["symbols"] == ["AAPL", "AMZN", "GOOGL", "MSFT"]
        assert receive(stock)["type"] == "snapshot"
        assert receive(gateway)[0]["status"] == "connected"
        gateway.send(json.dumps({"action": "auth", "params": "key"}))
        assert receive(gateway)[0]["status"] == "auth_success"
        gateway.send(json.dumps({"action": "subscribe", "params": "T.AAPL,Q.MSFT"}))
        assert [e["status"] for e in receive(gateway)] == ["success", "success"]

        # One channel-layer subscription per group in the Daphne process, however many
        # sockets of it are open (three /ws/market and a /stocks on `market`).
        prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
        groups = [f"{prefix}__group__market", f"{prefix}__group__ticks.AAPL"]
        assert [n for _, n in redis_client.pubsub_numsub(*groups)] == [1, 1]

        pusher.push(3)
        pusher.push(1, ["AAPL"])  # the end: everything sent before it arrived before it
        end = ("AAPL", pusher.published[-1][1])

        def ticks_until_end(ws, kind: str = "tick", symbol="symbol") -> tuple[list, list]:
            frames = read_until(ws, lambda f: any(
                (m.get(symbol), m.get("ts")) == end for frame in f for m in _listed(frame)
            ))  # fmt: skip
            return frames, [m for frame in frames for m in _listed(frame) if m.get("type") == kind]

        frames_a, ticks_a = ticks_until_end(pair_a)
        frames_b, _ = ticks_until_end(pair_b)
        _, ticks_all = ticks_until_end(all_but_tsla)
        _, ticks_stock = ticks_until_end(stock)
        events = read_until(gateway, lambda f: any(
            e["ev"] == "T" and e["t"] == _ms(end[1]) for frame in f for e in frame
        ))  # fmt: skip

    assert [(m["symbol"], m["ts"]) for m in ticks_a] == pusher.of("AAPL", "MSFT")
    assert frames_b == frames_a  # the same subscription, the same frames
    assert [(m["symbol"], m["ts"]) for m in ticks_all] == pusher.of("AAPL", "AMZN", "GOOGL",
                                                                   "MSFT")  # fmt: skip
    assert [(m["symbol"], m["ts"]) for m in ticks_stock] == pusher.of("AAPL")
    got = [(e["ev"], e["sym"], e["t"]) for frame in events for e in frame]
    assert sorted(got) == sorted(
        [("T", s, _ms(ts)) for s, ts in pusher.of("AAPL")]
        + [("Q", s, _ms(ts)) for s, ts in pusher.of("MSFT")]
    )


def _listed(frame) -> list[dict]:
    return frame if isinstance(frame, list) else [frame]


def _at(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def _ms(ts: str) -> int:
    return round(_at(ts).timestamp() * 1000)
