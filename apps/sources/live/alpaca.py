"""Alpaca's market data v2 stock stream and REST history (docs/sources.md#alpaca).

Stream: `wss://stream.data.alpaca.markets/v2/{iex|sip}`, msgpack frames (asked for with
`Content-Type: application/msgpack`; JSON without it), each an array of messages with `T`.
The server greets with `success`/`connected`; the client sends
`{"action":"auth","key":K,"secret":S}`, then one subscribe message naming its trades and
quotes. History: `/v2/stocks/trades` (a gap) and `/v2/stocks/bars?timeframe=1Min` (a
backfill), many symbols a request, paged by `page_token`, keys in `APCA-API-*` headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import orjson

from apps.sources.live.feeds import (
    AuthFailed,
    Bar,
    ConnectionLimit,
    Credentials,
    Feed,
    FeedError,
    Parsed,
    Quote,
    Trade,
    dispatch,
    positive_number,
    rfc3339_ns,
    whole_size,
    whole_volume,
)

ROUND_LOT = 100  # quote sizes come in round lots
PAGE = 10_000  # the most a history page holds
SYMBOLS_PER_REQUEST = 100  # history requests name at most this many symbols
AUTH_ERRORS = {401, 402, 404, 409}  # not authenticated, auth failed, auth timeout, plan
LIMIT_ERRORS = {406}  # connection limit exceeded


class AlpacaFeed(Feed):
    """msgpack both ways, as the vendor's own client: smaller frames, times to the ns."""

    def connect_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/msgpack"}

    def _encode(self, message: dict) -> bytes:
        return msgpack.packb(message)

    async def handshake(self, ws: Any, credentials: Credentials) -> None:
        _expect(await self.receive(ws, "connected"), "connected")
        await ws.send(self._encode(
            {"action": "auth", "key": credentials.key, "secret": credentials.secret}
        ))  # fmt: skip
        _expect(await self.receive(ws, "authenticated"), "authenticated")

    def subscribe_messages(self, symbols: list[str]) -> list[str | bytes]:
        step = self.SUBSCRIBE_CHUNK
        return [
            self._encode(
                {
                    "action": "subscribe",
                    "trades": symbols[i : i + step],
                    "quotes": symbols[i : i + step],
                    "bars": symbols[i : i + step],
                }
            )
            for i in range(0, len(symbols), step)
        ]

    def parse(self, frame: str | bytes, symbols: frozenset[str], into: Parsed) -> None:
        try:
            messages = _decode(frame)
        except ValueError:
            into.malformed["frame that is neither msgpack nor JSON"] += 1
            return
        dispatch(messages, "T", _HANDLERS, symbols, into)

    def history_trades(self, symbols: list[str], start_ns: int, end_ns: int) -> Iterator[Trade]:
        for row_symbol, row in self._history("trades", symbols, _rfc3339(start_ns),
                                             _rfc3339(end_ns)):  # fmt: skip
            yield Trade(row_symbol, _time_ns(row["t"]), float(row["p"]), int(row["s"]),
                        _trade_id(row.get("x"), row.get("i")))  # fmt: skip

    def history_bars(self, symbol: str, start: datetime, end: datetime) -> Iterator[Bar]:
        last = _ns(end) - 1  # the vendor's `end` is inclusive; integers: a float loses the 1
        for row_symbol, row in self._history("bars", [symbol], _rfc3339(_ns(start)),
                                             _rfc3339(last), timeframe="1Min"):  # fmt: skip
            yield Bar(row_symbol, _time_ns(row["t"]), float(row["o"]), float(row["h"]),
                      float(row["l"]), float(row["c"]), int(row["v"]),
                      int(row["n"]) if row.get("n") else None)  # fmt: skip

    def _history(self, kind: str, symbols: list[str], start: str, end: str,
                 **extra: str) -> Iterator[tuple[str, dict]]:  # fmt: skip
        credentials = self.credentials()
        headers = {"APCA-API-KEY-ID": credentials.key, "APCA-API-SECRET-KEY": credentials.secret}
        for i in range(0, len(symbols), SYMBOLS_PER_REQUEST):
            params: dict[str, Any] = {
                "symbols": ",".join(symbols[i : i + SYMBOLS_PER_REQUEST]), "start": start,
                "end": end, "limit": PAGE, "feed": self.config.feed or "iex", "sort": "asc",
                **extra,
            }  # fmt: skip
            while True:
                page = self._get(f"{self.config.rest_url}/v2/stocks/{kind}", params, headers)
                for symbol, rows in (page.get(kind) or {}).items():
                    for row in rows:
                        yield symbol, row
                token = page.get("next_page_token")
                if not token:
                    break
                params = {**params, "page_token": token}


def _decode(frame: str | bytes) -> Any:
    if isinstance(frame, bytes):
        try:
            return msgpack.unpackb(frame, timestamp=0)
        except (msgpack.UnpackException, ValueError) as error:
            raise ValueError(str(error)) from None
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as error:
        raise ValueError(str(error)) from None


def _expect(frame: str | bytes, message: str) -> None:
    try:
        first = _decode(frame)[0]
        kind = first["T"]
    except (ValueError, LookupError, TypeError):
        raise FeedError(f"expected {message}, got {frame[:200]!r}") from None
    if kind == "success" and first.get("msg") == message:
        return
    if kind == "error":
        _raise_error(first)
    raise FeedError(f"expected {message}, got {first}")


def _raise_error(message: dict, *_: object) -> None:
    code, text = message.get("code"), message.get("msg", "")
    if not isinstance(code, int):  # a list or a map is unhashable: no `in` on a set
        raise FeedError(f"{text} ({code!r})")
    if code in AUTH_ERRORS:
        raise AuthFailed(f"{text} ({code})")
    if code in LIMIT_ERRORS:
        raise ConnectionLimit(f"{text} ({code})")
    raise FeedError(f"{text} ({code})")


def _time_ns(value: Any) -> int:
    if isinstance(value, msgpack.Timestamp):
        ns = value.to_unix_nano()
    elif isinstance(value, str):
        ns = rfc3339_ns(value)
    else:
        raise ValueError(f"not a time: {value!r}")
    if not 0 < ns < 2**63:  # the conflator keeps ns in int64: after 2262 would overflow it
        raise ValueError(f"a time out of range: {value!r}")
    return ns


def _ns(at: datetime) -> int:
    """Unix ns of an aware datetime, exactly (`timestamp()` is a float: 256 ns apart now)."""
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction:09d}Z"


def _trade_id(exchange: Any, trade_id: Any) -> str:
    return f"{exchange}:{trade_id}" if trade_id not in (None, "") else ""


def _when(message: dict, into: Parsed, what: str) -> int | None:
    try:
        ns = _time_ns(message.get("t"))
    except ValueError:
        into.malformed[f"{what} with a bad t (time)"] += 1
        return None
    return ns


def _trade(message: dict, symbols: frozenset[str], into: Parsed) -> None:
    symbol, price, size = message.get("S"), message.get("p"), message.get("s")
    if not isinstance(symbol, str):  # before `in`: a list or a map would raise TypeError
        into.malformed["trade without S"] += 1
        return
    if symbol not in symbols:
        return
    if not positive_number(price):
        into.malformed["trade with a bad p (price)"] += 1
    elif not whole_size(size):
        into.malformed["trade with a bad s (size)"] += 1
    elif (ns := _when(message, into, "trade")) is not None:
        trade_id = _trade_id(message.get("x"), message.get("i"))
        into.trades.append(Trade(symbol, ns, float(price), int(size), trade_id))


def _quote(message: dict, symbols: frozenset[str], into: Parsed) -> None:
    symbol = message.get("S")
    if not isinstance(symbol, str):  # before `in`: a list or a map would raise TypeError
        into.malformed["quote without S"] += 1
        return
    if symbol not in symbols:
        return
    bid, ask, bid_size, ask_size = (message.get(k) for k in ("bp", "ap", "bs", "as"))
    if not (positive_number(bid) and positive_number(ask)):
        into.malformed["quote with a bad bp or ap (prices)"] += 1
    elif not (whole_size(bid_size) and whole_size(ask_size)
              and max(bid_size, ask_size) * ROUND_LOT < 2**31):  # fmt: skip
        into.malformed["quote with a bad bs or as (sizes)"] += 1
    elif (ns := _when(message, into, "quote")) is not None:
        into.quotes.append(Quote(symbol, ns, float(bid), float(ask),
                                 bid_size * ROUND_LOT, ask_size * ROUND_LOT))  # fmt: skip


def _bar(message: dict, symbols: frozenset[str], into: Parsed) -> None:
    symbol, volume, trades = message.get("S"), message.get("v"), message.get("n")
    if not isinstance(symbol, str):
        into.malformed["bar without S"] += 1
        return
    if symbol not in symbols:
        return
    prices = [message.get(k) for k in ("o", "h", "l", "c")]
    if not all(positive_number(p) for p in prices):
        into.malformed["bar with a bad o, h, l or c (prices)"] += 1
    elif not whole_volume(volume):
        into.malformed["bar with a bad v (volume)"] += 1
    elif (ns := _when(message, into, "bar")) is not None:
        count = int(trades) if whole_volume(trades) else None
        into.bars.append(Bar(symbol, ns, *map(float, prices), int(volume), count))


_HANDLERS = {"t": _trade, "q": _quote, "b": _bar, "error": _raise_error}
