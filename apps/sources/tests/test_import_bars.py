"""`manage.py import_bars` on real data: the daily GOOG (2004-2013) and hourly EURUSD
(2017-2018) files the `backtesting` package ships, imported as a user would import a file,
checked through the /api/v1 door against the files' own rows and TA-Lib."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import backtesting
import numpy as np
import pytest
import talib
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.market.models import Bar, Symbol

pytestmark = pytest.mark.django_db

DATA = Path(backtesting.__file__).parent / "test"


def rows_of(name: str) -> list[tuple]:
    """The file's rows as a reader of it sees them: (start, o, h, l, c, volume)."""
    with (DATA / name).open() as f:
        reader = csv.reader(f)
        next(reader)
        return [(datetime.fromisoformat(r[0]).replace(tzinfo=UTC), *map(float, r[1:5]),
                 int(float(r[5]))) for r in reader]  # fmt: skip


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("import_bars", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def bars(symbol: str, interval: str, start: datetime) -> list[tuple]:
    params = {"interval": interval, "start": start.isoformat(), "limit": 5000}
    answer = APIClient().get(f"/api/v1/stocks/{symbol}/bars", params)
    assert answer.status_code == 200, answer.content[:300]
    return [(datetime.fromisoformat(b["ts"]), b["open"], b["high"], b["low"], b["close"],
             b["volume"]) for b in answer.json()["results"]]  # fmt: skip


@pytest.mark.parametrize(("name", "symbol", "interval"),
                         [("GOOG.csv", "GOOG", "1d"), ("EURUSD.csv", "EURUSD", "1h")])  # fmt: skip
def test_a_real_file_is_its_bars_and_a_second_import_changes_nothing(
    db, fresh_state, name, symbol, interval
):
    expected = rows_of(name)
    said = run(str(DATA / name), "--symbol", symbol, "--create-symbols")
    assert f"{len(expected):,} rows, {len(expected):,} bars ({len(expected):,} new)" in said
    assert bars(symbol, interval, expected[0][0]) == expected
    assert Symbol.objects.get(ticker=symbol).source.name == "files"
    stored = Bar.objects.count()
    assert "(0 new)" in run(str(DATA / name), "--symbol", symbol)
    assert Bar.objects.count() == stored
    assert bars(symbol, interval, expected[0][0]) == expected


def test_indicators_over_the_imported_bars_equal_talib(db, fresh_state):
    run(str(DATA / "GOOG.csv"), "--symbol", "GOOG", "--create-symbols")
    closes = np.array([r[4] for r in rows_of("GOOG.csv")])
    history = APIClient().get("/api/v1/stocks/GOOG/indicators/history",
                              {"limit": 5000}).json()["results"]  # fmt: skip
    assert [h["price"] for h in history] == closes.tolist()
    reference = {
        "sma_20": talib.SMA(closes, 20), "ema_20": talib.EMA(closes, 20),
        "rsi_14": talib.RSI(closes, 14), "macd": talib.MACD(closes, 12, 26, 9)[0],
    }  # fmt: skip
    for name, values in reference.items():
        got = np.array([np.nan if h[name] is None else h[name] for h in history])
        assert np.allclose(got, values, rtol=0, atol=1e-9, equal_nan=True), name
    # The gateway's daily indicators run over the same bars.
    params = {"timespan": "day", "window": 50, "order": "asc", "limit": 5000}
    sma = APIClient().get("/v1/indicators/sma/GOOG", params).json()
    assert [v["value"] for v in sma["results"]["values"]] == pytest.approx(
        talib.SMA(closes, 50)[49:].tolist(), abs=1e-9
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (",Open,High,Low,Close,Volume\n2020-01-02,10,9,8,9.5,100\n", "line 2: the bar's low"),
        (",Open,High,Low,Close,Volume\n2020-01-02,10,11,8,9.5,0\n", "line 2: the volume"),
        (",Open,High,Low,Close\n2020-01-02,10,11,8,9.5\n", "no column for volume"),
        ("Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,8,x,5\n", "line 2: the close"),
    ],
)
def test_a_bad_bar_is_a_clear_error(db, tmp_path, content, message):
    path = tmp_path / "bars.csv"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run(str(path), "--symbol", "XYZ", "--create-symbols")
    assert not Bar.objects.exists()
