"""The connector: one live feed kept running (docs/sources.md#live-feeds).

It connects, authenticates and subscribes through the vendor's `Feed`, reads frames into
trades and quotes, and lets the `LiveConflator` turn them into ticks slot by slot; the ticks
go through `apps.ingest.pipeline.ingest` like the simulator's, and late trades through
`apps.ingest.late.fold`. Every database call runs on one thread of its own (`Store`), in
order, and is tried again until the database takes it: a batch is never dropped because the
database or Redis was away for a while.

A lost connection comes back with exponential backoff and jitter; a refused key or a
connection limit waits longer. After every reconnect (and on start, after the newest tick
stored) the trades the feed sent while no connection was open are read from the vendor's
REST history and go through the conflator before any slot of the new connection is let out,
so the ticks stay in time order, and trade ids that both sides sent count once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from django.db import DatabaseError, close_old_connections, connection
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidURI, WebSocketException

from apps.ingest import late
from apps.ingest.pipeline import BatchError, IngestResult, TickBatch, ingest
from apps.ingest.services import publish_overview_if_due
from apps.market.models import Tick
from apps.ops import status
from apps.sources import metrics
from apps.sources.live.conflator import LiveConflator
from apps.sources.live.feeds import (
    AuthFailed,
    Bar,
    ConnectionLimit,
    Credentials,
    Feed,
    FeedError,
    Parsed,
)
from apps.sources.live.minutes import MINUTE_NS, MinuteCheck

log = logging.getLogger("marketflux.sources")
T = TypeVar("T")

MAX_FRAME = 16 * 2**20  # bytes: the most one frame may hold
COLD_START_GAP = 3600.0  # s: on start, fill at most this far back (older: `backfill`)
REPORT_EVERY = 1.0  # s
STOP_WAIT = 10.0  # s a stop waits for gap fills under way (supervisors wait 20 s)
MINUTE_CHECK_DELAY = 2.0  # s: a minute's bars arrive together; refill them in one go


@dataclass
class Backoff:
    """Pauses between attempts: exponential with "equal jitter" (half fixed, half random),
    so a fleet of connectors cut off at once does not come back in step; longer for a key
    refused or a connection limit, which a quick retry cannot fix."""

    base: float = 1.0
    cap: float = 60.0
    refused: float = 60.0  # AuthFailed, ConnectionLimit
    # Jitter, not secrets; one generator for all (a seeded one makes a test repeatable).
    rng: random.Random = random.Random()  # noqa: RUF009, S311

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        if isinstance(error, AuthFailed | ConnectionLimit):
            ceiling = max(self.refused, min(self.cap, self.base * 2**attempt))
        else:
            ceiling = min(self.cap, self.base * 2**attempt)
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)


class Store:
    """The connectors' database thread: one, so batches are stored in the order given."""

    RETRY_CAP = 30.0  # s between attempts, at most

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sources-db")

    async def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the database thread until it succeeds; a BatchError (a batch
        no attempt can store) is raised."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                return await loop.run_in_executor(self._executor, _fresh_connection, fn, *args)
            except (DatabaseError, redis.RedisError) as error:
                pause = min(self.RETRY_CAP, 0.5 * 2**attempt)
                attempt += 1
                log.warning("%s failed (%s); trying again in %.1f s", what, error, pause)
                await asyncio.sleep(pause)

    def close(self) -> None:
        """Close the thread's database connection, then the thread."""
        # `connection.close` would be looked up here, the caller's connection, not the thread's.
        self._executor.submit(_close_connection).result()
        self._executor.shutdown(wait=True)


def _close_connection() -> None:
    connection.close()  # run on the database thread: its own connection


def _fresh_connection(fn: Callable[..., T], *args: Any) -> T:
    close_old_connections()  # a connection the database dropped is replaced, not reused
    try:
        return fn(*args)
    except DatabaseError:
        connection.close()
        raise


class SourceState:
    """What a connector reports (`/health`, the admin's Sources page)."""

    def __init__(self, name: str, kind: str, symbols: int) -> None:
        self.name, self.kind, self.symbols = name, kind, symbols
        self.connected = False
        self.connected_since: float | None = None
        self.last_message_at: float | None = None
        self.messages = self.trades = self.quotes = self.ticks = self.late = 0
        self.duplicates = self.errors = self.reconnects = self.short_minutes = 0
        self.malformed: Counter = Counter()
        self.last_error: dict | None = None
        self.last_gap: dict | None = None
        self.held = 0
        self._recent: deque[tuple[float, int]] = deque()  # (second, messages in it)

    def count_messages(self, count: int, now: float) -> None:
        self.messages += count
        self.last_message_at = now
        second = int(now)
        if self._recent and self._recent[-1][0] == second:
            self._recent[-1] = (second, self._recent[-1][1] + count)
        else:
            self._recent.append((second, count))

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = {"at": _iso(time.time()), "message": message}

    def report(self, now: float) -> dict:
        while self._recent and self._recent[0][0] < int(now) - 10:
            self._recent.popleft()
        window = [count for second, count in self._recent if second < int(now)]
        return {
            "kind": self.kind, "symbols": self.symbols, "connected": self.connected,
            "connected_since": _iso(self.connected_since),
            "last_message_at": _iso(self.last_message_at),
            "seconds_since_last_message": None if self.last_message_at is None
            else round(now - self.last_message_at, 1),
            "messages_per_s": round(sum(window) / 10, 1), "messages": self.messages,
            "trades": self.trades, "quotes": self.quotes, "ticks": self.ticks,
            "late": self.late, "duplicates": self.duplicates, "held": self.held,
            "malformed": dict(self.malformed), "errors": self.errors,
            "last_error": self.last_error, "reconnects": self.reconnects,
            "short_minutes": self.short_minutes, "last_gap": self.last_gap,
        }  # fmt: skip


def _ingest_live(batch: TickBatch) -> IngestResult:
    """A live batch as the tick task stores one: then the overview, if one is due."""
    result = ingest(batch)
    publish_overview_if_due(result.states)
    return result


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


class Connector:
    """Keeps one feed connected and its trades flowing into the pipeline until cancelled."""

    OPEN_TIMEOUT = 10.0  # s: TCP connect and WebSocket upgrade (a test shortens it)

    def __init__(
        self, feed: Feed, symbols: list[str], *, store: Store, interval: float,
        late_after: float = 1.0, backoff: Backoff | None = None,
    ) -> None:  # fmt: skip
        self.feed = feed
        self.name = feed.config.name
        self.symbols = sorted(symbols)
        self.subscribed = frozenset(self.symbols)
        self.store = store
        self.interval_ns = round(interval * 1e9)
        self.late_after_ns = round(late_after * 1e9)
        self.backoff = backoff or Backoff()
        self.conflator = LiveConflator(interval_ns=self.interval_ns)
        # Minutes are checked while their trade ids are known, with a minute to spare.
        retained = self.conflator.retain_slots * self.interval_ns
        self.minutes = MinuteCheck(keep_ns=max(0, retained - MINUTE_NS))
        self._short: dict[int, set[str]] = {}  # minute start (ns) -> symbols that lost trades
        self.state = SourceState(self.name, feed.config.kind, len(self.symbols))
        self.last_trade_ns: int | None = None  # the newest trade the feed sent
        self.filling = 0  # gap fills under way: no slot is let out meanwhile
        self._streamed = False  # data came over the current connection
        self._logged: set[str] = set()  # malformed kinds already logged
        self._tasks: set[asyncio.Task] = set()
        self._letting_out: asyncio.Future | None = None  # the slot closer's store under way

    async def run(self) -> None:
        resume_ns = await self.store.call("reading the newest tick", self._cold_start)
        closer = asyncio.create_task(self._close_slots(), name=f"{self.name}-slots")
        reporter = asyncio.create_task(self._report(), name=f"{self.name}-report")
        attempt = 0
        try:
            while True:
                error: BaseException | None = None
                try:
                    credentials = self.feed.credentials()
                    await self._session(credentials, resume_ns)
                except asyncio.CancelledError:
                    raise
                except (OSError, TimeoutError, WebSocketException, FeedError) as caught:
                    error = caught
                    self._failed(caught)
                finally:
                    if self.state.connected:
                        self.state.connected = False
                        self.state.connected_since = None
                        self.conflator.forget_quotes()
                resume_ns = self.last_trade_ns if self.last_trade_ns is not None else resume_ns
                if isinstance(error, InvalidURI):
                    raise SystemExit(f"{self.name}: {error}")
                if self._streamed:  # data flowed, however the connection ended (most often
                    attempt = 0  # dropped, an error): the next pause starts from the base
                    self._streamed = False
                pause = self.backoff.delay(attempt, error)
                attempt += 1
                self.state.reconnects += 1
                log.info("%s: reconnecting in %.1f s", self.name, pause)
                await asyncio.sleep(pause)
        finally:
            metrics.report(self.name, self.state, time.time(), running=False)
            closer.cancel()
            reporter.cancel()
            if self._tasks:  # a gap cut short now would stay a gap: give the fills a while
                _, late = await asyncio.wait(self._tasks, timeout=STOP_WAIT)
                for task in late:
                    task.cancel()
            await self.flush()

    async def _session(self, credentials: Credentials, resume_ns: int | None) -> None:
        """One connection, until it ends (`_streamed` says whether data came over it)."""
        async with connect(
            self.feed.config.url, additional_headers=self.feed.connect_headers(),
            open_timeout=self.OPEN_TIMEOUT, ping_interval=20, ping_timeout=20,
            max_size=MAX_FRAME, compression=None,
        ) as ws:  # fmt: skip
            await self.feed.handshake(ws, credentials)
            for message in self.feed.subscribe_messages(self.symbols):
                await ws.send(message)
            self.state.connected, self.state.connected_since = True, time.time()
            self.minutes.start(resume_ns, time.time_ns())
            log.info("%s: connected to %s, %d symbols", self.name, self.feed.config.url,
                     len(self.symbols))  # fmt: skip
            if resume_ns is not None:
                self.filling += 1  # now, not when the task starts: no slot slips out first
                self._spawn(self._fill_gap(resume_ns, time.time_ns(), held=True))
            async for frame in ws:
                if self._on_frame(frame):
                    self._streamed = True

    def _on_frame(self, frame: str | bytes) -> bool:
        parsed = Parsed()
        try:
            self.feed.parse(frame, self.subscribed, parsed)
        finally:
            self.state.count_messages(parsed.messages, time.time())
            self._count_malformed(parsed.malformed)
        self._take(parsed)
        return bool(parsed.trades or parsed.quotes or parsed.bars)

    def _take(self, parsed: Parsed) -> None:
        add_trade, add_quote = self.conflator.add_trade, self.conflator.add_quote
        count = self.minutes.count
        newest = self.last_trade_ns or 0
        for t in parsed.trades:
            if add_trade(t.symbol, t.ns, t.price, t.size, t.id):
                count(t.symbol, t.ns, t.size)
            newest = max(newest, t.ns)
        for q in parsed.quotes:
            add_quote(q.symbol, q.ns, (q.bid, q.ask, q.bid_size, q.ask_size))
        for bar in parsed.bars:
            self._check_minute(bar)
        if parsed.trades:
            self.last_trade_ns = newest
        self.state.trades += len(parsed.trades)
        self.state.quotes += len(parsed.quotes)
        self.state.duplicates = self.conflator.duplicates

    def _count_malformed(self, malformed: Counter) -> None:
        for kind, count in malformed.items():
            self.state.malformed[kind] += count
            if kind not in self._logged:  # once per kind: a broken feed must not flood the log
                self._logged.add(kind)
                log.warning("%s: malformed message: %s (counted from now on, logged once)",
                            self.name, kind)  # fmt: skip

    def _failed(self, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        self.state.error(text)
        log.warning("%s: %s", self.name, text)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- gaps ---

    def _check_minute(self, bar: Bar) -> None:
        """A vendor's minute bar with more volume than the trades received: refill it."""
        if not self.minutes.short(bar.symbol, bar.ns, bar.volume):
            return
        self.state.short_minutes += 1
        short = self._short.setdefault(bar.ns, set())
        if not short:
            self._spawn(self._refill_minute(bar.ns))
        short.add(bar.symbol)

    async def _refill_minute(self, start_ns: int) -> None:
        await asyncio.sleep(MINUTE_CHECK_DELAY)
        symbols = sorted(self._short.pop(start_ns))
        log.info("%s: %d symbols' minute at %s lost trades; reading it again", self.name,
                 len(symbols), _iso(start_ns / 1e9))  # fmt: skip
        # Its slots are out already: what comes back is late, so nothing needs holding.
        await self._fill_gap(start_ns, start_ns + MINUTE_NS - 1, symbols)

    def _cold_start(self) -> int | None:
        """Where the gap since the last run starts: the slot after the newest tick stored
        for these symbols, if it is recent (older history is `backfill`'s)."""
        newest = (
            Tick.objects.filter(symbol_id__in=self.symbols).order_by("-ts")
            .values_list("ts", flat=True).first()
        )  # fmt: skip
        if newest is None or time.time() - newest.timestamp() > COLD_START_GAP:
            return None
        micros = int(newest.timestamp() * 1e6)
        # The newest slot's trades were counted without their ids: start after it.
        return (micros * 1000 // self.interval_ns + 1) * self.interval_ns

    async def _fill_gap(self, start_ns: int, end_ns: int, symbols: list[str] | None = None,
                        *, held: bool = False) -> None:  # fmt: skip
        """Read the vendor's trades of [start, end] and conflate them with the live ones.
        `held`: the caller raised `filling`, so that no slot is let out until the gap's
        trades are in (they are not late); it is lowered here when they are."""
        symbols = symbols or self.symbols
        began = time.time()
        gap = {"from": _iso(start_ns / 1e9), "to": _iso(end_ns / 1e9), "trades": 0}
        try:
            for attempt in range(4):
                try:
                    trades = await asyncio.to_thread(
                        lambda: list(self.feed.history_trades(symbols, start_ns, end_ns))
                    )
                    break
                except (OSError, FeedError, ValueError, KeyError, TypeError) as error:
                    self._failed(error)
                    if attempt == 3:
                        gap["error"] = f"not filled: {error}"
                        return
                    await asyncio.sleep(self.backoff.delay(attempt, error))
            added = 0
            for t in trades:
                if self.conflator.add_trade(t.symbol, t.ns, t.price, t.size, t.id):
                    self.minutes.count(t.symbol, t.ns, t.size)
                    added += 1
            gap["trades"] = added
            gap["seconds"] = round(time.time() - began, 2)
            metrics.gap_filled(self.name, added)
            self.state.duplicates = self.conflator.duplicates
            log.info("%s: gap %s to %s filled from the vendor's history: %d trades",
                     self.name, gap["from"], gap["to"], gap["trades"])  # fmt: skip
        finally:
            gap["filled_at"] = _iso(time.time())
            self.state.last_gap = gap
            self.filling -= int(held)

    # --- slots ---

    async def _close_slots(self) -> None:
        while True:
            await asyncio.sleep(min(0.1, self.interval_ns / 4e9))
            try:
                if not self.filling:
                    # Shielded: a stop waits for it, since what it took from the conflator
                    # is in no other hands until it is stored.
                    self._letting_out = asyncio.ensure_future(
                        self._let_out(time.time_ns() - self.late_after_ns)
                    )
                    await asyncio.shield(self._letting_out)
                self.minutes.forget_before(time.time_ns())
            except Exception as error:  # a bug must not stop every later slot silently
                self._failed(error)
                log.exception("%s: letting slots out failed", self.name)

    async def _let_out(self, until_ns: int) -> None:
        closed = self.conflator.close(until_ns)
        self.state.held = self.conflator.held
        if closed.ticks is not None:
            stored = await self._store("storing ticks", _ingest_live, closed.ticks)
            self.state.ticks += getattr(stored, "stored", 0)
        if closed.late is not None:
            folded = await self._store("folding late trades", late.fold, closed.late)
            self.state.late += len(closed.late) if folded is not None else 0

    async def _store(self, what: str, fn: Callable[[TickBatch], T], batch: TickBatch) -> T | None:
        try:
            return await self.store.call(f"{self.name}: {what}", fn, batch)
        except BatchError as error:  # the vendor sent what the pipeline refuses: say so
            self._failed(error)
            return None

    async def flush(self) -> None:
        """Let out every slot held (on stop), after what is being stored, so a stop loses
        no trade received."""
        if self._letting_out is not None:
            with contextlib.suppress(Exception):
                await self._letting_out
        if self.conflator.held:
            await self._let_out(2**62)

    async def _report(self) -> None:
        while True:
            self.state.held = self.conflator.held
            metrics.report(self.name, self.state, time.time())
            try:
                await asyncio.to_thread(status.publish, status.SOURCES, self.name,
                                        self.state.report(time.time()))  # fmt: skip
            except redis.RedisError as error:
                log.debug("%s: state not reported: %s", self.name, error)
            await asyncio.sleep(REPORT_EVERY)
