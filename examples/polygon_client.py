"""A trading program written for Polygon.io (now Massive), pointed at MarketFlux.

It uses the vendor's official client (`pip install massive`) and changes only the host and
the key: the REST client's `base` and the WebSocket client's `feed`. It streams every trade
and every closed minute bar, keeps the closes of the last minute bars per symbol (seeded
from the REST aggregates, so the averages are ready at once), and prints a signal when the
fast simple moving average of the closes crosses the slow one.

    python examples/polygon_client.py                       # every symbol, SMA 5 / SMA 20
    python examples/polygon_client.py --symbols AAPL,MSFT --fast 3 --slow 8 --seconds 120

What MarketFlux serves to these clients: docs/polygon.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice

from massive import RESTClient, WebSocketClient
from massive.exceptions import AuthError, BadResponse
from massive.websocket.models import EquityAgg, EquityTrade, WebSocketMessage

DEFAULT_HOST = "127.0.0.1:8000"  # where `make run` serves MarketFlux
MINUTE_MS = 60_000


def sma(closes: Sequence[float], window: int) -> float | None:
    """The mean of the last `window` closes, or None while there are fewer."""
    if len(closes) < window:
        return None
    return sum(list(closes)[-window:]) / window


def crossover(closes: Sequence[float], *, fast: int, slow: int) -> str | None:
    """The newest close's signal: "up" when it lifts the fast SMA above the slow one (it was
    at or below it one close earlier), "down" when it takes it below, else None (also while
    there are fewer than `slow + 1` closes).

    SMAs closer than a billionth of the price count as equal: summing the same closes in
    windows of two lengths rounds differently, and that noise is no crossing."""
    if len(closes) < slow + 1:
        return None
    values = list(closes)
    tolerance = 1e-9 * max(abs(v) for v in values)

    def side(end: int) -> int:  # the fast SMA's side of the slow one, over values[:end]
        gap = sum(values[end - fast : end]) / fast - sum(values[end - slow : end]) / slow
        return 0 if abs(gap) <= tolerance else (1 if gap > 0 else -1)

    was, now = side(len(values) - 1), side(len(values))
    if was <= 0 < now:
        return "up"
    if was >= 0 > now:
        return "down"
    return None


def crossover_line(
    symbol: str, closes: Sequence[float], *, fast: int, slow: int, minute: str
) -> str | None:
    """The line to print when the minute closing at `closes[-1]` made the SMAs cross."""
    direction = crossover(closes, fast=fast, slow=slow)
    if direction is None:
        return None
    side = "BUY " if direction == "up" else "SELL"
    word = "above" if direction == "up" else "below"
    return (
        f"{side} {symbol:<5} {minute}  SMA{fast} {sma(closes, fast):.4f} crossed {word} "
        f"SMA{slow} {sma(closes, slow):.4f}"
    )


def clock(unix_ms: int, fmt: str = "%H:%M:%S.%f") -> str:
    """A UTC time of day, to the millisecond (MarketFlux's minutes are UTC minutes)."""
    text = datetime.fromtimestamp(unix_ms / 1000, tz=UTC).strftime(fmt)
    return text[:-3] if fmt.endswith("%f") else text


class Strategy:
    """Per symbol, the closes of the last `slow + 1` closed minutes: enough for both SMAs
    now and one minute ago, which is all a crossover needs."""

    def __init__(self, rest: RESTClient, *, fast: int, slow: int) -> None:
        self.rest, self.fast, self.slow = rest, fast, slow
        self.closes: dict[str, deque[float]] = {}
        self.last_minute: dict[str, int] = {}  # start (Unix ms) of the newest close kept

    def seed(self, symbols: list[str]) -> None:
        """Read the closes before streaming, so the first signal need not wait `slow`
        minutes."""
        for symbol in symbols:
            self.read_closes(symbol)
            print(f"seeded {symbol:<5} with {len(self.closes[symbol])} minute closes", flush=True)

    def read_closes(self, symbol: str) -> None:
        """The newest `slow + 1` closed minute bars, over REST. The minute still open is left
        out: its close is not final yet."""
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        wanted = self.slow + 2  # the minute still open, and `slow + 1` closed ones
        newest_first = self.rest.list_aggs(
            symbol, 1, "minute", now - timedelta(days=1), now, sort="desc", limit=wanted
        )
        # islice stops the client before it follows `next_url` to older pages.
        closed = [b for b in islice(newest_first, wanted) if b.timestamp + MINUTE_MS <= now_ms]
        bars = closed[: self.slow + 1][::-1]
        self.closes[symbol] = deque((b.close for b in bars), maxlen=self.slow + 1)
        if bars:
            self.last_minute[symbol] = bars[-1].timestamp

    def on_trade(self, trade: EquityTrade) -> None:
        print(f"T    {trade.symbol:<5} {clock(trade.timestamp)}  {trade.price:>10.4f} x "
              f"{trade.size:>6}", flush=True)  # fmt: skip

    def on_minute(self, agg: EquityAgg) -> None:
        symbol, start = agg.symbol, agg.start_timestamp
        last = self.last_minute.get(symbol)
        if last is not None and start <= last:
            return  # already read over REST
        if last is None or start != last + MINUTE_MS:
            # A symbol not read yet, or a minute missed (one that closed between the REST
            # read and the subscription, or during a reconnect; or one without trades): read
            # the closes again rather than average over a hole.
            self.read_closes(symbol)
        closes = self.closes[symbol]
        if self.last_minute.get(symbol) != start:
            closes.append(agg.close)
            self.last_minute[symbol] = start
        fast, slow = sma(closes, self.fast), sma(closes, self.slow)
        averages = "  ".join(
            f"SMA{n} {'-' if v is None else f'{v:.4f}'}"
            for n, v in ((self.fast, fast), (self.slow, slow))
        )
        minute = clock(start, "%H:%M")
        print(f"AM   {symbol:<5} {minute}  o {agg.open:.4f}  h {agg.high:.4f}  l {agg.low:.4f}  "
              f"c {agg.close:.4f}  v {agg.volume:.0f}  {averages}", flush=True)  # fmt: skip
        line = crossover_line(symbol, closes, fast=self.fast, slow=self.slow, minute=minute)
        if line:
            print(line, flush=True)

    async def handle(self, messages: list[WebSocketMessage]) -> None:
        for message in messages:
            if isinstance(message, EquityTrade):
                self.on_trade(message)
            elif isinstance(message, EquityAgg):
                self.on_minute(message)


async def stream(client: WebSocketClient, strategy: Strategy, seconds: float | None) -> None:
    """Run the stream until the server ends it, or for `seconds` and then close it."""
    running = asyncio.create_task(client.connect(strategy.handle))
    done, _ = await asyncio.wait({running}, timeout=seconds)
    if not done:
        await client.close()  # connect() then returns on its own, as on a clean close
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(running, timeout=5)  # cancelled if it does not
    if running.done() and not running.cancelled():
        running.result()  # raise what ended the stream, if anything did


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help="MarketFlux's host:port")
    parser.add_argument(
        "--key",
        default=os.environ.get("MARKETFLUX_API_KEY", "any"),
        help="a MarketFlux API token (any key reads while MARKETFLUX_PUBLIC_READ=1)",
    )
    parser.add_argument("--symbols", default="*", help="AAPL,MSFT,... or * for every symbol")
    parser.add_argument("--fast", type=int, default=5, help="fast SMA window, in minutes")
    parser.add_argument("--slow", type=int, default=20, help="slow SMA window, in minutes")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    args = parser.parse_args(argv)
    if not 1 <= args.fast < args.slow:
        parser.error("--fast must be at least 1 and less than --slow")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    # The only changes from a program written for the vendor: `base` and `feed`, the key.
    rest = RESTClient(api_key=args.key, base=f"http://{args.host}")
    try:
        if args.symbols == "*":
            tickers = rest.list_tickers(market="stocks", active=True, limit=1000)
            symbols = [t.ticker for t in tickers]
        else:
            symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        strategy = Strategy(rest, fast=args.fast, slow=args.slow)
        strategy.seed(symbols)
        names = ["*"] if args.symbols == "*" else symbols
        subscriptions = [f"{kind}.{name}" for kind in ("T", "AM") for name in names]
        ws = WebSocketClient(
            api_key=args.key, feed=args.host, market="stocks", secure=False,
            subscriptions=subscriptions,
        )  # fmt: skip
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(stream(ws, strategy, args.seconds))
    except (AuthError, BadResponse) as refused:  # a bad key, an unknown ticker
        print(f"MarketFlux refused: {refused}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
