"""Imports of recorded trades and bars (docs/sources.md#recorded-data): a file, read in
batches, turned into ticks and stored through the ingest pipeline as history.

A run is idempotent and resumable: the ticks of a file are the same every time it is read,
and the pipeline skips ticks already stored, so a second run of the same file stores
nothing and a run stopped half-way (a crash, Ctrl-C, a bad row) continues where it stopped
when run again. Each batch is stored whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from apps.ingest.pipeline import Slots, TickBatch, ingest
from apps.market import keys, selectors
from apps.market.backfill import refresh_aggregates
from apps.market.models import Source, Symbol
from apps.ops.redis_client import redis_client
from apps.ops.timestamps import UNIX_EPOCH
from apps.sources import files
from apps.sources.conflation import Trades, conflate

FILES_SOURCE = "files"  # the Source that symbols created by an import belong to


@dataclass
class ImportResult:
    """What one import did."""

    rows: int = 0  # rows read
    ticks: int = 0  # ticks the trades conflated into
    stored: int = 0  # ticks new to the database
    created: list[str] = field(default_factory=list)  # symbols created
    symbols: set[str] = field(default_factory=set)  # symbols in the file
    first: datetime | None = None  # the first and last tick imported
    last: datetime | None = None


@dataclass(frozen=True)
class Reading:
    """A file and how to read it: its format, whether symbols it names that do not exist
    are created (and on which exchange), and a progress callback given rows read."""

    path: Path
    fmt: files.FileFormat = field(default_factory=files.FileFormat)
    create_symbols: bool = False
    exchange: str = ""
    progress: Callable[[int], None] | None = None


def import_trades(reading: Reading, *, interval: float) -> ImportResult:
    """Store a file's trades as ticks of `interval` seconds.

    The file must hold each symbol's trades in time order (files ordered by symbol and
    time, or by time, are): a symbol's slot is stored once its next slot begins, so a trade
    for a slot already passed is an error naming its line, never a trade dropped.
    """
    result = ImportResult()
    ticks = trade_ticks(reading, interval_ns=round(interval * 1e9), result=result)
    return _import(ticks, result, tail=timedelta(seconds=interval))


def import_bars(reading: Reading) -> ImportResult:
    """Store a file's bars, of any interval, each as one tick at the bar's start that
    carries the whole bar: its close as the price, its volume as the size, its open, high,
    low and trade count (1 where the file has none) as the tick's slot. The bars of the
    file's own interval are then the file's rows, and longer ones add them up; the
    indicators run over the closes. Idempotent and resumable as `import_trades`."""
    result = ImportResult()
    return _import(bar_ticks(reading, result=result), result, tail=timedelta(days=1))


def _import(ticks: Iterator[TickBatch], result: ImportResult, *, tail: timedelta) -> ImportResult:
    latest: dict[str, dict] = {}  # per symbol, the hot state of its newest tick imported
    for batch in ticks:
        stored = ingest(batch, live=False)
        first, last = min(batch.ts), max(batch.ts)
        result.first = min(first, result.first or first)
        result.last = max(last, result.last or last)
        result.ticks += len(batch)
        result.stored += stored.stored
        for s, state in stored.states.items():
            if s not in latest or latest[s]["ts"] < state["ts"]:
                latest[s] = state
    if result.first is not None:  # the longer bars already materialised over that time
        refresh_aggregates(start=result.first, end=result.last + tail,
                           tickers=sorted(result.symbols))  # fmt: skip
    write_newer_hot_states(latest)
    return result


def trade_ticks(
    reading: Reading, *, interval_ns: int, result: ImportResult, in_time_order: bool = False
) -> Iterator[TickBatch]:
    """The file's trades conflated into ticks, batch by batch, no slot split between two.

    By default each symbol's trades must be in time order, and its last slot so far waits
    for the next batch. `in_time_order` (a replay) asks the whole file to be in time order,
    and holds back only the batch's last slot, so the ticks come out in time order too.
    """
    held: Trades | None = None  # trades of slots more trades may still join
    passed: dict[str, int] = {}  # per symbol (or "" for all), the last slot let through
    for trades, first_row, rows in files.read_trades(reading.path, reading.fmt):
        _check_symbols(trades.symbols, trades.prices, reading, first_row=first_row,
                       result=result)  # fmt: skip
        slots = trades.ns // interval_ns
        keys_ = np.full(len(slots), "") if in_time_order else trades.symbols
        _check_order(keys_, slots, passed, trades.symbols, path=reading.path,
                     first_row=first_row)  # fmt: skip
        pending = _concat(held, trades)
        pending_slots = pending.ns // interval_ns
        pending_keys = np.full(len(pending_slots), "") if in_time_order else pending.symbols
        last = _last_slot_of_each(pending_keys, pending_slots)
        hold = pending_slots == np.array([last[k] for k in pending_keys], dtype=np.int64)
        held = _take(pending, hold)
        ready = _take(pending, ~hold)
        if len(ready):
            yield conflate(ready, interval_ns=interval_ns)
        for k, slot in last.items():
            passed[k] = max(passed.get(k, slot - 1), slot - 1)
        _count(reading, result, rows)
    if held is not None and len(held):
        yield conflate(held, interval_ns=interval_ns)


def bar_ticks(
    reading: Reading, *, result: ImportResult, in_time_order: bool = False
) -> Iterator[TickBatch]:
    """The file's bars as ticks (see `import_bars`), batch by batch; with `in_time_order`
    (a replay) the file must be in time order, and each batch comes sorted by time."""
    newest = np.iinfo(np.int64).min
    for bars, first_row, rows in files.read_bars(reading.path, reading.fmt):
        _check_symbols(bars.symbols, bars.opens, reading, first_row=first_row, result=result)
        if in_time_order:
            before = np.maximum.accumulate(np.concatenate(([newest], bars.ns)))[:-1]
            late = bars.ns < before
            if late.any():
                row = first_row + int(np.argmax(late))
                raise files.FileError(
                    f"{reading.path}: {files.where(reading.path, row)}: a bar earlier than bars"
                    " already read: a replay needs the file sorted by time"
                )
            newest = max(newest, int(bars.ns.max()))
        micros = bars.ns // 1000
        stamps = {m: UNIX_EPOCH + timedelta(microseconds=int(m)) for m in np.unique(micros)}
        yield TickBatch(
            symbols=bars.symbols.tolist(), ts=[stamps[m] for m in micros], prices=bars.closes,
            sizes=bars.volumes.astype(np.int64),
            slots=Slots(bars.opens, bars.highs, bars.lows, np.nan_to_num(bars.trades, nan=1.0)),
        )  # fmt: skip
        _count(reading, result, rows)


def _count(reading: Reading, result: ImportResult, rows: int) -> None:
    result.rows += rows
    if reading.progress is not None:
        reading.progress(rows)


def write_newer_hot_states(latest: dict[str, dict]) -> None:
    """History's last tick (an import's, a vendor backfill's) becomes a symbol's hot state
    (its price on every door) where it is newer than the one there; history older than the
    live price leaves it alone."""
    if not latest:
        return
    current = selectors.hot_states(list(latest))
    newer = {
        s: state
        for s, state in latest.items()
        if current[s] is None
        or datetime.fromisoformat(current[s]["ts"]) < datetime.fromisoformat(state["ts"])
    }
    if newer:
        redis_client().mset({keys.hot(s): orjson.dumps(state) for s, state in newer.items()})


def _check_symbols(
    symbols: np.ndarray, prices: np.ndarray, reading: Reading, *, first_row: int,
    result: ImportResult,
) -> None:  # fmt: skip
    """Every symbol known, or created (with its first price as the simulator's start)."""
    names, first = np.unique(symbols, return_index=True)
    new = set(names.tolist()) - result.symbols
    if not new:
        return
    known = set(Symbol.objects.filter(ticker__in=new).values_list("ticker", flat=True))
    for name, row in sorted(zip(names.tolist(), first.tolist(), strict=True), key=lambda x: x[1]):
        if name in new and name not in known:
            if not reading.create_symbols:
                path = reading.path
                raise files.FileError(
                    f"{path}: {files.where(path, first_row + row)}: unknown symbol {name}: "
                    "add it in the admin, or pass --create-symbols"
                )
            source, _ = Source.objects.get_or_create(
                name=FILES_SOURCE,
                defaults={"kind": Source.FILES, "description": "Recorded trades, imported"},
            )
            Symbol.objects.create(
                ticker=name, name=name, exchange=reading.exchange, source=source,
                start_price=float(prices[row]),
            )  # fmt: skip
            result.created.append(name)
    result.symbols |= new


def _check_order(keys_: np.ndarray, slots: np.ndarray, passed: dict[str, int],
                 symbols: np.ndarray, *, path: Path, first_row: int) -> None:  # fmt: skip
    """No trade for a slot already let through (per symbol, or for all with key "")."""
    if not passed:
        return
    floor = np.array([passed.get(k, np.iinfo(np.int64).min) for k in keys_], dtype=np.int64)
    late = slots <= floor
    if late.any():
        row = first_row + int(np.argmax(late))
        raise files.FileError(
            f"{path}: {files.where(path, row)}: a trade of {symbols[np.argmax(late)]} earlier "
            "than trades already read: sort the file by symbol and time, or by time (a replay:"
            " by time)"
        )


def _last_slot_of_each(symbols: np.ndarray, slots: np.ndarray) -> dict[str, int]:
    names, inverse = np.unique(symbols, return_inverse=True)
    last = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, inverse, slots)
    return dict(zip(names.tolist(), last.tolist(), strict=True))


def _take(trades: Trades, rows: np.ndarray) -> Trades:
    return Trades(
        trades.symbols[rows], trades.ns[rows], trades.prices[rows], trades.sizes[rows],
        None if trades.ids is None else trades.ids[rows],
    )  # fmt: skip


def _concat(held: Trades | None, trades: Trades) -> Trades:
    if held is None or not len(held):
        return trades
    ids = None
    if held.ids is not None and trades.ids is not None:
        ids = np.concatenate([held.ids, trades.ids])
    return Trades(
        np.concatenate([held.symbols, trades.symbols]), np.concatenate([held.ns, trades.ns]),
        np.concatenate([held.prices, trades.prices]), np.concatenate([held.sizes, trades.sizes]),
        ids,
    )  # fmt: skip
