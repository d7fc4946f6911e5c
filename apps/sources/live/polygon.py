"""Polygon/Massive's stocks stream and REST history (docs/sources.md#polygonmassive).

Stream: JSON frames, each an array of events with `ev`. After the `connected` status the
client sends `{"action":"auth","params":KEY}` and, once `auth_success` comes, subscribes to
`T.SYM` and `Q.SYM`. History: `/v3/trades/{T}` (a gap) and `/v2/aggs/.../1/minute/...` (a
backfill), paged by `next_url`, the key as `apiKey`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

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
    whole_size,
    whole_volume,
)

ROUND_LOT = 100  # quote sizes come in round lots
PAGE = 50_000  # the most a trades or aggregates page holds


class PolygonFeed(Feed):
    async def handshake(self, ws: Any, credentials: Credentials) -> None:
        _status(await self.receive(ws, "connected status"), expect="connected")
        await ws.send(orjson.dumps({"action": "auth", "params": credentials.key}).decode())
        _status(await self.receive(ws, "auth status"), expect="auth_success")

    def subscribe_messages(self, symbols: list[str]) -> list[str | bytes]:
        step = self.SUBSCRIBE_CHUNK
        return [
            orjson.dumps({
                "action": "subscribe",
                "params": ",".join(
                    f"{kind}.{s}" for s in symbols[i : i + step] for kind in ("T", "Q", "AM")
                ),
            }).decode()
            for i in range(0, len(symbols), step)
        ]  # fmt: skip

    def parse(self, frame: str | bytes, symbols: frozenset[str], into: Parsed) -> None:
        try:
            events = orjson.loads(frame)
        except orjson.JSONDecodeError:
            into.malformed["frame that is not JSON"] += 1
            return
        dispatch(events, "ev", _HANDLERS, symbols, into)

    def history_trades(self, symbols: list[str], start_ns: int, end_ns: int) -> Iterator[Trade]:
        key = self.credentials().key
        for symbol in symbols:
            params = {"timestamp.gte": start_ns, "timestamp.lte": end_ns, "order": "asc",
                      "sort": "timestamp", "limit": PAGE}  # fmt: skip
            for row in self._pages(f"{self.config.rest_url}/v3/trades/{symbol}", params, key):
                trade_id = _trade_id(row.get("exchange"), row.get("id"))
                yield Trade(symbol, int(row["sip_timestamp"]), float(row["price"]),
                            int(row["size"]), trade_id)  # fmt: skip

    def history_bars(self, symbol: str, start: datetime, end: datetime) -> Iterator[Bar]:
        key = self.credentials().key
        first, last = int(start.timestamp() * 1000), int(end.timestamp() * 1000) - 1
        url = f"{self.config.rest_url}/v2/aggs/ticker/{symbol}/range/1/minute/{first}/{last}"
        for row in self._pages(url, {"adjusted": "true", "sort": "asc", "limit": PAGE}, key):
            yield Bar(symbol, int(row["t"]) * 1_000_000, float(row["o"]), float(row["h"]),
                      float(row["l"]), float(row["c"]), int(row["v"]),
                      int(row["n"]) if row.get("n") else None)  # fmt: skip

    def _pages(self, url: str, params: dict[str, Any] | None, key: str) -> Iterator[dict]:
        """Every result over `next_url` (which carries the query, but not the key)."""
        while url:
            page = self._get(url, {**(params or {}), "apiKey": key})
            yield from page.get("results") or []
            url, params = page.get("next_url") or "", None


def _status(frame: str | bytes, *, expect: str) -> None:
    try:
        events = orjson.loads(frame)
        status, message = events[0]["status"], events[0].get("message", "")
    except (orjson.JSONDecodeError, LookupError, TypeError):
        raise FeedError(f"expected a {expect} status, got {str(frame)[:200]}") from None
    if status == expect:
        return
    if status == "auth_failed":
        raise AuthFailed(f"authentication failed: {message}")
    if status == "max_connections":
        raise ConnectionLimit(message or "maximum number of connections exceeded")
    raise FeedError(f"expected {expect}, got {status}: {message}")


def _stream_status(event: dict, *_: object) -> None:
    if event.get("status") == "max_connections":
        raise ConnectionLimit(event.get("message") or "maximum number of connections exceeded")


def _trade_id(exchange: Any, trade_id: Any) -> str:
    # Trade ids are unique per symbol and exchange, not per symbol alone.
    return f"{exchange}:{trade_id}" if trade_id not in (None, "") else ""


def _trade(event: dict, symbols: frozenset[str], into: Parsed) -> None:
    symbol, price, size, ms = event.get("sym"), event.get("p"), event.get("s"), event.get("t")
    if not isinstance(symbol, str):  # before `in`: a list or a map would raise TypeError
        into.malformed["T without sym"] += 1
        return
    if symbol not in symbols:
        return  # not ours (a wildcard, a symbol just unsubscribed)
    if not positive_number(price):
        into.malformed["T with a bad p (price)"] += 1
    elif not whole_size(size):
        into.malformed["T with a bad s (size)"] += 1
    elif type(ms) is not int or not 0 < ms < 2**63 // 1_000_000:  # ns kept in int64
        into.malformed["T with a bad t (time)"] += 1
    else:
        trade_id = _trade_id(event.get("x"), event.get("i"))
        into.trades.append(Trade(symbol, ms * 1_000_000, float(price), int(size), trade_id))


def _quote(event: dict, symbols: frozenset[str], into: Parsed) -> None:
    symbol, ms = event.get("sym"), event.get("t")
    if not isinstance(symbol, str):  # before `in`: a list or a map would raise TypeError
        into.malformed["Q without sym"] += 1
        return
    if symbol not in symbols:
        return
    bid, ask, bid_size, ask_size = (event.get(k) for k in ("bp", "ap", "bs", "as"))
    if not (positive_number(bid) and positive_number(ask)):
        into.malformed["Q with a bad bp or ap (prices)"] += 1
    elif not (whole_size(bid_size) and whole_size(ask_size)
              and max(bid_size, ask_size) * ROUND_LOT < 2**31):  # fmt: skip
        into.malformed["Q with a bad bs or as (sizes)"] += 1
    elif type(ms) is not int or not 0 < ms < 2**63 // 1_000_000:  # ns kept in int64
        into.malformed["Q with a bad t (time)"] += 1
    else:
        into.quotes.append(Quote(symbol, ms * 1_000_000, float(bid), float(ask),
                                 bid_size * ROUND_LOT, ask_size * ROUND_LOT))  # fmt: skip


def _minute_bar(event: dict, symbols: frozenset[str], into: Parsed) -> None:
    symbol, start, volume = event.get("sym"), event.get("s"), event.get("v")
    if not isinstance(symbol, str):
        into.malformed["AM without sym"] += 1
        return
    if symbol not in symbols:
        return
    prices = [event.get(k) for k in ("o", "h", "l", "c")]
    if not all(positive_number(p) for p in prices):
        into.malformed["AM with a bad o, h, l or c (prices)"] += 1
    elif not whole_volume(volume):
        into.malformed["AM with a bad v (volume)"] += 1
    elif type(start) is not int or not 0 < start < 2**63 // 1_000_000:
        into.malformed["AM with a bad s (start)"] += 1
    else:
        into.bars.append(Bar(symbol, start * 1_000_000, *map(float, prices), int(volume), None))


_HANDLERS = {"T": _trade, "Q": _quote, "AM": _minute_bar, "status": _stream_status}
