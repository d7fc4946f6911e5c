"""Recorded trade files, read in batches (docs/sources.md#recorded-data).

CSV (plain or gzipped) and Parquet, streamed with pyarrow so that a file of any size reads
in bounded memory. The columns are found by name: a layout's defaults (the vendor's flat
files, a generic one) or names the caller gives. Every row is checked, and a bad one is an
error that names its line (CSV) or row (Parquet).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from apps.market.models import TICKER_PATTERN
from apps.sources.conflation import Trades


@dataclass(frozen=True)
class Kind:
    """What a kind of file holds: its fields, the column names each is looked for under (in
    order, case-insensitively), and which fields it must have."""

    aliases: dict[str, tuple[str, ...]]
    required: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.aliases)


_SYMBOL = ("ticker", "symbol", "sym")
# The first time names are Polygon/Massive's flat files (trades_v1, minute_aggs_v1), then
# Alpaca's keys; "" is a file written from a table's index (the backtesting package's).
_TIME = ("sip_timestamp", "window_start", "timestamp", "t", "time", "datetime", "date", "ts",
         "", "unnamed: 0")  # fmt: skip
TRADES = Kind(
    aliases={"symbol": _SYMBOL, "time": _TIME, "price": ("price", "p"),
             "size": ("size", "volume", "quantity", "qty", "s"),
             "id": ("id", "trade_id", "i")},
    required=("symbol", "time", "price", "size"),
)  # fmt: skip
BARS = Kind(
    aliases={"symbol": _SYMBOL, "time": _TIME, "open": ("open", "o"), "high": ("high", "h"),
             "low": ("low", "l"), "close": ("close", "c"), "volume": ("volume", "v"),
             "trades": ("transactions", "trades", "n", "count")},
    required=("symbol", "time", "open", "high", "low", "close", "volume"),
)  # fmt: skip
BATCH_ROWS = 200_000
_SCALES = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}  # to ns
_UNITS = tuple(_SCALES)
_INT4_MAX = 2**31 - 1


class FileError(ValueError):
    """A file that cannot be imported as given; the message says where and why."""


def resolve_columns(
    names: list[str], given: dict[str, str], kind: Kind, *, one_symbol: bool
) -> dict[str, str | None]:
    """Each field's column in a file with header `names`: the caller's, else the first
    alias found (None for an optional field the file lacks, and for the symbol when the
    caller names one for the whole file)."""
    by_lower = {name.lower(): name for name in names}
    found: dict[str, str | None] = {}
    for wanted in kind.fields:
        if wanted in given:
            if given[wanted] not in names:
                raise FileError(f"no column {given[wanted]!r} for {wanted} (columns: {names})")
            found[wanted] = given[wanted]
            continue
        taken = set(found.values())
        found[wanted] = next(
            (by_lower[a] for a in kind.aliases[wanted] if a in by_lower
             and by_lower[a] not in taken),
            None,
        )  # fmt: skip
    if one_symbol:
        found["symbol"] = None
    missing = [f for f in kind.required if found[f] is None and not (one_symbol and f == "symbol")]
    if missing:
        raise FileError(
            f"no column for {', '.join(missing)} (columns: {names}); name them with "
            "--columns field=column, or give --symbol for a file of one symbol"
        )
    return found


@dataclass(frozen=True)
class FileFormat:
    """How to read a file: column names the defaults do not find, the symbol of a file
    without a symbol column, the time zone of times without an offset, the unit of numeric
    times (None: by their size), rows per batch."""

    columns: dict[str, str] = field(default_factory=dict)
    symbol: str | None = None
    tz: str = "UTC"
    time_unit: str | None = None
    batch_rows: int = BATCH_ROWS


@dataclass(frozen=True)
class Batch:
    """Consecutive rows, checked: `values` by field (symbols, Unix ns, numbers; trade ids
    as text); `first_row` is the 0-based row of the first."""

    values: dict[str, np.ndarray]
    first_row: int
    rows: int


@dataclass(frozen=True)
class Bars:
    """Bars as columns: tickers, Unix ns of each bar's start, prices, volumes and trade
    counts (NaN where the file has none)."""

    symbols: np.ndarray
    ns: np.ndarray
    opens: np.ndarray
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    volumes: np.ndarray
    trades: np.ndarray


def read(path: Path, fmt: FileFormat, kind: Kind) -> Iterator[Batch]:
    """The file's rows, batch by batch, each row checked."""
    try:
        zone = ZoneInfo(fmt.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise FileError(f"unknown time zone {fmt.tz!r}") from None
    if fmt.time_unit is not None and fmt.time_unit not in _UNITS:
        raise FileError(f"the time unit must be one of {', '.join(_UNITS)}")
    if fmt.symbol is not None and not TICKER_PATTERN.match(fmt.symbol.upper()):
        raise FileError(f"{fmt.symbol!r} is not a ticker")
    reader = _reader(path, fmt.batch_rows)
    names = next(reader)
    columns = resolve_columns(names, fmt.columns, kind, one_symbol=fmt.symbol is not None)
    done = 0
    for table in reader:
        checker = _Checker(table, columns, path=path, first_row=done)
        values = {"symbol": checker.symbols(fmt.symbol),
                  "time": checker.times(zone=zone, unit=fmt.time_unit)}  # fmt: skip
        if kind is TRADES:
            values["price"] = checker.prices("price")
            values["size"] = checker.whole("size", low=1)
            values["id"] = checker.text("id")
        else:
            for name in ("open", "high", "low", "close"):
                values[name] = checker.prices(name)
            checker.bad(
                (values["low"] > np.minimum(values["open"], values["close"]))
                | (values["high"] < np.maximum(values["open"], values["close"])),
                "the bar's low and high must hold its open and close",
            )
            values["volume"] = checker.whole("volume", low=1)
            values["trades"] = checker.whole("trades", low=1, optional=True)
        yield Batch(values, done, table.num_rows)
        done += table.num_rows


def read_trades(path: Path, fmt: FileFormat) -> Iterator[tuple[Trades, int, int]]:
    """The file's trades, batch by batch: (trades, first row, rows)."""
    for batch in read(path, fmt, TRADES):
        v = batch.values
        yield (
            Trades(v["symbol"], v["time"], v["price"], v["size"], v["id"]),
            batch.first_row,
            batch.rows,
        )


def read_bars(path: Path, fmt: FileFormat) -> Iterator[tuple[Bars, int, int]]:
    """The file's bars, batch by batch: (bars, first row, rows)."""
    for batch in read(path, fmt, BARS):
        v = batch.values
        yield Bars(v["symbol"], v["time"], v["open"], v["high"], v["low"], v["close"],
                   v["volume"], v["trades"]), batch.first_row, batch.rows  # fmt: skip


def where(path: Path, row: int) -> str:
    """A row's place as a person finds it: the line of a CSV (after its header), or the row."""
    return f"row {row + 1}" if _is_parquet(path) else f"line {row + 2}"


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _reader(path: Path, batch_rows: int) -> Iterator:
    """First the column names, then pyarrow tables of about `batch_rows` rows."""
    if not path.is_file():
        raise FileError(f"{path}: no such file")
    if _is_parquet(path):
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FileError(f"{path}: not a Parquet file ({exc})") from None
        yield parquet.schema_arrow.names
        for batch in parquet.iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch])
        return
    # Every column as text: the checks below parse each field and name a bad row, rather
    # than pyarrow guessing a type from the first block and failing later without a line.
    try:
        header = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16))
    except pa.ArrowInvalid as exc:
        raise FileError(f"{path}: not a CSV file ({exc})") from None
    names = header.schema.names
    header.close()
    yield names
    options = pacsv.ReadOptions(block_size=max(1 << 20, batch_rows * 64))
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in names})
    stream = pacsv.open_csv(path, read_options=options, convert_options=convert)
    done = 0
    while True:
        try:
            batch = stream.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:  # a row with too many or too few fields
            raise FileError(f"{path}: after line {done + 1}: {exc}") from None
        done += batch.num_rows
        for start in range(0, batch.num_rows, batch_rows):  # blocks hold about as many
            yield pa.Table.from_batches([batch.slice(start, batch_rows)])


class _Checker:
    """One table's fields, parsed and checked; a bad row raises FileError naming it."""

    def __init__(self, table: pa.Table, columns: dict[str, str | None], *, path: Path,
                 first_row: int) -> None:  # fmt: skip
        self.table, self.columns, self.path, self.first_row = table, columns, path, first_row

    def bad(self, mask: np.ndarray, what: str) -> None:
        if mask.any():
            row = self.first_row + int(np.argmax(mask))
            raise FileError(f"{self.path}: {where(self.path, row)}: {what}")

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(self.columns[name])

    def symbols(self, symbol: str | None) -> np.ndarray:
        if symbol is not None:
            return np.full(self.table.num_rows, symbol.upper(), dtype=object).astype(str)
        raw = self.column("symbol").to_numpy(zero_copy_only=False).astype(object)
        self.bad(np.array([v is None for v in raw]), "no symbol")
        symbols = np.array([str(v).strip().upper() for v in raw], dtype=object)
        self.bad(np.array([not TICKER_PATTERN.match(s) for s in symbols]), "not a ticker")
        return symbols.astype(str)

    def times(self, *, zone: ZoneInfo, unit: str | None) -> np.ndarray:
        ns, missing = _times(self.column("time"), zone=zone, unit=unit)
        self.bad(missing, "the time is missing or not a time")
        return ns

    def prices(self, name: str) -> np.ndarray:
        values = _numbers(self.column(name))
        self.bad(~np.isfinite(values) | (values <= 0), f"the {name} must be a positive number")
        return values

    def whole(self, name: str, *, low: int, optional: bool = False) -> np.ndarray:
        """Whole numbers from `low` to the largest a tick stores; NaN for an optional field
        the file lacks."""
        if self.columns[name] is None and optional:
            return np.full(self.table.num_rows, np.nan)
        values = _numbers(self.column(name))
        self.bad(~np.isfinite(values) | (values < low) | (values != np.floor(values))
                 | (values > _INT4_MAX), f"the {name} must be a whole number from {low} to "
                 f"{_INT4_MAX:,}")  # fmt: skip
        return values

    def text(self, name: str) -> np.ndarray | None:
        if self.columns[name] is None:
            return None
        column = self.column(name).cast(pa.string())
        return pc.fill_null(column, "").to_numpy(zero_copy_only=False).astype(str)


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """Floats, NaN where a value is missing or not a number."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.utf8_trim_whitespace(column)
        valid = pc.match_substring_regex(column, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
        column = pc.if_else(pc.fill_null(valid, False), column, None)
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _times(column: pa.ChunkedArray, *, zone: ZoneInfo, unit: str | None):
    """Unix ns of each row and where a time is missing. Text is ISO 8601 (a time without an
    offset is in `zone`) or a number; numbers are Unix time in `unit`, else in the unit
    their size says (`_unit_by_size`)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = pc.utf8_trim_whitespace(column)

        def all_match(pattern: str) -> bool:
            matched = pc.fill_null(pc.match_substring_regex(text, pattern), False)
            return pc.all(pc.or_(matched, pc.is_null(text))).as_py()

        if all_match(r"^\d+$"):
            column = text.cast(pa.int64())
        elif all_match(r"^\d+(\.\d+)?$"):
            column = text.cast(pa.float64())
        else:
            return _iso_times(text.to_numpy(zero_copy_only=False), zone)
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            column = pc.assume_timezone(column, zone.key, ambiguous="earliest",
                                        nonexistent="earliest")  # fmt: skip
        values = column.cast(pa.timestamp("ns", "UTC")).cast(pa.int64())
        missing = pc.is_null(values).to_numpy(zero_copy_only=False)
        return pc.fill_null(values, 0).to_numpy(zero_copy_only=False), missing
    if pa.types.is_integer(column.type):  # exact: ns since 1970 need 19 digits
        values = column.cast(pa.int64())
        numbers = pc.fill_null(values, 0).to_numpy(zero_copy_only=False)
        missing = pc.is_null(values).to_numpy(zero_copy_only=False) | (numbers < 0)
    else:
        numbers = column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        missing = ~np.isfinite(numbers) | (numbers < 0)
        numbers = np.where(missing, 0.0, numbers)
    scale = _SCALES[unit or _unit_by_size(float(numbers.max()) if len(numbers) else 0.0)]
    if numbers.dtype.kind == "i":
        return numbers * scale, missing
    return np.rint(numbers * scale).astype(np.int64), missing


def _unit_by_size(largest: float) -> str:
    """Unix time's unit from its size: from 1e17 ns, from 1e14 µs, from 1e11 ms, else s
    (as ms, 1e11 is 1973; as s, it is the year 5138)."""
    return "ns" if largest >= 1e17 else "us" if largest >= 1e14 else (
        "ms" if largest >= 1e11 else "s")  # fmt: skip


def _iso_times(values: np.ndarray, zone: ZoneInfo) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 text, a row at a time (Python's parser takes every offset form)."""
    out = np.zeros(len(values), dtype=np.int64)
    missing = np.zeros(len(values), dtype=bool)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for i, value in enumerate(values):
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except (AttributeError, TypeError, ValueError):
            missing[i] = True
            continue
        if at.tzinfo is None:
            at = at.replace(tzinfo=zone)
        delta = at - epoch
        out[i] = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    return out, missing
