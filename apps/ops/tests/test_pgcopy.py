"""Binary COPY payloads, loaded by the real PostgreSQL and read back."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from apps.ops.pgcopy import binary_copy

pytestmark = pytest.mark.django_db

_TABLE = """
CREATE TEMP TABLE copied (
    n integer, name varchar(32), at timestamptz, x float8, y float8, big bigint, flag boolean
)
"""
_COLUMNS = "n, name, at, x, y, big, flag"


def _load(columns) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(_TABLE)
        with cursor.cursor.copy(f"COPY copied ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(binary_copy(columns))
        cursor.execute("SELECT n, name, at, x, y, big, flag FROM copied ORDER BY n")
        return cursor.fetchall()


def test_rows_of_every_shape_arrive_as_sent():
    names = ["A", "BRK.B", "GOOGL", "Zürich", "A", "MSFT", "X" * 32]
    count = len(names)
    start = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    stamps = [start + timedelta(microseconds=123_457 * i) for i in range(count)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = [(ts - epoch) // timedelta(microseconds=1) for ts in stamps]
    x = np.array([1.5, math.nan, -0.0, 1e300, math.nan, 2.0 / 3.0, 5e-324])
    y = np.array([math.nan, math.nan, 3.25, 4.0, 100.0, math.nan, -7.0])
    big = np.array([0, -1, 2**62, -(2**62), 7, 8, 9], dtype=np.int64)
    flags = np.array([True, False, True, True, False, False, True])
    order = np.arange(count, dtype=np.int32)

    rows = _load(
        [
            ("int4", order),
            ("text", names),
            ("timestamptz", micros),
            ("float8", x),
            ("float8", y),
            ("int8", big),
            ("bool", flags),
        ]
    )

    def nullable(v: float) -> float | None:
        return None if math.isnan(v) else v

    assert rows == [
        (i, names[i], stamps[i], nullable(x[i]), nullable(y[i]), int(big[i]), bool(flags[i]))
        for i in range(count)
    ]


def test_no_rows_is_a_valid_copy():
    empty = np.array([], dtype=np.float64)
    columns = [("int4", []), ("text", []), ("timestamptz", []), ("float8", empty),
               ("float8", empty), ("int8", []), ("bool", [])]  # fmt: skip
    assert _load(columns) == []


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="same length"):
        binary_copy([("int4", [1, 2]), ("text", ["A"])])


def test_text_already_encoded_as_a_bytes_array_is_the_same_copy():
    names = ["A", "BRK.B", "GOOGL", "Zürich", "A", "MSFT", "X" * 32]
    n = np.arange(len(names), dtype=np.int32)
    as_bytes = np.array([name.encode() for name in names])

    assert binary_copy([("int4", n), ("text", as_bytes)]) == binary_copy(
        [("int4", n), ("text", names)]
    )


def test_integers_given_as_floats_arrive_exact_with_nan_as_null():
    order = np.array([0.0, 1.0, 2.0, 3.0])
    sizes = np.array([100.0, math.nan, 2.0**31 - 1, 7.0])  # a tick's quote sizes, one missing
    big = np.array([math.nan, 2.0**53 + 2, -3.0, 0.0])
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE sized (n integer, size integer, big bigint)")
        with cursor.cursor.copy("COPY sized FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(binary_copy([("int4", order), ("int4", sizes), ("int8", big)]))
        cursor.execute("SELECT n, size, big FROM sized ORDER BY n")
        rows = cursor.fetchall()

    assert rows == [(0, 100, None), (1, None, 2**53 + 2), (2, 2147483647, -3), (3, 7, 0)]
