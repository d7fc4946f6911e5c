"""What rules need from the past: the previous tick (crossings), the price a window ago
(change over a window) and the 1-minute bar volumes (volume spikes).

Each look-up reads the batch's transaction, never trusting process memory on its own: a
value remembered here or in Redis is used only when stamped with exactly the tick the
database says came before.
"""

from __future__ import annotations

import struct
import zlib
from collections import defaultdict

import numpy as np

from apps.alerts import conditions as c
from apps.alerts.evaluation import sql
from apps.alerts.evaluation.batch import Ticks
from apps.market import keys
from apps.market.constants import BAR_INTERVAL_1M

MINUTE = 60_000_000
_PREVIOUS = struct.Struct("<qddd")  # tick (µs since epoch), price, sma_20, ema_20


def previous(
    cursor, ticks: Ticks, stored: dict[str, bytes | None], *, needed: set[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Price, SMA and EMA of the tick before each tick of the batch (NaN when unknown).

    `stored` holds what Redis has per symbol (`keys.ALERT_PREVIOUS`); `needed` are the
    ticks a crossing asks about."""
    before, outside = _before_in_batch(ticks, needed)
    inside = before >= 0
    prev = np.full((3, len(ticks.symbols)), np.nan)
    for row, series in enumerate((ticks.prices, ticks.values["sma_20"], ticks.values["ema_20"])):
        prev[row, inside] = series[before[inside]]
    found = _before_the_batch(cursor, ticks, stored, outside)
    if found:
        at, *columns = zip(*found, strict=True)
        prev[:, list(at)] = columns
    return prev[0], prev[1], prev[2]


def _before_in_batch(ticks: Ticks, needed: set[int]) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Per tick, the previous tick of the same symbol in the batch (-1 for none); and per
    symbol, its first tick(s) here that need the tick stored before the batch."""
    prev_micros = ticks.prev_micros
    before = np.full(len(ticks.symbols), -1)
    last_in_batch: dict[str, int] = {}
    outside: dict[str, list[int]] = defaultdict(list)
    for i, symbol in enumerate(ticks.symbols):
        j = last_in_batch.get(symbol)
        if j is not None:
            before[i] = j
        elif i in needed and prev_micros.get(symbol) is not None:
            outside[symbol].append(i)
        last_in_batch[symbol] = i
    return before, outside


def _before_the_batch(
    cursor, ticks: Ticks, stored: dict[str, bytes | None], outside: dict[str, list[int]]
) -> list[tuple[int, float, float, float]]:
    """(tick, price, SMA, EMA) of the tick stored before each of `outside`: from Redis when
    stamped with that tick, else from its stored snapshot."""
    prev_micros = ticks.prev_micros
    found: list[tuple[int, float, float, float]] = []
    missing = []
    for symbol, at in outside.items():
        blob = stored.get(symbol)
        fields = _PREVIOUS.unpack(blob) if blob and len(blob) == _PREVIOUS.size else None
        if fields and fields[0] == prev_micros[symbol]:
            found += [(i, *fields[1:]) for i in at]
        else:
            missing.append(symbol)
    if missing:  # Redis lost it or is behind: the stored snapshot of that tick
        cursor.execute(
            sql.PREVIOUS_SNAPSHOTS,
            {"symbols": sql.texts(missing), "micros": sql.numbers(prev_micros[s] for s in missing)},
        )
        for symbol, p, s, e in cursor.fetchall():
            nan = float("nan")
            found += [(i, p, nan if s is None else s, nan if e is None else e)
                      for i in outside[symbol]]  # fmt: skip
    return found


def previous_command(ticks: Ticks) -> list[bytes]:
    """HSET of each symbol's last tick, for the crossings of the next batch."""
    micros, prices = ticks.micros, ticks.prices
    sma, ema = ticks.values["sma_20"], ticks.values["ema_20"]
    last = {s: i for i, s in enumerate(ticks.symbols)}
    command = [b"HSET", keys.ALERT_PREVIOUS.encode()]
    for symbol, i in last.items():
        command += (
            symbol.encode(),
            _PREVIOUS.pack(micros[i], float(prices[i]), float(sma[i]), float(ema[i])),
        )
    return command


class _Span:
    """The stored ticks of one symbol from the last one at or before `start` up to `until`:
    the answer to "the price W seconds ago" for every moment in between."""

    __slots__ = ("at", "micros", "prices", "start", "until")

    def __init__(self, start: int, until: int) -> None:
        self.micros: list[int] = []
        self.prices: list[float] = []
        self.start, self.until, self.at = start, until, 0

    def price_at(self, moment: int) -> float | None:
        """The price of the last tick at or before `moment` (start <= moment <= until)."""
        micros, at = self.micros, self.at
        while at + 1 < len(micros) and micros[at + 1] <= moment:
            at += 1
        self.at = at
        return self.prices[at] if micros and micros[at] <= moment else float("nan")


# Per (symbol, window): the ticks a change-over-a-window rule will look back at over the
# next minute or two. A tick's window start moves on with every batch, so one lookup a
# batch per symbol and window would cost a database round of index scans every batch;
# a span is read once and then answers until the window start passes its end.
_spans: dict[tuple[str, int], _Span] = {}
_SPAN_MICROS = 60_000_000  # plus up to as much again, so spans do not all end together

# The 20 bars before a bucket are closed: their average is kept for the bucket's minute.
_average_volume: dict[tuple[str, int], float | None] = {}

# Per symbol, where its current 1-minute bar stood after the last batch this process
# evaluated: (last tick, bucket, volume). Used only when that tick is the one the database
# says came before this batch; otherwise the bar is read back from the database.
_bar_volume: dict[str, tuple[int, int, int]] = {}

_VOLUME_PARAMS = {"interval": BAR_INTERVAL_1M, "bars": c.VOLUME_BARS}


def forget_process_state() -> None:
    """Drop what this process remembers between batches (as a newly started worker)."""
    _spans.clear()
    _bar_volume.clear()
    _average_volume.clear()


def window_change(
    cursor, ticks: Ticks, *, pair_tick: np.ndarray, windows: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Change % of each masked pair's tick over its rule's window (NaN without history)."""
    tick_micros = ticks.tick_micros
    pairs = np.flatnonzero(mask)
    at = pair_tick[pairs]
    # One lookup per tick and window, however many rules share them.
    wanted, inverse = np.unique(np.stack((at, windows[pairs])), axis=1, return_inverse=True)
    # Spans hold committed ticks only: those before this batch (which may yet roll back).
    committed = int(tick_micros.min()) - 1
    symbols = ticks.symbols
    keys_ = [(symbols[t], w) for t, w in zip(wanted[0].tolist(), wanted[1].tolist(), strict=True)]
    moments = (tick_micros[wanted[0]] - wanted[1]).tolist()
    used = _spans_for(cursor, keys_, moments, committed)
    start = np.array([span.price_at(moment) for span, moment in zip(used, moments, strict=True)])
    change = np.full(len(pair_tick), np.nan)
    change[pairs] = (ticks.prices[at] / start[inverse.reshape(-1)] - 1.0) * 100.0
    return change


def _spans_for(
    cursor, keys_: list[tuple[str, int]], moments: list[int], committed: int
) -> list[_Span]:
    """The span each (symbol, window) lookup reads at its moment; those not cached (or
    whose span the moment has left) are read in one statement."""
    if len(_spans) > 200_000:  # symbols and windows no rule asks for any more
        _spans.clear()
    stale: list[tuple[str, _Span]] = []
    used: list[_Span] = []  # per lookup (a symbol's ticks in time order: moments ascend)
    for key, moment in zip(keys_, moments, strict=True):
        span = _spans.get(key)
        if span is None or not span.start <= moment <= span.until:
            if moment > committed:  # a window shorter than the batch: this once, uncached
                span = _Span(moment, moment)
            else:
                jitter = zlib.crc32(f"{key[0]}{key[1]}".encode()) % _SPAN_MICROS
                span = _Span(moment, min(moment + _SPAN_MICROS + jitter, committed))
            _spans[key] = span
            stale.append((key[0], span))
        used.append(span)
    if stale:
        cursor.execute(
            sql.WINDOW_SPANS,
            {
                "symbols": sql.texts([symbol for symbol, _ in stale]),
                "starts": sql.numbers(span.start for _, span in stale),
                "untils": sql.numbers(span.until for _, span in stale),
            },
        )
        for k, micros, price in cursor.fetchall():
            span = stale[k - 1][1]
            span.micros.append(micros)
            span.prices.append(price)
    return used


def volume_ratio(cursor, ticks: Ticks, *, pair_tick: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each masked pair, the tick's 1-minute bar volume (up to and including the tick)
    over the average of the 20 bars before; NaN with fewer than 20 bars."""
    symbols, tick_micros = ticks.symbols, ticks.tick_micros
    buckets = (tick_micros - tick_micros % MINUTE).tolist()
    wanted = sorted(set(pair_tick[mask].tolist()))
    _load_average_volumes(cursor, list(dict.fromkeys((symbols[t], buckets[t]) for t in wanted)))
    first: dict[str, int] = {}
    for t, symbol in enumerate(symbols):
        first.setdefault(symbol, t)
    start = _volumes_before(
        cursor, ticks, buckets=buckets, first=first, of=dict.fromkeys(symbols[t] for t in wanted)
    )
    per_tick = _bar_volume_ratios(ticks, buckets=buckets, first=first, start=start)
    ratio = np.full(len(pair_tick), np.nan)
    ratio[mask] = per_tick[pair_tick[mask]]
    return ratio


def _load_average_volumes(cursor, wanted: list[tuple[str, int]]) -> None:
    """Keep the average volume of the 20 bars before each (symbol, bucket) not yet known."""
    unknown = [key for key in wanted if key not in _average_volume]
    if unknown:
        if len(_average_volume) > 100_000:
            _average_volume.clear()
        cursor.execute(
            sql.AVERAGE_VOLUME,
            {
                **_VOLUME_PARAMS,
                "symbols": sql.texts([k[0] for k in unknown]),
                "micros": sql.numbers(k[1] for k in unknown),
            },
        )
        for k, average, bars in cursor.fetchall():
            _average_volume[unknown[k - 1]] = average if bars == c.VOLUME_BARS else None


def _volumes_before(
    cursor, ticks: Ticks, *, buckets: list[int], first: dict[str, int], of: dict[str, None]
) -> dict[str, int]:
    """Each symbol's bar volume before its first tick here."""
    symbols, sizes = ticks.symbols, ticks.sizes
    # 0 when the tick before it lies in an earlier minute, else what this process saw last,
    # else the stored bar.
    start: dict[str, int] = {}
    reread = []
    for symbol in of:
        prev, bucket = ticks.prev_micros.get(symbol), buckets[first[symbol]]
        seen = _bar_volume.get(symbol)
        if prev is None or prev - prev % MINUTE < bucket:
            start[symbol] = 0
        elif seen is not None and seen[0] == prev and seen[1] == bucket:
            start[symbol] = seen[2]
        else:
            reread.append((symbol, bucket))
    if reread:
        cursor.execute(
            sql.BAR_VOLUME,
            {
                **_VOLUME_PARAMS,
                "symbols": sql.texts([k[0] for k in reread]),
                "micros": sql.numbers(k[1] for k in reread),
            },
        )
        stored = {reread[k - 1][0]: volume for k, volume in cursor.fetchall()}
        batch = defaultdict(int)  # the stored bar already holds this batch's ticks
        for t, symbol in enumerate(symbols):
            if buckets[t] == buckets[first[symbol]]:
                batch[symbol] += sizes[t]
        for symbol, _ in reread:
            start[symbol] = stored.get(symbol, 0) - batch[symbol]
    return start


def _bar_volume_ratios(
    ticks: Ticks, *, buckets: list[int], first: dict[str, int], start: dict[str, int]
) -> np.ndarray:
    """Per tick of the symbols in `start`, its bar's volume so far over the bucket's average
    (NaN elsewhere); remembers where each bar stands for the next batch."""
    symbols, sizes, tick_micros = ticks.symbols, ticks.sizes, ticks.tick_micros
    per_tick = np.full(len(symbols), np.nan)
    running: dict[str, tuple[int, int]] = {}  # symbol -> (bucket, volume so far)
    for t, symbol in enumerate(symbols):
        if symbol not in start:
            continue
        bucket, volume = running.get(symbol, (buckets[first[symbol]], start[symbol]))
        if buckets[t] != bucket:
            bucket, volume = buckets[t], 0
        volume += sizes[t]
        running[symbol] = (bucket, volume)
        average = _average_volume.get((symbol, bucket))
        if average:
            per_tick[t] = volume / average
        _bar_volume[symbol] = (int(tick_micros[t]), bucket, volume)
    return per_tick
