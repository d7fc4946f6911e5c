"""Indicator and session state per symbol: kept in this process, shared through Redis,
rebuilt from stored ticks when neither can be trusted.

The database decides what is current. For each symbol in a batch the pipeline learns the
timestamp of the last tick stored before the batch; a state is used only if it was last
advanced by exactly that tick. So a state that missed a batch (a worker died between the
commit and the Redis write), ran ahead of one (the commit failed after the update), or is
gone (Redis was flushed) is never used: it is rebuilt from the last `REBUILD_TICKS` stored
ticks, enough for every indicator to agree with a run over the whole series to 1e-15.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from apps.indicators.engine import IndicatorEngine
from apps.market import keys, sessions
from apps.ops.redis_client import redis_client
from apps.ops.timestamps import epoch_micros, floor_to

REBUILD_TICKS = 500
# last tick (µs since epoch), session, open, volume, close so far, previous close, clock key
_META = struct.Struct("<qqdqdd24s")
_NONE = -1
_MINUTE = timedelta(minutes=1)
_NAN = float("nan")


@dataclass
class SymbolMeta:
    """Where a symbol's state stands: its last tick and its current session
    (apps/market/sessions.py): the session's open, volume and last price so far, and the
    previous session's close (NaN when unknown), under the symbol's clock (`session_key`).

    Times are integer microseconds since the epoch and sessions days since the epoch:
    compared and advanced for every tick, they cost far less than datetimes.
    """

    last_micros: int | None = None
    session_day: int | None = None
    session_open: float = 0.0
    session_volume: int = 0
    session_close: float = _NAN
    prev_close: float = _NAN
    session_key: str = sessions.UTC_DAY

    def encode(self) -> bytes:
        return _META.pack(
            _NONE if self.last_micros is None else self.last_micros,
            _NONE if self.session_day is None else self.session_day,
            self.session_open,
            self.session_volume,
            self.session_close,
            self.prev_close,
            self.session_key.encode(),
        )

    @classmethod
    def decode(cls, data: bytes) -> SymbolMeta:
        last, day, session_open, volume, close, prev_close, key = _META.unpack_from(data)
        return cls(
            last_micros=None if last == _NONE else last,
            session_day=None if day == _NONE else day,
            session_open=session_open,
            session_volume=volume,
            session_close=close,
            prev_close=prev_close,
            session_key=key.rstrip(b"\0").decode(),
        )


@dataclass(frozen=True)
class BatchStart:
    """What the database says about a symbol at the start of a batch."""

    first_ts: datetime  # its first new tick in the batch
    prev_micros: int | None  # the last tick stored before that one
    threshold: float  # its anomaly threshold
    session_key: str = sessions.UTC_DAY  # its clock (`sessions.key_of`)


# The stored ticks before each symbol's first new tick, newest first, for a rebuild.
_REBUILD_TICKS_SQL = """
SELECT s.symbol, t.price
FROM unnest(%(symbols)s::varchar[], %(firsts)s::timestamptz[]) AS s(symbol, first_ts)
CROSS JOIN LATERAL (
    SELECT price, ts FROM market_tick
    WHERE symbol_id = s.symbol AND ts < s.first_ts
    ORDER BY ts DESC LIMIT %(limit)s
) AS t
ORDER BY s.symbol, t.ts
"""

# The session so far: its open (of its first 1-minute bar, backfilled or live, else of its
# first tick this minute) and the volume traded in it before the batch (whole minutes from
# the 1-minute bars, the started minute from its ticks), and the previous session's close
# (its last 1-minute bar's) and this one's so far (its last tick's). The bars are what the
# session's daily bar adds up, so the hot state's volume and the daily bar agree
# (docs/contracts.md#messages). Session bounds are whole minutes (exchanges open and close
# on the minute).
_REBUILD_SESSION_SQL = """
SELECT s.symbol,
       coalesce(
         (SELECT open FROM market_bar
           WHERE symbol_id = s.symbol AND interval = '1m'
             AND ts >= s.day_start AND ts < least(s.minute_start, s.day_end)
           ORDER BY ts LIMIT 1),
         (SELECT coalesce(open, price) FROM market_tick
           WHERE symbol_id = s.symbol AND ts >= greatest(s.minute_start, s.day_start)
             AND ts < least(s.first_ts, s.day_end)
           ORDER BY ts LIMIT 1)) AS session_open,
       coalesce((SELECT sum(volume) FROM market_bar
         WHERE symbol_id = s.symbol AND interval = '1m'
           AND ts >= s.day_start AND ts < least(s.minute_start, s.day_end)), 0)
     + coalesce((SELECT sum(size) FROM market_tick
         WHERE symbol_id = s.symbol AND ts >= greatest(s.minute_start, s.day_start)
           AND ts < least(s.first_ts, s.day_end)), 0),
       (SELECT close FROM market_bar
         WHERE symbol_id = s.symbol AND interval = '1m'
           AND ts >= s.prev_start AND ts < s.prev_end
         ORDER BY ts DESC LIMIT 1) AS prev_close,
       (SELECT price FROM market_tick
         WHERE symbol_id = s.symbol AND ts >= s.day_start AND ts < least(s.first_ts, s.day_end)
         ORDER BY ts DESC LIMIT 1) AS session_close
FROM unnest(%(symbols)s::varchar[], %(firsts)s::timestamptz[], %(days)s::timestamptz[],
            %(ends)s::timestamptz[], %(minutes)s::timestamptz[], %(prev_starts)s::timestamptz[],
            %(prev_ends)s::timestamptz[])
     AS s(symbol, first_ts, day_start, day_end, minute_start, prev_start, prev_end)
"""


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StateStore:
    """The state of every symbol this process has seen (one per worker process)."""

    def __init__(self) -> None:
        self.engine = IndicatorEngine()
        self.meta: dict[str, SymbolMeta] = {}
        self.thresholds: dict[str, float] = {}
        self.version: bytes | None = None  # of the stored history (keys.PIPELINE_STATE_VERSION)

    def forget(self) -> None:
        """Drop everything held in this process, as a fresh worker would start."""
        self.__init__()

    def prepare(self, starts: dict[str, BatchStart], cursor) -> list[str]:
        """Bring each symbol's state to its last stored tick; returns the symbols rebuilt."""
        stale = [
            s
            for s, b in starts.items()
            if s not in self.meta or self.meta[s].last_micros != b.prev_micros
        ]
        # A symbol whose clock changed (its calendar edited) needs its session anew.
        stale += [
            s for s, b in starts.items()
            if s in self.meta and s not in stale and self.meta[s].session_key != b.session_key
        ]  # fmt: skip
        rebuild: list[str] = []
        if stale:
            usable: dict[str, bytes] = {}
            for symbol, blob in zip(
                stale, redis_client().hmget(keys.PIPELINE_STATE, stale), strict=True
            ):
                meta = SymbolMeta.decode(blob) if blob else None
                start = starts[symbol]
                if (meta is not None and meta.last_micros == start.prev_micros
                        and meta.session_key == start.session_key):  # fmt: skip
                    usable[symbol] = blob[_META.size :]
                    self.meta[symbol] = meta
                    self.thresholds.pop(symbol, None)
                else:
                    rebuild.append(symbol)
            if usable:
                try:
                    self.engine.import_symbols(usable)  # one bulk import: a takeover is cheap
                except ValueError:  # a corrupt state in Redis: the database knows better
                    rebuild += list(usable)
        if rebuild:
            self._rebuild(rebuild, starts, cursor)
        for symbol, start in starts.items():
            if self.thresholds.get(symbol) != start.threshold:
                self.engine.set_threshold(symbol, start.threshold)
                self.thresholds[symbol] = start.threshold
        return rebuild

    def _rebuild(self, symbols: list[str], starts: dict[str, BatchStart], cursor) -> None:
        firsts = [starts[s].first_ts for s in symbols]
        cursor.execute(
            _REBUILD_TICKS_SQL, {"symbols": symbols, "firsts": firsts, "limit": REBUILD_TICKS}
        )
        history = cursor.fetchall()
        # The session of each first tick (or the latest before it) and the one before that.
        days, previous = {}, {}
        bounds: dict[str, list] = {"days": [], "ends": [], "prev_starts": [], "prev_ends": []}
        for symbol, first in zip(symbols, firsts, strict=True):
            clock = sessions.clock(starts[symbol].session_key)
            day = clock.at_or_before(epoch_micros(first))
            before = None if day is None else clock.previous(day)
            days[symbol], previous[symbol] = day, before
            start, end = clock.window(day) if day is not None else (0, 0)
            prev_start, prev_end = clock.window(before) if before is not None else (0, 0)
            for name, us in (("days", start), ("ends", end), ("prev_starts", prev_start),
                             ("prev_ends", prev_end)):  # fmt: skip
                bounds[name].append(_at(us))
        cursor.execute(
            _REBUILD_SESSION_SQL,
            {
                "symbols": symbols,
                "firsts": firsts,
                "minutes": [floor_to(f, _MINUTE) for f in firsts],
                **bounds,
            },
        )
        found = {row[0]: row[1:] for row in cursor.fetchall()}
        for symbol in symbols:
            self.engine.remove_symbol(symbol)
            self.engine.add_symbol(symbol, starts[symbol].threshold)
            self.thresholds[symbol] = starts[symbol].threshold
            session_open, volume, prev_close, close = found.get(symbol, (None, 0, None, None))
            prev_close = _NAN if prev_close is None else prev_close
            meta = SymbolMeta(last_micros=starts[symbol].prev_micros,
                              session_key=starts[symbol].session_key)  # fmt: skip
            if session_open is not None:  # the session has begun: go on with it
                meta.session_day, meta.session_open = days[symbol], session_open
                meta.session_volume = int(volume or 0)
                meta.session_close, meta.prev_close = close, prev_close
            elif prev_close == prev_close:  # it begins now: the previous one closed there
                meta.session_day, meta.session_close = previous[symbol], prev_close
            self.meta[symbol] = meta
        if history:
            self.engine.update([row[0] for row in history], np.array([row[1] for row in history]))

    def basis(self, symbols: list[str]) -> dict[str, tuple[int | None, float, str]] | None:
        """Each symbol's last tick, threshold and clock as the newest known state has them (if
        every symbol has one): this process's, or the one another worker last shared.

        Another process's batch leaves this one's state behind (Celery hands a shard's
        next tick to whichever pool process is free); its shared state is then adopted.
        The database still has the last word: `prepare` checks what the pipeline used.
        """
        pipe = redis_client().pipeline(transaction=False)
        pipe.get(keys.PIPELINE_STATE_VERSION)
        pipe.hmget(keys.PIPELINE_STATE, symbols)
        version, blobs = pipe.execute()
        if version != self.version:  # history changed under us (a backfill): start afresh
            self.forget()
            self.version = version
        newer: dict[str, bytes] = {}
        for symbol, blob in zip(symbols, blobs, strict=True):
            if blob is None or len(blob) < _META.size:
                continue
            shared = SymbolMeta.decode(blob)
            mine = self.meta.get(symbol)
            if mine is None or (shared.last_micros or _NONE) > (mine.last_micros or _NONE):
                newer[symbol] = blob
        if newer:
            try:
                self.engine.import_symbols({s: blob[_META.size :] for s, blob in newer.items()})
            except ValueError:  # a corrupt state: `prepare` rebuilds it
                return None
            for symbol, blob in newer.items():
                self.meta[symbol] = SymbolMeta.decode(blob)
                self.thresholds[symbol] = self.engine.threshold(symbol)
        meta, thresholds = self.meta, self.thresholds
        try:
            return {s: (meta[s].last_micros, thresholds[s], meta[s].session_key) for s in symbols}
        except KeyError:
            return None

    def forget_symbols(self, symbols: Iterable[str]) -> None:
        """Stop trusting these symbols' states: the next `prepare` reloads or rebuilds them."""
        for symbol in symbols:
            self.meta.pop(symbol, None)
            self.thresholds.pop(symbol, None)

    def apply(
        self,
        symbols: Sequence[str],
        micros: Sequence[int],
        prices: np.ndarray,
        sizes: Sequence[int],
        *,
        opens: np.ndarray | None = None,
    ) -> tuple[dict[str, np.ndarray], list[int], list[float]]:
        """Advance indicators and sessions by the batch's new ticks (in time order); answers
        the indicator values, each tick's session volume through it and the price its
        change is against (the previous session's close, else the session's open).
        `opens`: conflated ticks' first prices (NaN for a tick of one trade), a session's
        open. A tick outside every session (apps/market/sessions.py) leaves the session as
        it was."""
        values = self.engine.update(symbols, prices)
        meta_of = self.meta
        volumes: list[int] = []
        references: list[float] = []
        firsts = prices if opens is None else np.where(np.isnan(opens), prices, opens)
        clock = sessions.clock
        for symbol, tick_micros, first, price, size in zip(
            symbols, micros, firsts.tolist(), prices.tolist(), sizes, strict=True
        ):
            meta = meta_of[symbol]
            day = clock(meta.session_key).session_of(tick_micros)
            if day is not None:
                if meta.session_day != day:
                    known = meta.session_day is not None and meta.session_day == (
                        clock(meta.session_key).previous(day)
                    )
                    meta.prev_close = meta.session_close if known else _NAN
                    meta.session_day, meta.session_open, meta.session_volume = day, first, 0
                meta.session_volume += size
                meta.session_close = price
            meta.last_micros = tick_micros
            volumes.append(meta.session_volume)
            prev_close = meta.prev_close
            references.append(meta.session_open if prev_close != prev_close else prev_close)
        return values, volumes, references

    def export(self, symbols: Sequence[str]) -> dict[str, bytes]:
        blobs = self.engine.export_symbols(symbols)
        return {s: self.meta[s].encode() + blobs[s] for s in symbols}


store = StateStore()
