"""The gateway's answers and events in the vendor's shapes (docs/polygon.md), built in one
place so that REST and the WebSocket `/stocks` agree field by field: aggregates, trades,
tickers and snapshots for REST; status objects (each with a `message`, which the vendor's
clients read unconditionally), `T` trades from our `tick` messages and `AM` minute
aggregates from stored 1-minute bars for the socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from apps.market import selectors
from apps.market.messages import QUOTE_FIELDS
from apps.market.models import Symbol
from apps.ops.timestamps import epoch_micros
from apps.polygon import constants as c
from apps.polygon import params as p
from apps.streaming.messages import KEY, TEXT, Field

MINUTE_US = 60_000_000
DAY_US = 86_400_000_000


def exchange_of(exchange: str) -> tuple[int, int, str]:
    """The vendor's exchange id, tape and MIC for a symbol's exchange name."""
    return c.EXCHANGES.get(exchange.upper(), c.OTHER_EXCHANGE)


def typical_price(high: float, low: float, close: float) -> float:
    """What `vw` carries: no volume-weighted price is stored (docs/polygon.md)."""
    return (high + low + close) / 3


# REST


def agg(candle: selectors.Candle) -> dict:
    return {
        "o": candle.open, "h": candle.high, "l": candle.low, "c": candle.close,
        "v": candle.volume, "vw": typical_price(candle.high, candle.low, candle.close),
        "n": candle.trades, "t": p.ms_of(candle.ts),
    }  # fmt: skip


def trade_fields(ts: datetime, venue: tuple[int, int]) -> dict:
    """A tick's time in ns, its sequence number (µs) and its venue: (exchange id, tape)."""
    ns = p.ns_of(ts)
    return {"ns": ns, "sequence": ns // 1000, "exchange": venue[0], "tape": venue[1]}


def last_trade(ticker: str, venue: tuple[int, int], ts: datetime, price: float,
               size: int) -> dict:  # fmt: skip
    """A tick as the vendor's last trade (`/v2/last/trade`, a snapshot's `lastTrade`)."""
    f = trade_fields(ts, venue)
    return {"T": ticker, "t": f["ns"], "y": f["ns"], "q": f["sequence"],
            "i": str(f["sequence"]), "p": price, "s": size, "x": f["exchange"],
            "z": f["tape"], "c": []}  # fmt: skip


def lots(shares: int) -> int:
    """Quote sizes go out in round lots of 100 shares, as the vendor's do."""
    return shares // 100


def last_quote(
    ticker: str, venue: tuple[int, int], ts: datetime, bid: float, ask: float, bid_size: int,
    ask_size: int,
) -> dict:  # fmt: skip
    """A tick's quote as the vendor's last NBBO (`/v2/last/nbbo`, a snapshot's `lastQuote`).
    Both sides are quoted on the symbol's own exchange."""
    f = trade_fields(ts, venue)
    return {"T": ticker, "t": f["ns"], "y": f["ns"], "q": f["sequence"], "p": bid,
            "s": lots(bid_size), "x": f["exchange"], "P": ask, "S": lots(ask_size),
            "X": f["exchange"], "z": f["tape"], "c": [], "i": []}  # fmt: skip


def ticker_fields(symbol: Symbol) -> dict:
    return {
        "ticker": symbol.ticker, "name": symbol.name, "market": "stocks", "locale": "us",
        "primary_exchange": exchange_of(symbol.exchange)[2] or symbol.exchange, "type": "CS",
        "active": symbol.active, "currency_name": "usd",
        "last_updated_utc": symbol.updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }  # fmt: skip


def ticker_snapshot(symbol: Symbol, hot: dict | None, bars: selectors.SnapshotBars) -> dict:
    """A symbol's snapshot in the vendor's shape; a part with no data is left out, never
    null (a null crashes the clients): `lastQuote` when the last tick carried no quote."""
    out: dict = {"ticker": symbol.ticker}
    if hot is not None:
        ts = datetime.fromisoformat(hot["ts"])
        if bars.prev_day is not None:
            change = hot["price"] - bars.prev_day.close
            out["todaysChange"] = change
            out["todaysChangePerc"] = change / bars.prev_day.close * 100.0
        out["updated"] = p.ns_of(ts)
        venue = exchange_of(symbol.exchange)[:2]
        out["lastTrade"] = last_trade(symbol.ticker, venue, ts, hot["price"], hot["size"])
        if hot.get("bid") is not None:
            out["lastQuote"] = last_quote(symbol.ticker, venue, ts, *(hot[f] for f in QUOTE_FIELDS))
    if bars.day is not None:
        out["day"] = agg(bars.day)
    if bars.minute is not None:
        day_volume = bars.day.volume if bars.day is not None else bars.minute.volume
        out["min"] = {**agg(bars.minute), "av": day_volume}
    if bars.prev_day is not None:
        out["prevDay"] = agg(bars.prev_day)
    return out


# WebSocket

# What clients may send to `/stocks` (docs/polygon.md#websocket), as `/ws/market`'s are
# declared (`apps.streaming.messages.MARKET_MESSAGES`): `params` is the key or the topics.
TOPICS = Field(TEXT, rule='topics such as "T.AAPL,AM.*"')
STOCKS_MESSAGES: dict[str, dict[str, Field]] = {
    "auth": {"params": Field(KEY)},
    "subscribe": {"params": TOPICS},
    "unsubscribe": {"params": TOPICS},
}
MAX_KEY_CHARS = 256  # longer is no key (a token's is 40 characters)


def status(state: str, message: str) -> dict:
    return {"ev": "status", "status": state, "message": message}


@lru_cache(maxsize=8192)  # a batch's ticks share a handful of times
def tick_micros(ts: str) -> int:
    """Unix µs of a tick message's `ts` (ISO 8601 with a Z)."""
    return epoch_micros(datetime.fromisoformat(ts))


def minute_of(ts: str) -> int:
    """Unix µs of the start of the minute that holds a tick message's `ts`."""
    micros = tick_micros(ts)
    return micros - micros % MINUTE_US


def trade(tick: Mapping, exchange: int, tape: int) -> dict:
    """A `T` event from a `tick` message: id and sequence are the tick's time in Unix µs,
    as the REST side's last trade and trades (`trade_fields`)."""
    micros = tick_micros(tick["ts"])
    return {
        "ev": "T", "sym": tick["symbol"], "i": str(micros), "x": exchange, "p": tick["price"],
        "s": tick["size"], "c": [], "t": micros // 1000, "q": micros, "z": tape,
    }  # fmt: skip


def quote(tick: Mapping, exchange: int, tape: int) -> dict:
    """A `Q` event from a `tick` message that carries a quote (sizes in round lots)."""
    micros = tick_micros(tick["ts"])
    return {
        "ev": "Q", "sym": tick["symbol"], "bx": exchange, "bp": tick["bid"],
        "bs": lots(tick["bid_size"]), "ax": exchange, "ap": tick["ask"],
        "as": lots(tick["ask_size"]), "c": 0, "i": [], "t": micros // 1000, "q": micros,
        "z": tape,
    }  # fmt: skip


SECOND_US = 1_000_000


def second_agg(symbol: str, second: SecondOfTrades) -> dict:
    """An `A` event from a second's trades. Unlike `AM`, `vw` is the trades' true
    volume-weighted price (the trades are at hand); `av` is the UTC day's volume through
    the second; `a` and `op` are left out (the day's VWAP and open are not kept per tick)."""
    start, v = second.start, second.volume
    return {
        "ev": "A", "sym": symbol, "v": v, "av": second.day_volume, "vw": second.value / v,
        "o": second.open, "c": second.close, "h": second.high, "l": second.low,
        "z": round(v / second.trades), "s": start // 1000, "e": (start + SECOND_US) // 1000,
    }  # fmt: skip


@dataclass
class SecondOfTrades:
    """One symbol's trades in one second, summed as they arrive."""

    start: int  # µs
    whole: bool  # seen from its first trade on
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades: int
    value: float  # sum of price * size
    day_volume: int  # the UTC day's volume through the newest trade

    @classmethod
    def of(cls, start: int, tick: Mapping, *, whole: bool) -> SecondOfTrades:
        price, size = tick["price"], tick["size"]
        return cls(start, whole, price, price, price, price, size, 1, price * size,
                   tick["volume"])  # fmt: skip

    def add(self, tick: Mapping) -> None:
        price, size = tick["price"], tick["size"]
        self.high, self.low = max(self.high, price), min(self.low, price)
        self.close = price
        self.volume += size
        self.trades += 1
        self.value += price * size
        self.day_volume = tick["volume"]


def minute_agg(
    symbol: str,
    bar: tuple[int, float, float, float, float, int, int],
    *,
    day_volume: int,
    day_value: float,
    day_open: float,
) -> dict:
    """An `AM` event from a stored 1-minute bar `(start µs, o, h, l, c, v, trades)` and its
    UTC day's totals up to and including it: volume, the sum of volume * typical price, open.

    `vw` is the bar's typical price (h + l + c) / 3, as the REST aggregates' `vw`: no
    volume-weighted price is stored. `a` weighs the day's typical prices by volume.
    """
    start, o, h, l, c, v, trades = bar  # noqa: E741  (the vendor's names)
    return {
        "ev": "AM", "sym": symbol, "v": v, "av": day_volume, "op": day_open,
        "vw": typical_price(h, l, c), "o": o, "c": c, "h": h, "l": l,
        "a": day_value / day_volume if day_volume else typical_price(h, l, c),
        "z": round(v / trades) if trades else 0,
        "s": start // 1000, "e": (start + MINUTE_US) // 1000,
    }  # fmt: skip
