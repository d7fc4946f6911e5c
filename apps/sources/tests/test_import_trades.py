"""`manage.py import_trades`: recorded trades in, as a user runs it, checked through the
/api/v1 door. Expected ticks and bars are worked out by hand from the rows written here."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import talib
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.market.models import Symbol, Tick
from apps.market.selectors import active_symbols_for_shard
from apps.sources import files, services

pytestmark = pytest.mark.django_db

T0 = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(hours=2)
POLYGON_HEADER = ["ticker", "conditions", "correction", "exchange", "id",
                  "participant_timestamp", "price", "sequence_number", "sip_timestamp", "size",
                  "tape", "trf_id", "trf_timestamp"]  # fmt: skip


def ns(seconds: float) -> int:
    return int((T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9 + round(
        seconds * 1e9
    )


# (ticker, seconds after T0, price, size, id): two minutes of AAPL and MSFT, in the order of
# Polygon's flat files (by ticker, then time). Slots of 1 s.
TRADES = [
    ("AAPL", 0.10, 190.00, 100, "1"),
    ("AAPL", 0.40, 190.50, 50, "2"),
    ("AAPL", 0.40, 190.50, 50, "2"),  # the same trade again: counted once
    ("AAPL", 0.90, 189.75, 10, "3"),
    ("AAPL", 1.20, 189.90, 30, "4"),
    ("AAPL", 59.99, 191.00, 5, "5"),
    ("AAPL", 60.00, 191.25, 7, "6"),
    ("AAPL", 60.50, 190.80, 8, "7"),
    ("MSFT", 30.00, 410.00, 3, "1"),
]
# Worked by hand: per (ticker, slot start), the tick (last price, summed size).
TICKS = {
    "AAPL": [(0, 189.75, 160), (1, 189.90, 30), (59, 191.00, 5), (60, 190.80, 15)],
    "MSFT": [(30, 410.00, 3)],
}
# The 1-minute bars: (minute, open, high, low, close, volume, trades).
BARS = {
    "AAPL": [
        (0, 190.00, 191.00, 189.75, 191.00, 195, 5),
        (60, 191.25, 191.25, 190.80, 190.80, 15, 2),
    ],
    "MSFT": [(0, 410.00, 410.00, 410.00, 410.00, 3, 1)],
}


def polygon_csv(path: Path, rows=TRADES) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(POLYGON_HEADER)
        for ticker, at, price, size, trade_id in rows:
            out.writerow([ticker, "[12, 37]", "", 11, trade_id, ns(at) - 150, price, 1, ns(at),
                          size, 3, "", ""])  # fmt: skip
    return path


def api(path: str, **params) -> dict:
    answer = APIClient().get(f"/api/v1/{path}", params)
    assert answer.status_code == 200, answer.content[:300]
    return answer.json()


def stored_ticks(ticker: str) -> list[tuple]:
    history = api(f"stocks/{ticker}/history", limit=1000)["results"]
    return [(datetime.fromisoformat(h["ts"]), h["price"], h["size"]) for h in history]


def stored_bars(ticker: str) -> list[tuple]:
    bars = api(f"stocks/{ticker}/bars", interval="1m", start=T0.isoformat())["results"]
    return [(datetime.fromisoformat(b["ts"]), b["open"], b["high"], b["low"], b["close"],
             b["volume"], b["trades"]) for b in bars]  # fmt: skip


def expected_ticks(ticker: str) -> list[tuple]:
    return [(T0 + timedelta(seconds=s), p, z) for s, p, z in TICKS[ticker]]


def expected_bars(ticker: str) -> list[tuple]:
    return [(T0 + timedelta(seconds=m), *rest) for m, *rest in BARS[ticker]]


def run(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_trades", str(path), "--interval", "1", *args, stdout=out,
                 stderr=io.StringIO())  # fmt: skip
    return out.getvalue()


def test_a_polygon_flat_file_becomes_ticks_and_exact_bars(market, fresh_state, tmp_path):
    said = run(polygon_csv(tmp_path / "2026-12-07.csv"))
    assert "9 rows, 5 ticks of 1 s (5 new) for AAPL, MSFT" in said
    for ticker in ("AAPL", "MSFT"):
        assert stored_ticks(ticker) == expected_ticks(ticker)
        assert stored_bars(ticker) == expected_bars(ticker)
    # The conflated tick keeps its slot's first, highest and lowest prices and count.
    first = Tick.objects.get(symbol_id="AAPL", ts=T0)
    assert (first.open, first.high, first.low, first.trades) == (190.0, 190.5, 189.75, 3)


def test_a_second_run_stores_nothing_and_a_parquet_file_reads_the_same(market, fresh_state,
                                                                        tmp_path):  # fmt: skip
    table = pa.table({
        "ticker": [t[0] for t in TRADES], "sip_timestamp": [ns(t[1]) for t in TRADES],
        "price": [t[2] for t in TRADES], "size": [t[3] for t in TRADES],
        "id": [t[4] for t in TRADES],
    })  # fmt: skip
    pq.write_table(table, tmp_path / "trades.parquet")
    assert "(5 new)" in run(tmp_path / "trades.parquet")
    assert "(0 new)" in run(polygon_csv(tmp_path / "trades.csv"))  # the same trades as CSV
    assert "(0 new)" in run(tmp_path / "trades.parquet")
    assert Tick.objects.count() == 5
    assert stored_bars("AAPL") == expected_bars("AAPL")


def test_a_bad_row_names_its_line_keeps_what_was_stored_and_a_rerun_resumes(
    market, fresh_state, tmp_path
):
    rows = [*TRADES[:6], ("AAPL", 60.0, -1.0, 7, "6"), *TRADES[7:]]
    path = polygon_csv(tmp_path / "bad.csv", rows)
    fmt = files.FileFormat(batch_rows=3)  # the bad row is in the third batch
    with pytest.raises(
        files.FileError, match=r"bad\.csv: line 8: the price must be a positive number"
    ):
        services.import_trades(services.Reading(path, fmt), interval=1.0)
    kept = stored_ticks("AAPL")
    assert kept == expected_ticks("AAPL")[:2]  # slots passed before the bad batch
    polygon_csv(path)  # the file fixed
    services.import_trades(services.Reading(path, fmt), interval=1.0)
    assert stored_ticks("AAPL") == expected_ticks("AAPL")
    assert stored_bars("AAPL") == expected_bars("AAPL")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("ticker,sip_timestamp,price,size\nAAPL,1,2\n", "line 2|Expected 4 columns"),
        ("ticker,sip_timestamp,price\nAAPL,1,2\n", "no column for size"),
        ("ticker,sip_timestamp,price,size\nAAPL,noon,190,1\n", "line 2: the time"),
        ("ticker,sip_timestamp,price,size\nAAPL,1,190,1.5\n", "line 2: the size"),
        ("ticker,sip_timestamp,price,size\nAAPL,1,190,1\naa pl,1,190,1\n", "line 3: not a ticker"),
        ("ticker,sip_timestamp,price,size\nNOPE,1,190,1\n", "line 2: unknown symbol NOPE"),
    ],
)
def test_bad_files_are_clear_errors_and_store_nothing(market, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run(path)
    assert not Tick.objects.exists()


def test_trades_out_of_order_are_an_error_not_a_lost_trade(market, fresh_state, tmp_path):
    rows = [TRADES[0], TRADES[4], TRADES[5], TRADES[3]]  # 0.9 s after 59.99 s
    path = polygon_csv(tmp_path / "unsorted.csv", rows)
    with pytest.raises(files.FileError, match="line 5: a trade of AAPL earlier"):
        services.import_trades(services.Reading(path, files.FileFormat(batch_rows=3)), interval=1.0)


def test_new_symbols_are_created_under_the_files_source_and_never_simulated(
    market, fresh_state, tmp_path
):
    # A file of one symbol, local New York times without an offset, its own column names.
    path = tmp_path / "ibm.csv"
    path.write_text(
        "When,Last,Qty\n"
        "2026-07-01 09:30:00.2,120.5,100\n"
        "2026-07-01 09:30:00.7,121.0,200\n"
        "2026-07-01 09:30:02.0,120.0,300\n"
    )
    said = run(path, "--symbol", "ibm", "--tz", "America/New_York", "--create-symbols",
               "--columns", "time=When,price=Last,size=Qty")  # fmt: skip
    assert "created IBM" in said
    ibm = Symbol.objects.get(ticker="IBM")
    assert ibm.source.name == "files"
    assert ibm not in active_symbols_for_shard(shard=0, shards=1)
    open_utc = datetime(2026, 7, 1, 13, 30, tzinfo=UTC)  # 9:30 in New York in July (EDT)
    assert stored_ticks("IBM") == [(open_utc, 121.0, 300), (open_utc + timedelta(seconds=2),
                                                            120.0, 300)]  # fmt: skip
    price = api("stocks/IBM/price")  # the import's newest tick is IBM's price
    assert (price["price"], price["ts"]) == (120.0, "2026-07-01T13:30:02Z")


def test_history_older_than_the_live_price_leaves_the_price_alone(market, fresh_state,
                                                                    tmp_path):  # fmt: skip
    from apps.ingest.pipeline import TickBatch, ingest

    ingest(TickBatch.from_rows([("AAPL", datetime.now(UTC).replace(microsecond=0), 200.0, 1)]))
    before = api("stocks/AAPL/price")
    run(polygon_csv(tmp_path / "old.csv"))
    assert api("stocks/AAPL/price") == before
    assert len(stored_ticks("AAPL")) == 5


def test_indicators_over_imported_ticks_equal_talib(market, fresh_state, tmp_path):
    rng = np.random.default_rng(7)
    prices = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.002, 120))), 2)
    rows = [("GOOGL", 2.0 * i + 0.5, float(p), 10 + i, str(i)) for i, p in enumerate(prices)]
    run(polygon_csv(tmp_path / "googl.csv", rows))
    history = api("stocks/GOOGL/indicators/history", limit=1000)["results"]
    assert [h["price"] for h in history] == prices.tolist()
    for name, reference in (("sma_20", talib.SMA(prices, 20)), ("ema_20", talib.EMA(prices, 20)),
                            ("rsi_14", talib.RSI(prices, 14))):  # fmt: skip
        got = np.array([np.nan if h[name] is None else h[name] for h in history])
        assert np.allclose(got, reference, rtol=0, atol=1e-9, equal_nan=True), name


def test_longer_bars_already_rolled_up_take_in_the_imported_history(market, fresh_state,
                                                                     tmp_path):  # fmt: skip
    from apps.ingest.pipeline import TickBatch, ingest
    from apps.market.rollup import rollup_closed_buckets

    # A live tick an hour after the file's trades, its hour rolled up as the periodic task
    # does: the 1h bars are then read from the stored buckets up to that hour.
    later = T0 + timedelta(hours=1, minutes=5)
    ingest(TickBatch.from_rows([("AAPL", later, 200.0, 1)]))
    rollup_closed_buckets()
    run(polygon_csv(tmp_path / "trades.csv"))
    hour_of_t0 = T0.replace(minute=0)
    hours = api("stocks/AAPL/bars", interval="1h", start=hour_of_t0.isoformat())["results"]
    mine = [h for h in hours if datetime.fromisoformat(h["ts"]) == hour_of_t0]
    assert [(h["open"], h["high"], h["low"], h["close"], h["volume"], h["trades"])
            for h in mine] == [(190.00, 191.25, 189.75, 190.80, 210, 7)]  # fmt: skip
