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

FIELDS = ("symbol", "time", "price", "size", "id")
# Column names each field is looked for under, in order, case-insensitively. The first
# names are Polygon/Massive's flat files (us_stocks_sip/trades_v1), then Alpaca's trade
# keys (t, p, s, i), then common ones.
ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("ticker", "symbol", "sym"),
    "time": ("sip_timestamp", "timestamp", "t", "time", "datetime", "date", "ts"),
    "price": ("price", "p"),
    "size": ("size", "volume", "quantity", "qty", "s"),
    "id": ("id", "trade_id", "i"),
}
BATCH_ROWS = 200_000
_SCALES = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}  # to ns
_UNITS = tuple(_SCALES)


class FileError(ValueError):
    """A file that cannot be imported as given; the message says where and why."""


@dataclass(frozen=True)
class Columns:
    """Which column holds each field; `symbol` may be None when the caller names one symbol
    for the whole file, `id` when the file has no trade ids."""

    symbol: str | None
    time: str
    price: str
    size: str
    id: str | None


def resolve_columns(names: list[str], given: dict[str, str], *, one_symbol: bool) -> Columns:
    """The columns of a file with header `names`: the caller's, else the first alias found."""
    by_lower = {name.lower(): name for name in names}
    found: dict[str, str | None] = {}
    for wanted in FIELDS:
        if wanted in given:
            if given[wanted] not in names:
                raise FileError(f"no column {given[wanted]!r} for {wanted} (columns: {names})")
            found[wanted] = given[wanted]
            continue
        taken = set(found.values())
        found[wanted] = next(
            (by_lower[a] for a in ALIASES[wanted] if a in by_lower and by_lower[a] not in taken),
            None,
        )
    if one_symbol:
        found["symbol"] = None
    required = ("time", "price", "size") if one_symbol else ("symbol", "time", "price", "size")
    missing = [f for f in required if found[f] is None]
    if missing:
        raise FileError(
            f"no column for {', '.join(missing)} (columns: {names}); name them with "
            "--columns field=column, or give --symbol for a file of one symbol"
        )
    return Columns(**found)


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
    """Trades of consecutive rows; `first_row` is the 0-based row of the first."""

    trades: Trades
    first_row: int
    rows: int


def read_trades(path: Path, fmt: FileFormat) -> Iterator[Batch]:
    """The file's trades, batch by batch, each row checked."""
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
    wanted = resolve_columns(names, fmt.columns, one_symbol=fmt.symbol is not None)
    done = 0
    for table in reader:
        yield Batch(
            _trades(table, wanted, symbol=fmt.symbol, zone=zone, unit=fmt.time_unit,
                    path=path, first_row=done),
            done,
            table.num_rows,
        )  # fmt: skip
        done += table.num_rows


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


def _trades(
    table: pa.Table,
    wanted: Columns,
    *,
    symbol: str | None,
    zone: ZoneInfo,
    unit: str | None,
    path: Path,
    first_row: int,
) -> Trades:
    n = table.num_rows

    def bad(mask: np.ndarray, what: str) -> None:
        if mask.any():
            row = first_row + int(np.argmax(mask))
            raise FileError(f"{path}: {where(path, row)}: {what}")

    if symbol is not None:
        symbols = np.full(n, symbol.upper(), dtype=object)
    else:
        raw = table.column(wanted.symbol).to_numpy(zero_copy_only=False).astype(object)
        bad(np.array([v is None for v in raw]), "no symbol")
        symbols = np.array([str(v).strip().upper() for v in raw], dtype=object)
        bad(np.array([not TICKER_PATTERN.match(s) for s in symbols]), "not a ticker")
    price = _numbers(table.column(wanted.price))
    bad(~np.isfinite(price) | (price <= 0), "the price must be a positive number")
    size = _numbers(table.column(wanted.size))
    bad(~np.isfinite(size) | (size <= 0) | (size != np.floor(size)) | (size > 2**31 - 1),
        "the size must be a positive whole number")  # fmt: skip
    ns, missing = _times(table.column(wanted.time), zone=zone, unit=unit)
    bad(missing, "the time is missing or not a time")
    ids = None
    if wanted.id is not None:
        column = table.column(wanted.id).cast(pa.string())
        ids = pc.fill_null(column, "").to_numpy(zero_copy_only=False).astype(str)
    return Trades(symbols.astype(str), ns, price, size.astype(np.int64), ids)


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
