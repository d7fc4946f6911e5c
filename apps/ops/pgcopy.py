"""PostgreSQL binary COPY payloads, built a column at a time with numpy.

Formatting thousands of rows as COPY text (a `repr` per float) cost the pipeline more than
PostgreSQL took to store them, and the server then parsed every number back. In the binary
format each row is fixed-width once its text lengths and nulls are known, so rows that share
them are one numpy record array: the pipeline's batches form a handful of such groups.
Row order is not kept across groups; callers that need an order send it as a column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from apps.ops.timestamps import POSTGRES_EPOCH, epoch_micros

Kind = Literal["text", "int4", "int8", "float8", "bool", "timestamptz"]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
TRAILER = b"\xff\xff"
UNIX_TO_POSTGRES_EPOCH_MICROS = epoch_micros(POSTGRES_EPOCH)

_DTYPES = {"int4": ">i4", "int8": ">i8", "float8": ">f8", "bool": "?", "timestamptz": ">i8"}
_WIDTHS = {"int4": 4, "int8": 8, "float8": 8, "bool": 1, "timestamptz": 8}


def binary_copy(columns: Sequence[tuple[Kind, Sequence | np.ndarray]]) -> bytes:
    """A whole `COPY ... FROM STDIN (FORMAT BINARY)` stream for the given columns.

    `text` takes strings, or a numpy bytes array (dtype `S`) of them already UTF-8
    encoded, which skips the per-row encoding (a long column of a few repeated values, as
    backfill's symbols, is then cheap); `timestamptz` takes integer microseconds since the
    Unix epoch; a NaN in a `float8` column is sent as NULL (the engine's "not warmed up yet"),
    and so is a NaN in an `int4` or `int8` column given as floats (a tick's missing quote).
    """
    count = len(columns[0][1])
    values: list[np.ndarray] = []
    shape_columns: list[np.ndarray] = []  # per row: text lengths and null flags
    nullable: list[bool] = []  # per column: has a null flag among the shape columns
    for kind, column in columns:
        if len(column) != count:
            raise ValueError("columns must have the same length")
        if kind == "text":
            if isinstance(column, np.ndarray) and column.dtype.kind == "S":
                values.append(column)
                shape_columns.append(np.char.str_len(column).astype(np.int64))
                nullable.append(True)
                continue
            encoded = np.array([v.encode() for v in column], dtype=object)
            values.append(encoded)
            shape_columns.append(np.fromiter(map(len, encoded), np.int64, count))
            nullable.append(True)
            continue
        array = np.asarray(column)
        if kind == "timestamptz":
            array = array.astype(np.int64) - UNIX_TO_POSTGRES_EPOCH_MICROS
        has_nulls = array.dtype.kind == "f"
        if has_nulls:
            missing = np.isnan(array)
            shape_columns.append(missing.astype(np.int64))
            if kind != "float8":  # integers given as floats: NaN is NULL, the rest exact
                array = np.where(missing, 0, array).astype(_DTYPES[kind])
        values.append(array)
        nullable.append(has_nulls)
    if not count:
        return SIGNATURE + TRAILER
    parts = [SIGNATURE]
    for shape, rows in _groups(shape_columns, count):
        parts.append(_group_bytes(columns, values, nullable, iter(shape), rows))
    parts.append(TRAILER)
    return b"".join(parts)


def _groups(shape_columns: list[np.ndarray], count: int):
    """(shape, rows) for each distinct row shape; one mixed-radix key per row keeps the
    grouping a 1-D `np.unique` (a 2-D one sorts rows lexicographically, 20 times slower)."""
    if all(column[0] == column[-1] and (column == column[0]).all() for column in shape_columns):
        yield [int(column[0]) for column in shape_columns], slice(None)
        return
    key = np.zeros(count, np.int64)
    radixes = [int(column.max()) + 1 for column in shape_columns]
    if math.prod(radixes) >= 2**63:
        raise ValueError("too many distinct text lengths and nulls for one COPY")
    for column, radix in zip(shape_columns, radixes, strict=True):
        key = key * radix + column
    keys, group_of = np.unique(key, return_inverse=True)
    for group, packed in enumerate(keys.tolist()):
        shape = []
        for radix in reversed(radixes):
            packed, digit = divmod(packed, radix)
            shape.append(digit)
        yield shape[::-1], np.flatnonzero(group_of == group)


def _group_bytes(columns, values, nullable, shape, rows) -> bytes:
    """Rows of one shape (the same text lengths and nulls) as one record array."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    fill: list[tuple[str, object]] = [("count", len(columns))]
    for i, ((kind, _), column, flagged) in enumerate(zip(columns, values, nullable, strict=True)):
        if kind == "text":
            width = next(shape)
            fields += [(f"l{i}", ">i4"), (f"v{i}", f"S{width}")]
            fill += [(f"l{i}", width), (f"v{i}", column[rows].astype(f"S{width}"))]
        elif flagged and next(shape):
            fields.append((f"l{i}", ">i4"))
            fill.append((f"l{i}", -1))
        else:
            fields += [(f"l{i}", ">i4"), (f"v{i}", _DTYPES[kind])]
            fill += [(f"l{i}", _WIDTHS[kind]), (f"v{i}", column[rows])]
    length = len(values[0][rows])
    records = np.empty(length, dtype=np.dtype(fields))
    for name, value in fill:
        records[name] = value
    return records.tobytes()
