"""The gateway's WebSocket `/stocks` (docs/polygon.md#websocket) through Channels'
WebsocketCommunicator: the real ASGI application, Redis channel layer and PostgreSQL, with
ticks entering through `pipeline.ingest` as the Celery worker sends them. Expected values
come from what the test ingested and from the /api/v1 door, never from the gateway's code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.ingest.pipeline import TickBatch, ingest
from marketflux_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(milliseconds=1)


@pytest.fixture
async def stocks(market, fresh_state):
    sockets: list[WebsocketCommunicator] = []

    async def open_socket() -> WebsocketCommunicator:
        socket = WebsocketCommunicator(application, "/stocks")
        connected, _ = await socket.connect(timeout=WAIT)
        assert connected
        sockets.append(socket)
        return socket

    yield open_socket
    for socket in sockets:
        await socket.disconnect()
    await sync_to_async(connections.close_all)()


async def frame(socket: WebsocketCommunicator) -> list[dict]:
    """The next frame: always a JSON array of objects with `ev`; statuses have `message`."""
    data = json.loads(await socket.receive_from(timeout=WAIT))
    assert isinstance(data, list), data
    for event in data:
        assert "ev" in event, event
        if event["ev"] == "status":
            assert isinstance(event["message"], str), event
    return data


async def read_until(socket, done: Callable[[list[dict]], bool]) -> list[dict]:
    received: list[dict] = []
    while not done(received):
        received += await frame(socket)
    return received


def statuses(received: list[dict]) -> list[tuple[str, str]]:
    return [(e["status"], e["message"]) for e in received if e["ev"] == "status"]


async def authed(open_socket, key: str = "any-key") -> WebsocketCommunicator:
    socket = await open_socket()
    assert [e["status"] for e in await frame(socket)] == ["connected"]
    await socket.send_json_to({"action": "auth", "params": key})
    assert [e["status"] for e in await frame(socket)] == ["auth_success"]
    return socket


async def change(socket, action: str, params: str, replies: int) -> list[tuple[str, str]]:
    await socket.send_json_to({"action": action, "params": params})
    received = await read_until(socket, lambda r: len(statuses(r)) >= replies)
    return statuses(received)


async def ingest_rows(rows: list[tuple[str, datetime, float, int]]) -> None:
    await sync_to_async(ingest)(TickBatch.from_rows(rows))


async def test_handshake_and_subscriptions_as_the_vendor_answers(stocks):
    socket = await stocks()
    (connected,) = await frame(socket)
    assert connected["status"] == "connected"
    await socket.send_to(text_data="not json")  # before auth: answered, still open
    assert statuses(await frame(socket))[0][0] == "error"
    await socket.send_json_to({"action": "subscribe", "params": "T.AAPL"})  # not yet
    assert "not authorized" in statuses(await frame(socket))[0][1]
    await socket.send_json_to({"action": "auth", "params": "whatever"})  # public read on
    assert statuses(await frame(socket)) == [("auth_success", "authenticated")]

    replies = await change(socket, "subscribe", "T.aapl,AM.*,Q.AAPL,A.*,X.AAPL,T.NOPE,Q.", 7)
    assert replies[:4] == [("success", "subscribed to: T.AAPL"),
                           ("success", "subscribed to: AM.*"),
                           ("success", "subscribed to: Q.AAPL"),
                           ("success", "subscribed to: A.*")]  # fmt: skip
    assert [s for s, _ in replies[4:]] == ["error"] * 3
    assert "unknown topic" in replies[4][1]
    assert "unknown symbol" in replies[5][1]
    assert "unknown topic" in replies[6][1]

    await socket.send_to(text_data="{broken")
    assert statuses(await frame(socket)) == [("error", "malformed JSON")]
    await socket.send_json_to({"action": "dance", "params": "T.AAPL"})
    assert "unknown action" in statuses(await frame(socket))[0][1]
    await socket.send_json_to([1, 2])
    assert "unknown action" in statuses(await frame(socket))[0][1]
    assert await change(socket, "unsubscribe", "T.AAPL", 1) == [
        ("success", "unsubscribed to: T.AAPL")
    ]


async def test_with_public_read_off_a_bad_key_fails_and_a_token_succeeds(stocks, settings):
    settings.MARKETFLUX_PUBLIC_READ = False
    stranger = await stocks()
    await frame(stranger)
    await stranger.send_json_to({"action": "auth", "params": "not-a-key"})
    assert statuses(await frame(stranger)) == [("auth_failed", "authentication failed")]
    closed = await stranger.receive_output(timeout=WAIT)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4401)

    user = await sync_to_async(get_user_model().objects.create_user)("quant")
    token = await sync_to_async(Token.objects.create)(user=user)
    await authed(stocks, token.key)


async def test_trades_are_the_ingested_ticks_of_the_subscribed_symbols(stocks):
    socket = await authed(stocks)
    assert await change(socket, "subscribe", "T.AAPL", 1) == [("success", "subscribed to: T.AAPL")]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    rows = [(symbol, start + timedelta(milliseconds=500 * i), 100 + i / 8 + j, 10 + i + j)
            for i in range(12) for j, symbol in enumerate(["AAPL", "MSFT"])]  # fmt: skip
    await ingest_rows(rows[:12])
    await ingest_rows(rows[12:])
    expected = [(s, p, z, ms(t)) for s, t, p, z in rows if s == "AAPL"]
    got = await read_until(socket, lambda r: len(r) >= len(expected))
    assert [(e["sym"], e["p"], e["s"], e["t"]) for e in got] == expected
    history = (await sync_to_async(APIClient().get)("/api/v1/stocks/AAPL/history?limit=50")).json()
    assert [(h["price"], h["size"]) for h in history["results"]] == [
        (p, z) for _, p, z, _ in expected
    ]
    for event in got:
        assert event["ev"] == "T"
        assert (event["x"], event["z"], event["c"]) == (12, 3, [])  # AAPL lists on NASDAQ
        assert event["q"] == event["t"] * 1000
        assert event["i"] == str(event["q"])

    # T.* after T.AAPL is gone: every symbol's trades.
    await change(socket, "unsubscribe", "T.AAPL", 1)
    await change(socket, "subscribe", "T.*", 1)
    later = [(symbol, start + timedelta(seconds=30), 120.0, 5) for symbol in ["AAPL", "MSFT"]]
    await ingest_rows(later)
    got = await read_until(socket, lambda r: len(r) >= 2)
    assert sorted((e["sym"], e["p"]) for e in got) == [("AAPL", 120.0), ("MSFT", 120.0)]


async def test_a_minute_aggregate_is_its_stored_bar_when_the_minute_closes(stocks):
    first = await authed(stocks)
    second = await authed(stocks)  # both get it; the process reads the bar once
    await change(first, "subscribe", "AM.AAPL", 1)
    await change(second, "subscribe", "AM.*", 1)
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    if minute.hour == 23 and minute.minute > 55:  # keep the three minutes in one UTC day
        minute -= timedelta(minutes=10)
    rows = []
    for m in range(3):
        for k, second_of in enumerate((5, 20, 41)):
            ts = minute + timedelta(minutes=m, seconds=second_of)
            rows += [("AAPL", ts, 200 + m + k / 4, 100 * (m + 1) + k),
                     ("MSFT", ts, 400 - m - k / 4, 50 + k)]  # fmt: skip
    for i in range(0, len(rows), 2):  # one slot per batch, as the simulator ticks
        await ingest_rows(rows[i : i + 2])
    # The third minute is still open: minutes one and two are closed.
    aapl = await read_until(first, lambda r: len(r) >= 2)
    everything = await read_until(second, lambda r: len(r) >= 4)

    answer = await sync_to_async(APIClient().get)("/api/v1/stocks/AAPL/bars?interval=1m")
    bars = answer.json()["results"]
    assert len(bars) == 3
    day_volume = 0
    day_value = 0.0
    expected = []
    for bar in bars[:2]:
        start = ms(datetime.fromisoformat(bar["ts"]))
        typical = (bar["high"] + bar["low"] + bar["close"]) / 3
        day_volume += bar["volume"]
        day_value += bar["volume"] * typical
        expected.append({
            "ev": "AM", "sym": "AAPL", "o": bar["open"], "h": bar["high"], "l": bar["low"],
            "c": bar["close"], "v": bar["volume"], "vw": pytest.approx(typical),
            "av": day_volume, "a": pytest.approx(day_value / day_volume),
            "op": bars[0]["open"], "z": round(bar["volume"] / bar["trades"]),
            "s": start, "e": start + 60_000,
        })  # fmt: skip
    assert aapl == expected
    assert [e for e in everything if e["sym"] == "AAPL"] == expected
    assert sorted({(e["sym"], e["s"]) for e in everything}) == [
        ("AAPL", ms(minute)), ("AAPL", ms(minute) + 60_000),
        ("MSFT", ms(minute)), ("MSFT", ms(minute) + 60_000),
    ]  # fmt: skip


async def test_quotes_are_the_ingested_quotes_in_round_lots(stocks):
    socket = await authed(stocks)
    await change(socket, "subscribe", "Q.*", 1)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    await ingest_rows([
        ("AAPL", start, 190.12, 37, 190.10, 190.13, 300, 500),
        ("MSFT", start, 410.0, 5),  # no quote: no Q event
        ("MSFT", start + timedelta(seconds=1), 410.5, 5, 410.45, 410.52, 1200, 100),
    ])  # fmt: skip
    got = await read_until(socket, lambda r: len(r) >= 2)
    assert got == [
        {"ev": "Q", "sym": "AAPL", "bx": 12, "bp": 190.10, "bs": 3, "ax": 12, "ap": 190.13,
         "as": 5, "c": 0, "i": [], "t": ms(start), "q": ms(start) * 1000, "z": 3},
        {"ev": "Q", "sym": "MSFT", "bx": 12, "bp": 410.45, "bs": 12, "ax": 12, "ap": 410.52,
         "as": 1, "c": 0, "i": [], "t": ms(start) + 1000, "q": (ms(start) + 1000) * 1000,
         "z": 3},
    ]  # fmt: skip
    history = (await sync_to_async(APIClient().get)("/api/v1/stocks/AAPL/history")).json()
    (tick,) = history["results"]
    assert (tick["bid"], tick["ask"], tick["bid_size"], tick["ask_size"]) == (
        190.10, 190.13, 300, 500
    )  # fmt: skip


async def test_second_aggregates_sum_the_trades_of_each_whole_second(stocks):
    socket = await authed(stocks)
    await change(socket, "subscribe", "A.AAPL", 1)
    second = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    if second.hour == 0 and second.minute < 1:
        second -= timedelta(minutes=5)
    at = [second + timedelta(seconds=s) for s in (0.5, 1.0, 1.25, 1.75, 2.0, 3.5)]
    # The socket joined in the second of the first trade: that second is not sent.
    rows = [("AAPL", at[0], 100.0, 10), ("AAPL", at[1], 101.0, 100),
            ("MSFT", at[1], 300.0, 1), ("AAPL", at[2], 103.0, 300),
            ("AAPL", at[3], 100.5, 200), ("AAPL", at[4], 102.0, 50),
            ("AAPL", at[5], 99.0, 7)]  # fmt: skip
    for row in rows:
        await ingest_rows([row])
    got = await read_until(socket, lambda r: len(r) >= 2)
    one, two = ms(second) + 1000, ms(second) + 2000
    assert got == [  # worked by hand from the rows above
        {"ev": "A", "sym": "AAPL", "o": 101.0, "h": 103.0, "l": 100.5, "c": 100.5, "v": 600,
         "av": 610, "vw": pytest.approx((101 * 100 + 103 * 300 + 100.5 * 200) / 600),
         "z": 200, "s": one, "e": one + 1000},
        {"ev": "A", "sym": "AAPL", "o": 102.0, "h": 102.0, "l": 102.0, "c": 102.0, "v": 50,
         "av": 660, "vw": pytest.approx(102.0), "z": 50, "s": two, "e": two + 1000},
    ]  # fmt: skip
    rest = await sync_to_async(APIClient().get)(
        f"/v2/aggs/ticker/AAPL/range/1/second/{one}/{two}"
    )  # the same seconds over REST
    assert [(r["t"], r["o"], r["h"], r["l"], r["c"], r["v"]) for r in rest.json()["results"]] == [
        (e["s"], e["o"], e["h"], e["l"], e["c"], e["v"]) for e in got
    ]
