"""The WebSocket feed end to end, read like an outside program would.

A real Daphne on a loopback port, the real pipeline under a real Celery worker and beat
(or `pipeline.ingest` called from here, which publishes the same way), PostgreSQL and
Redis; clients are the `websockets` library in this process or in a process of its own.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from apps.ingest.pipeline import TickBatch, ingest
from apps.market import keys
from apps.market.models import Symbol, Tick
from apps.market.services import symbols_seed
from apps.testing.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WAIT = 30.0  # seconds to wait for anything the server should send
INTERVAL = "0.5"  # TICK_INTERVAL of the worker and beat
# docs/contracts.md#indicators: the indicators every tick carries.
INDICATOR_FIELDS = {
    "sma_20", "ema_20", "rsi_14", "zscore_20", "anomaly",
    "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower",
}  # fmt: skip


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


def open_socket(base: str, path: str, **options) -> ClientConnection:
    return connect(ws_url(base, path), proxy=None, max_size=None, open_timeout=WAIT, **options)


def receive(ws: ClientConnection, timeout: float = WAIT):
    return json.loads(ws.recv(timeout=timeout))


def drain(ws: ClientConnection) -> list:
    """Whatever the socket already has (it waits half a second for more)."""
    frames = []
    while True:
        try:
            frames.append(receive(ws, timeout=0.5))
        except TimeoutError:
            return frames


def subscribe_all(ws: ClientConnection) -> list[dict]:
    """Subscribe to "*" on /ws/market; every message up to and including the ack."""
    ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
    received: list[dict] = []
    while not any(m["type"] == "subscribed" for m in received):
        frame = receive(ws)
        assert isinstance(frame, list), frame
        received += frame
    return received


def parse_ts(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def stored_ticks(symbol: str | None = None, *, after=None, until=None) -> list[tuple]:
    rows = Tick.objects.order_by("ts", "symbol_id")
    if symbol:
        rows = rows.filter(symbol_id=symbol)
    if after is not None:
        rows = rows.filter(ts__gt=after)
    if until is not None:
        rows = rows.filter(ts__lte=until)
    return list(rows.values_list("symbol_id", "ts", "price", "size"))


def as_row(message: dict) -> tuple:
    return (message["symbol"], parse_ts(message["ts"]), message["price"], message["size"])


@pytest.fixture
def live(processes, market, redis_client):
    """Daphne, a worker and beat ticking the default market every 0.5 s."""
    base = processes.daphne(TICK_INTERVAL=INTERVAL)
    processes.celery_worker(TICK_INTERVAL=INTERVAL)
    processes.celery_beat(TICK_INTERVAL=INTERVAL)
    wait_for(lambda: Tick.objects.filter(symbol_id="AAPL").count() >= 3, timeout=60,
             what="the first ticks")  # fmt: skip
    return base


def test_a_stock_socket_gets_a_snapshot_then_every_stored_tick_in_order(live, processes):
    with open_socket(live, "/ws/stocks/aapl") as ws:
        snapshot = receive(ws)
        ticks = [receive(ws) for _ in range(8)]
    processes.stop("beat")

    assert snapshot["type"] == "snapshot"
    assert snapshot["symbol"] == "AAPL"
    history = [("AAPL", parse_ts(t["ts"]), t["price"], t["size"]) for t in snapshot["history"]]
    latest = parse_ts(snapshot["ts"])
    # The snapshot's history is the stored ticks up to its latest one, oldest first.
    assert history == stored_ticks("AAPL", until=latest)[-120:]
    assert (history[-1][1], history[-1][2]) == (latest, snapshot["price"])

    # Then the ticks that followed, one message each, as stored, none missing.
    assert [t["type"] for t in ticks] == ["tick"] * len(ticks)
    stamps = [parse_ts(t["ts"]) for t in ticks]
    assert stamps == sorted(set(stamps))
    assert stamps[0] > latest
    assert [as_row(t) for t in ticks] == stored_ticks("AAPL", after=latest, until=stamps[-1])
    assert all(set(t["indicators"]) == INDICATOR_FIELDS for t in ticks)


def test_a_market_socket_on_star_gets_every_tick_of_every_symbol_without_gaps(
    live, processes, market
):
    tickers = sorted(s.ticker for s in market)
    with open_socket(live, "/ws/market") as ws:
        first = receive(ws)
        assert [m["type"] for m in first] == ["overview"]
        received = [m for m in subscribe_all(ws) if m["type"] == "tick"]
        frames = []
        while len({m["ts"] for m in received}) < 12:
            frame = receive(ws)
            assert isinstance(frame, list), frame
            frames.append(frame)
            received += [m for m in frame if m["type"] == "tick"]
    processes.stop("beat")

    rows = [as_row(m) for m in received]
    assert len(rows) == len(set(rows))  # nothing twice
    stamps = sorted({ts for _, ts, _, _ in rows})
    window = stored_ticks(after=stamps[0] - timedelta(microseconds=1), until=stamps[-1])
    # Every tick stored over the window, of every symbol, arrived: no gap, nothing extra.
    assert sorted(rows) == sorted(window)
    assert Counter(ts for _, ts, _, _ in rows) == dict.fromkeys(stamps, len(tickers))
    # The overview kept coming alongside (about once a second).
    assert any(m["type"] == "overview" for frame in frames for m in frame)


def test_sockets_idle_for_15_seconds_still_receive_when_the_pipeline_runs_again(live, processes):
    with (
        open_socket(live, "/ws/market") as market_ws,
        open_socket(live, "/ws/stocks/MSFT") as stock_ws,
    ):
        try:
            receive(market_ws)  # the overview
            market_ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL"]}))
            assert receive(stock_ws)["type"] == "snapshot"
            assert receive(stock_ws)["type"] == "tick"  # live before the pause

            # Stop the pipeline and let the worker finish: nothing is published any more,
            # so Daphne's channel layer connection and both sockets go quiet.
            processes.stop("beat")
            wait_for(lambda: not drain(market_ws) and not drain(stock_ws), timeout=60,
                     what="the feed to go quiet")  # fmt: skip
            quiet_since = Tick.objects.order_by("-ts").values_list("ts", flat=True).first()
            time.sleep(15)

            processes.celery_beat("beat-again", TICK_INTERVAL=INTERVAL)
            tick = receive(stock_ws)
            received: list[dict] = []
            while not (
                any(m["type"] == "tick" for m in received)
                and any(m["type"] == "overview" for m in received)
            ):
                received += receive(market_ws)
        except ConnectionClosed as closed:
            pytest.fail(f"an idle socket was closed: {closed!r}")

    assert tick["type"] == "tick"
    assert tick["symbol"] == "MSFT"
    assert parse_ts(tick["ts"]) > quiet_since
    ticks = [m for m in received if m["type"] == "tick"]
    assert {m["symbol"] for m in ticks} == {"AAPL"}
    assert all(parse_ts(m["ts"]) > quiet_since for m in ticks)


# A client in a process of its own that reads everything: it writes one line per tick.
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


def read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    return text[: text.rfind("\n") + 1].splitlines()  # complete lines only


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


class Pusher:
    """Batches of every symbol through the real pipeline from this process."""

    def __init__(self, tickers: list[str]):
        self.tickers = tickers
        self.rng = random.Random(10)
        self.prices = dict.fromkeys(tickers, 100.0)
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.slot = 0
        self.published: list[tuple[str, str]] = []  # (symbol, ts) of every tick sent out

    def push(self, batches: int) -> int:
        """Ingest `batches` slots; the bytes of their tick messages."""
        size = 0
        for _ in range(batches):
            ts = self.start + timedelta(seconds=0.5 * self.slot)
            self.slot += 1
            rows = []
            for ticker in self.tickers:
                self.prices[ticker] *= 1 + self.rng.gauss(0, 0.002)
                rows.append((ticker, ts, self.prices[ticker], self.rng.randint(1, 900)))
            result = ingest(TickBatch.from_rows(rows))
            assert result.stored == len(self.tickers)
            size += len(orjson.dumps(result.messages))
            self.published += [(m["symbol"], m["ts"]) for m in result.messages]
        return size


def test_a_client_that_never_reads_cannot_grow_server_memory(db, redis_client, processes, tmp_path):
    symbols_seed()
    symbols_seed(tickers=[f"BP{i:03d}" for i in range(300)])
    pusher = Pusher(list(Symbol.objects.values_list("ticker", flat=True)))
    # The slow client never answers a ping: Daphne's ping timeout (about 50 s) would cut it
    # before a loaded machine has pushed the batches, and the test is about what the server
    # holds for it while it stays.
    base = processes.daphne(options=["--ping-interval", "600", "--ping-timeout", "600"])
    server = psutil.Process(processes.procs["web"].pid)

    # A client that reads everything, in its own process.
    lines = tmp_path / "reader.txt"
    processes.start("reader", ["-c", READER, ws_url(base, "/ws/market"), str(lines)])
    wait_for(lambda: "subscribed" in read_lines(lines), timeout=WAIT, what="the reader")

    def reader_has_everything() -> bool:
        last = pusher.published[-1][1]
        return sum(line.endswith(" " + last) for line in newest_lines(lines)) == len(pusher.tickers)

    def push_as_read(batches: int) -> int:
        """Batches back to back, two at a time: a reader that has read the two before the
        next two keeps up, as it must to lose nothing (it is never more than one batch
        behind what it is sent). The pipeline ingests these far faster than the live pace of
        one a half second, so a reader held up by the machine's load for a few of them
        would be behind. The bytes of their tick messages."""
        size = 0
        for _ in range(0, batches, 2):
            size += pusher.push(2)
            wait_for(reader_has_everything, timeout=60, interval=0.01, what="the reader")
        return size

    # A client that subscribes to everything and then stops reading: a small receive
    # buffer, and websockets stops reading the socket once one frame waits unread.
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    with open_socket(base, "/ws/market", sock=raw, max_queue=1, ping_interval=None) as slow:
        subscribe_all(slow)

        # Warm up until the slow client's buffers are full and the server holds back.
        push_as_read(60)
        baseline = peak = server.memory_info().rss
        sent = 0
        for _ in range(8):
            sent += push_as_read(36)
            peak = max(peak, server.memory_info().rss)
        growth = peak - baseline
        print(
            f"published {sent / 2**20:.1f} MiB per client; server RSS grew {growth / 2**20:.2f} MiB"
        )

        # Tens of MB went out to the slow client's subscription; the server kept almost none.
        assert sent > 40 * 2**20
        assert growth < 8 * 2**20

        # The reading client, on the same server at the same time, got every tick once.
        got = [tuple(line.split(" ")) for line in read_lines(lines) if line != "subscribed"]
        assert len(got) == len(pusher.published)
        assert set(got) == set(pusher.published)

        # The slow client, reading at last, gets the newest tick of every symbol; older
        # ones were dropped in its favour.
        final = pusher.published[-1][1]
        newest: dict[str, str] = {}
        seen = 0
        while sum(ts == final for ts in newest.values()) < len(pusher.tickers):
            for m in receive(slow):
                if m["type"] == "tick":
                    if m["symbol"] in newest:  # a symbol's ticks still come in order
                        assert parse_ts(m["ts"]) > parse_ts(newest[m["symbol"]])
                    newest[m["symbol"]] = m["ts"]
                    seen += 1
        assert seen < len(pusher.published)

    # Once it has gone, what it missed is counted.
    dropped = wait_for(lambda: int(redis_client.get(keys.WS_TICKS_DROPPED) or 0), timeout=WAIT,
                       what="the dropped count")  # fmt: skip
    assert dropped == len(pusher.published) - seen


def slow_socket(base: str, path: str):
    """A websockets client that stops reading once one frame waits unread, on a socket
    with a small receive buffer: everything the server sends beyond that waits there."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    return open_socket(base, path, sock=raw, max_queue=1, ping_interval=None)


def test_a_client_that_sends_but_never_reads_cannot_grow_server_memory(
    market, redis_client, processes
):
    base = processes.daphne()
    server = psutil.Process(processes.procs["web"].pid)
    with open_socket(base, "/ws/stocks/MSFT") as warm_up:  # what the first socket loads
        assert receive(warm_up)["type"] == "snapshot"
    baseline = server.memory_info().rss
    sent = 0
    with slow_socket(base, "/ws/stocks/AAPL") as ws:
        with contextlib.suppress(ConnectionClosed):  # the server may cut it mid-way
            for sent in range(1, 200_001):  # noqa: B007 (how many got out is reported)
                ws.send("hello")
        # The server has read it all once a fresh connection's answer comes back.
        with open_socket(base, "/ws/stocks/MSFT") as probe:
            assert receive(probe)["type"] == "snapshot"
        time.sleep(2)
        growth = server.memory_info().rss - baseline
    print(f"server RSS grew {growth / 2**20:.2f} MiB; {sent} messages sent before the close")
    assert sent < 200_000  # the flood limit closed it: a feed that takes no messages
    assert growth < 8 * 2**20


def test_a_market_client_within_the_rate_limit_that_never_reads_cannot_grow_server_memory(
    market, redis_client, processes
):
    base = processes.daphne()
    server = psutil.Process(processes.procs["web"].pid)
    # Just under 64 KiB: a subscription to thousands of symbols that do not exist, each
    # named back in the error that answers it.
    names = [f"Q{i:04d}" for i in range(7_000)]
    message = json.dumps({"action": "subscribe", "symbols": names})
    assert len(message) < 64 * 1024
    with slow_socket(base, "/ws/market") as ws:
        for _ in range(20):  # enough unread answers to fill every buffer on the way
            ws.send(message)
            time.sleep(0.1)  # ten a second, half the flood limit
        time.sleep(2)
        baseline = server.memory_info().rss
        for _ in range(100):
            ws.send(message)
            time.sleep(0.1)
        time.sleep(2)
        growth = server.memory_info().rss - baseline
    print(f"server RSS grew {growth / 2**20:.2f} MiB for 100 unread answers")
    assert growth < 8 * 2**20


def closed_with(ws: ClientConnection) -> int | None:
    """The close code the server sent, read after whatever came before it."""
    try:
        while True:
            ws.recv(timeout=WAIT)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def test_a_real_client_sees_the_close_codes_and_the_origin_rule(market, redis_client, processes):
    base = processes.daphne()
    port = base.rsplit(":", 1)[1]

    with open_socket(base, "/ws/stocks/NOPE") as ws:
        assert closed_with(ws) == 4404
    with open_socket(base, "/ws/nonexistent") as ws:  # no such feed: the same clean refusal
        assert closed_with(ws) == 4404
    assert "Traceback" not in processes.log("web")
    with open_socket(base, "/ws/market?token=0123456789abcdef0123456789abcdef01234567") as ws:
        assert closed_with(ws) == 4401

    # A browser page from another site is refused at the handshake.
    with pytest.raises(InvalidStatus) as refused:
        open_socket(base, "/ws/market", origin="https://evil.example")
    assert refused.value.response.status_code == 403
    # One served from this host is not, and neither is a program that sends no Origin.
    with open_socket(base, "/ws/market", origin=f"http://127.0.0.1:{port}") as ws:
        assert [m["type"] for m in receive(ws)] == ["overview"]
    with open_socket(base, "/ws/stocks/AAPL/") as ws:
        assert receive(ws)["type"] == "snapshot"


@pytest.mark.parametrize("size", [64 * 1024 + 1, 1024 * 1024])
def test_an_oversized_message_to_a_real_server_gets_an_error_and_the_socket_stays_open(
    market, redis_client, processes, size
):
    base = processes.daphne()
    with open_socket(base, "/ws/market") as ws:
        assert [m["type"] for m in receive(ws)] == ["overview"]
        head = '{"action": "subscribe", "symbols": ["AAPL"]'
        ws.send(head + " " * (size - len(head) - 1) + "}")
        answer = receive(ws)
        assert [m["type"] for m in answer] == ["error"], answer
        ws.send(json.dumps({"action": "subscribe", "symbols": ["MSFT"]}))
        answer = receive(ws)
        assert [m["type"] for m in answer] == ["subscribed"]
        assert answer[0]["symbols"] == ["MSFT"]


def test_a_flood_close_ends_the_sockets_tasks(market, redis_client, processes):
    base = processes.daphne()
    with open_socket(base, "/ws/market") as ws:
        assert [m["type"] for m in receive(ws)] == ["overview"]
        with contextlib.suppress(ConnectionClosed):
            for _ in range(30):  # over the limit of twenty a second
                ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL"]}))
        assert closed_with(ws) == 4429
    # Daphne gives a closed socket's application 10 s to end before it kills it.
    time.sleep(12)
    processes.stop("web")
    log = processes.log("web")
    assert "took too long to shut down" not in log, log
    assert "Task was destroyed but it is pending" not in log, log
