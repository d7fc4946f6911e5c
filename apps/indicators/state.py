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
from datetime import UTC, date, datetime, timedelta

import numpy as np

from apps.indicators.engine import IndicatorEngine
from apps.market import keys
from apps.ops.redis_client import redis_client
from apps.ops.timestamps import floor_to

REBUILD_TICKS = 500
_META = struct.Struct("<qqdq")  # last tick (µs since epoch), session day, open, volume
_NONE = -1
_DAY_MICROS = 86_400 * 1_000_000
_DAY, _MINUTE = timedelta(days=1), timedelta(minutes=1)


@dataclass
class SymbolMeta:
    """Where a symbol's state stands: its last tick and its current session (UTC day).

    Times are integer microseconds since the epoch and days since the epoch: compared and
    advanced for every tick, they cost far less than datetimes.
    """

    last_micros: int | None = None
    session_day: int | None = None
    session_open: float = 0.0
    session_volume: int = 0

    def encode(self) -> bytes:
        return _META.pack(
            _NONE if self.last_micros is None else self.last_micros,
            _NONE if self.session_day is None else self.session_day,
            self.session_open,
            self.session_volume,
        )

    @classmethod
    def decode(cls, data: bytes) -> SymbolMeta:
        last, day, session_open, volume = _META.unpack_from(data)
        return cls(
            last_micros=None if last == _NONE else last,
            session_day=None if day == _NONE else day,
            session_open=session_open,
            session_volume=volume,
        )


@dataclass(frozen=True)
class BatchStart:
    """What the database says about a symbol at the start of a batch."""

    first_ts: datetime  # its first new tick in the batch
    prev_micros: int | None  # the last tick stored before that one
    threshold: float  # its anomaly threshold


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

# The session so far: the day's open (of its first 1-minute bar, backfilled or live, else
# of its first tick this minute) and the volume traded before the batch (whole minutes from
# the 1-minute bars, the started minute from its ticks). The bars are what the day's 1d bar
# adds up, so the hot state's volume and the 1d bar agree (docs/contracts.md#messages).
_REBUILD_SESSION_SQL = """
SELECT s.symbol,
       coalesce(
         (SELECT open FROM market_bar
           WHERE symbol_id = s.symbol AND interval = '1m'
             AND ts >= s.day_start AND ts < s.minute_start
           ORDER BY ts LIMIT 1),
         (SELECT coalesce(open, price) FROM market_tick
           WHERE symbol_id = s.symbol AND ts >= s.minute_start AND ts < s.first_ts
           ORDER BY ts LIMIT 1)) AS session_open,
       coalesce((SELECT sum(volume) FROM market_bar
         WHERE symbol_id = s.symbol AND interval = '1m'
           AND ts >= s.day_start AND ts < s.minute_start), 0)
     + coalesce((SELECT sum(size) FROM market_tick
         WHERE symbol_id = s.symbol AND ts >= s.minute_start AND ts < s.first_ts), 0)
FROM unnest(%(symbols)s::varchar[], %(firsts)s::timestamptz[], %(days)s::timestamptz[],
            %(minutes)s::timestamptz[]) AS s(symbol, first_ts, day_start, minute_start)
"""


def _day_of(ts: datetime) -> int:
    return (ts.astimezone(UTC).date() - date(1970, 1, 1)).days


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
        rebuild: list[str] = []
        if stale:
            usable: dict[str, bytes] = {}
            for symbol, blob in zip(
                stale, redis_client().hmget(keys.PIPELINE_STATE, stale), strict=True
            ):
                meta = SymbolMeta.decode(blob) if blob else None
                if meta is not None and meta.last_micros == starts[symbol].prev_micros:
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
        cursor.execute(
            _REBUILD_SESSION_SQL,
            {
                "symbols": symbols,
                "firsts": firsts,
                "days": [floor_to(f, _DAY) for f in firsts],  # UTC, whatever the tick's zone
                "minutes": [floor_to(f, _MINUTE) for f in firsts],
            },
        )
        sessions = {row[0]: row[1:] for row in cursor.fetchall()}
        for symbol in symbols:
            self.engine.remove_symbol(symbol)
            self.engine.add_symbol(symbol, starts[symbol].threshold)
            self.thresholds[symbol] = starts[symbol].threshold
            session_open, volume = sessions.get(symbol, (None, 0))
            first = starts[symbol].first_ts
            self.meta[symbol] = SymbolMeta(
                last_micros=starts[symbol].prev_micros,
                session_day=_day_of(first) if session_open is not None else None,
                session_open=session_open or 0.0,
                session_volume=int(volume or 0),
            )
        if history:
            self.engine.update([row[0] for row in history], np.array([row[1] for row in history]))

    def basis(self, symbols: list[str]) -> dict[str, tuple[int | None, float]] | None:
        """Each symbol's last tick and threshold as the newest known state has them (if
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
            return {s: (meta[s].last_micros, thresholds[s]) for s in symbols}
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
    ) -> tuple[dict[str, np.ndarray], list[int]]:
        """Advance indicators and sessions by the batch's new ticks (in time order); answers
        the indicator values and each tick's session (UTC day) volume through it. `opens`:
        conflated ticks' first prices (NaN for a tick of one trade), a session's open."""
        values = self.engine.update(symbols, prices)
        meta_of = self.meta
        volumes = []
        firsts = prices if opens is None else np.where(np.isnan(opens), prices, opens)
        for symbol, tick_micros, first, size in zip(
            symbols, micros, firsts.tolist(), sizes, strict=True
        ):
            meta = meta_of[symbol]
            day = tick_micros // _DAY_MICROS
            if meta.session_day != day:
                meta.session_day, meta.session_open, meta.session_volume = day, first, 0
            meta.session_volume += size
            meta.last_micros = tick_micros
            volumes.append(meta.session_volume)
        return values, volumes

    def export(self, symbols: Sequence[str]) -> dict[str, bytes]:
        blobs = self.engine.export_symbols(symbols)
        return {s: self.meta[s].encode() + blobs[s] for s in symbols}


store = StateStore()
