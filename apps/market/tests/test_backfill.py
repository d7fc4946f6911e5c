"""backfill: simulated 1-minute history that ends where the live data begins."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest
from apps.market import backfill, timescale
from apps.market.constants import BAR_INTERVALS, CONTINUOUS_AGGREGATE_VIEWS
from apps.market.models import Bar, Symbol, Tick
from apps.market.selectors import bars_for_range
from apps.ops.timestamps import floor_to

NOW = datetime(2026, 3, 2, 14, 30, 41, tzinfo=UTC)  # the backfill floors it to 14:30
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
SUBSTEPS = backfill.SUBSTEPS_PER_MINUTE
LIVE_TRADES_PER_MINUTE = 120  # one tick every 0.5 s, the default TICK_INTERVAL


def bars(symbol: str) -> list[tuple]:
    return list(
        Bar.objects.filter(symbol_id=symbol, interval="1m")
        .order_by("ts")
        .values_list("ts", "open", "high", "low", "close", "volume", "trades")
    )


def run(symbols, *, days: int = 1, seed: int = 7, now: datetime = NOW, **kwargs):
    return backfill.backfill(symbols=symbols, days=days, seed=seed, now=now, **kwargs)


@pytest.fixture
def live(market, redis_client):
    """AAPL went live at 14:30:15 with ticks through the pipeline (ticks and a live bar)."""
    store.forget()
    first = NOW.replace(second=15)
    ingest(
        TickBatch.from_rows(
            [("AAPL", first, 231.17, 100), ("AAPL", first + timedelta(seconds=20), 231.4, 300)]
        )
    )
    yield market
    store.forget()


def test_every_minute_of_the_window_gets_a_bar_and_none_at_or_after_its_end(market):
    result = run(market, days=2)

    end = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    minutes = [end - 2 * 1440 * MINUTE + i * MINUTE for i in range(2 * 1440)]
    assert result.rows == 5 * 2 * 1440
    for symbol in market:
        assert [b[0] for b in bars(symbol.ticker)] == minutes
    assert not Bar.objects.filter(ts__gte=end).exists()
    assert (result.start, result.end) == (end - timedelta(days=2), end)


def test_bars_are_consistent_candles_built_from_the_sub_steps(market):
    run(market[:2])

    for ticker in ("AAPL", "AMZN"):
        rows = np.array([b[1:] for b in bars(ticker)], dtype=np.float64)
        open_, high, low, close, volume, trades = rows.T
        assert len(rows) == 1440
        assert (low <= np.minimum(open_, close)).all()
        assert (np.maximum(open_, close) <= high).all()
        assert (low < high).all()  # 12 prices a minute, not one
        assert (volume > 0).all()
        assert (trades == LIVE_TRADES_PER_MINUTE).all()
        # One path: each bar opens one 5-second step after the previous close.
        assert np.abs(np.log(open_[1:] / close[:-1])).max() < 0.01


def test_without_live_data_the_history_ends_at_the_symbols_start_price(market):
    run(market)

    for symbol in market:
        assert bars(symbol.ticker)[-1][4] == symbol.start_price


def test_the_last_close_is_the_first_live_price_and_live_bars_are_untouched(live):
    live_bar = bars("AAPL")
    assert [b[0] for b in live_bar] == [datetime(2026, 3, 2, 14, 30, tzinfo=UTC)]

    result = run(live, now=NOW + timedelta(hours=3))  # live for 3 hours: 21 hours to add

    history = bars("AAPL")
    assert history[-1] == live_bar[0]
    last_backfilled = history[-2]
    assert last_backfilled[0] == live_bar[0][0] - MINUTE
    assert last_backfilled[4] == 231.17  # the earliest tick's price, exactly
    assert live_bar[0][1] == 231.17  # which the live bar opens with: no gap
    assert len(history) == 1 + 21 * 60
    assert history[0][0] == NOW.replace(second=0) + timedelta(hours=3) - timedelta(days=1)
    assert Tick.objects.filter(symbol_id="AAPL").count() == 2
    aapl = next(w for w in result.windows if w.symbol.ticker == "AAPL")
    assert (aapl.end, aapl.anchor) == (live_bar[0][0], 231.17)


def test_with_bars_but_no_ticks_the_history_joins_the_earliest_bar(market):
    # Ticks are kept 7 days, bars longer: the earliest live bar is then the join point.
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    Bar.objects.create(symbol=market[0], interval="1m", ts=start, open=199.5, high=201.0,
                       low=199.0, close=200.0, volume=500, trades=40)  # fmt: skip
    Tick.objects.create(symbol=market[0], ts=start + timedelta(days=1), price=205.0, size=10)

    run(market[:1], days=2)

    history = bars("AAPL")
    assert history[-2][0] == start - MINUTE
    assert history[-2][4] == 199.5
    assert history[-1][1:] == (199.5, 201.0, 199.0, 200.0, 500, 40)


def test_running_it_again_writes_nothing_and_changes_nothing(live):
    first = run(live)
    before = {s.ticker: bars(s.ticker) for s in live}

    second = run(live, now=NOW + timedelta(minutes=5))

    assert first.rows == 5 * 1440
    assert second.rows == 0
    assert {s.ticker: bars(s.ticker) for s in live} == before


def test_writing_bars_that_exist_keeps_the_stored_ones(market):
    windows = backfill.plan(symbols=market[:2], days=1, now=NOW)
    chunk = next(backfill.simulate(windows=windows, seed=7))
    assert backfill.write_bars(chunk) == 2 * 1440
    stored = bars("AAPL")

    doubled = replace(chunk, open=chunk.open * 2, high=chunk.high * 2, close=chunk.close * 2)
    assert backfill.write_bars(doubled) == 0
    assert bars("AAPL") == stored

    gone = stored[1000][0]
    Bar.objects.filter(symbol_id="AAPL", ts__gte=gone).delete()  # some stored, some not
    assert backfill.write_bars(doubled) == 440
    again = bars("AAPL")
    assert again[:1000] == stored[:1000]
    assert again[1000][1] == 2 * stored[1000][1]
    assert len(again) == 1440


def test_the_same_seed_gives_the_same_history_however_it_is_chunked(market):
    windows = backfill.plan(symbols=market, days=2, now=NOW)

    def closes(seed: int, chunk_rows: int) -> np.ndarray:
        chunks = list(backfill.simulate(windows=windows, seed=seed, chunk_rows=chunk_rows))
        return np.concatenate([c.close for c in reversed(chunks)], axis=1)

    whole = closes(7, backfill.CHUNK_ROWS)
    np.testing.assert_allclose(closes(7, 600), whole, rtol=1e-12)  # 2-hour chunks
    assert not np.allclose(closes(8, backfill.CHUNK_ROWS), whole)


def test_hourly_candles_come_from_the_backfilled_minutes(market):
    run(market[:1], days=2, now=datetime.now(UTC))

    hours = bars_for_range(symbol="AAPL", interval="1h", limit=24)

    assert len(hours) == 24
    assert all(b.ts - a.ts == timedelta(hours=1) for a, b in pairwise(hours))
    minutes = {b[0]: b for b in bars("AAPL")}
    for candle in hours[:-1]:  # the newest hour is still open
        inside = [minutes[candle.ts + i * MINUTE] for i in range(60)]
        assert candle.open == inside[0][1]
        assert candle.high == max(m[2] for m in inside)
        assert candle.low == min(m[3] for m in inside)
        assert candle.close == inside[-1][4]
        assert candle.volume == sum(m[5] for m in inside)
        assert candle.trades == 60 * LIVE_TRADES_PER_MINUTE


def test_the_command_backfills_the_active_symbols_and_says_what_it_did(market, capsys):
    Symbol.objects.filter(ticker="TSLA").update(active=False)

    call_command("backfill", "--days", "1", "--seed", "3")

    out = capsys.readouterr().out.strip()
    assert out.startswith("backfill: 5,760 1-minute bars written for AAPL, AMZN, GOOGL, MSFT")
    assert out.endswith(" s")
    assert "\n" not in out
    assert not Bar.objects.filter(symbol_id="TSLA").exists()
    assert Bar.objects.filter(symbol_id="MSFT", interval="1m").count() == 1440

    call_command("backfill", "--days", "1", "--symbols", "msft,TSLA")

    out = capsys.readouterr().out
    assert "1,440 1-minute bars written for MSFT, TSLA" in out  # MSFT had its day already


@pytest.mark.parametrize("days", ["0", "-3", "3651"])
def test_the_command_rejects_days_out_of_range(market, days):
    with pytest.raises(CommandError, match="--days must be from 1 to 3650"):
        call_command("backfill", "--days", days)
    assert not Bar.objects.exists()


def test_the_command_names_the_unknown_symbols(market):
    with pytest.raises(CommandError, match="unknown symbols: NOPE, ZZZ"):
        call_command("backfill", "--days", "1", "--symbols", "AAPL,nope,ZZZ")
    assert not Bar.objects.exists()


def test_the_command_needs_a_symbol(db):
    with pytest.raises(CommandError, match="no active symbols"):
        call_command("backfill", "--days", "1")


def test_plain_postgresql_rolls_up_the_backfilled_buckets(market):
    assert not timescale.installed(connection)
    aapl = market[0]
    assert run([aapl]).refreshed == ["15m", "1d", "1h", "5m"]
    minutes = list(Bar.objects.filter(symbol=aapl, interval="1m").order_by("ts"))
    hours = list(Bar.objects.filter(symbol=aapl, interval="1h").order_by("ts"))
    # Every closed hour is stored, each from its own sixty minutes; the open one is not.
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    expected_hours = sorted({m.ts.replace(minute=0) for m in minutes} - {now_hour})
    assert [h.ts for h in hours] == expected_hours
    first = hours[0]
    inside = [m for m in minutes if first.ts <= m.ts < first.ts + timedelta(hours=1)]
    assert (first.open, first.close) == (inside[0].open, inside[-1].close)
    assert first.high == max(m.high for m in inside)
    assert first.volume == sum(m.volume for m in inside)


def rows(sql: str, params: dict | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


_BY_DATE_BIN = """
SELECT date_bin(%(step)s, ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       (array_agg(open ORDER BY ts))[1], max(high), min(low),
       (array_agg(close ORDER BY ts DESC))[1], sum(volume), sum(trades)
FROM market_bar WHERE symbol_id = 'AAPL' AND interval = '1m' AND ts < %(before)s
GROUP BY bucket ORDER BY bucket
"""
_FROM_VIEW = """
SELECT ts, open, high, low, close, volume, trades FROM {view}
WHERE symbol_id = 'AAPL' AND ts < %(before)s ORDER BY ts
"""


@pytest.mark.timescale
def test_timescale_aggregates_show_the_backfilled_history(timescale_db):
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    live = hour - timedelta(hours=2)
    Bar.objects.create(symbol_id="AAPL", interval="1m", ts=live, open=230.0, high=231.0,
                       low=229.5, close=230.5, volume=900, trades=60)  # fmt: skip
    # The aggregates are materialised up to their open buckets, as their policy keeps them:
    # history written below that shows in them only once they are refreshed there.
    with connection.cursor() as cursor:
        for view in CONTINUOUS_AGGREGATE_VIEWS.values():
            cursor.execute(
                "CALL refresh_continuous_aggregate(%s::regclass, NULL, %s)", [view, hour]
            )

    result = backfill.backfill(symbols=[Symbol.objects.get(ticker="AAPL")], days=1, seed=7)

    assert result.rows == (live - (floor_to(now, MINUTE) - timedelta(days=1))) // MINUTE
    assert bars("AAPL")[-2][4] == 230.0
    assert result.refreshed == sorted(CONTINUOUS_AGGREGATE_VIEWS.values())
    for interval, before in (("1h", hour), ("1d", day)):
        view = CONTINUOUS_AGGREGATE_VIEWS[interval]
        expected = rows(_BY_DATE_BIN, {"step": BAR_INTERVALS[interval], "before": before})
        assert rows(_FROM_VIEW.format(view=view), {"before": before}) == expected


def test_a_run_stopped_half_way_is_finished_by_the_next_one(market, monkeypatch):
    write_bars = backfill.write_bars
    calls = []

    def fail_on_the_third_chunk(chunk, payload=None):
        calls.append(chunk)
        if len(calls) == 3:
            raise RuntimeError("database went away")
        return write_bars(chunk, payload)

    monkeypatch.setattr(backfill, "write_bars", fail_on_the_third_chunk)
    with pytest.raises(RuntimeError, match="database went away"):
        run(market, chunk_rows=600)  # 2-hour chunks, newest first
    assert not any(t.name == "backfill-simulate" for t in threading.enumerate())
    end = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert bars("AAPL")[0][0] == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 2 chunks stored
    assert bars("AAPL")[-1][0] == end - MINUTE

    monkeypatch.setattr(backfill, "write_bars", write_bars)
    result = run(market, now=NOW + timedelta(minutes=1))

    for symbol in market:
        history = bars(symbol.ticker)
        assert [b[0] for b in history] == [end - timedelta(days=1) + (i + 1) * MINUTE
                                           for i in range(1439)]  # fmt: skip
        assert history[-1][4] == symbol.start_price
    assert result.rows == 5 * (1439 - 210)


def test_backfilled_minutes_have_the_statistics_of_live_minutes(market, settings):
    """The live market: one tick per symbol every TICK_INTERVAL, each a trade of the
    simulator's size. A backfilled minute must look the same, or the first live bars
    after a backfill read as a volume spike."""
    from apps.market.simulator import SimulatorParams, step

    settings.TICK_INTERVAL = 0.5
    symbols = market[:2]
    run(symbols, days=1)
    params = [SimulatorParams(s.ticker, s.drift, s.volatility, s.jump_rate) for s in symbols]
    prices, per_tick = np.array([s.start_price for s in symbols]), []
    for slot in range(120 * 60):  # an hour of live ticks
        prices, sizes = step(params=params, last_prices=prices, slot=slot, seed=3, interval=0.5)
        per_tick.append(sizes)
    live = np.array(per_tick).reshape(60, 120, len(symbols)).sum(axis=1).ravel()

    history = np.array([b[5:] for s in symbols for b in bars(s.ticker)], dtype=np.float64)
    volume, trades = history.T
    assert (trades == 120).all()  # a tick every 0.5 s
    print(f"volume a minute: live {live.mean():.0f} ± {live.std():.0f}, "
          f"backfill {volume.mean():.0f} ± {volume.std():.0f}")  # fmt: skip
    assert volume.mean() == pytest.approx(live.mean(), rel=0.05)
    assert volume.std() == pytest.approx(live.std(), rel=0.25)


def test_the_days_live_volume_and_open_are_its_1d_bars_after_a_backfill(market, redis_client):
    """AAPL goes live now; the backfill then fills the day before it. The live panel's
    volume (UTC day) and the session's open must be the day's 1d bar's, with the worker
    that kept the state running all along. (Real time: the day's bar must still be open.)"""
    from apps.market.selectors import hot_states

    store.forget()
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    aapl = Symbol.objects.get(ticker="AAPL")

    def day_and_hot():
        day = bars_for_range(symbol="AAPL", interval="1d", limit=1)[-1]
        return day, hot_states(["AAPL"])["AAPL"]

    first = [("AAPL", now, 231.17, 100), ("AAPL", now + 2 * SECOND, 231.4, 300)]
    ingest(TickBatch.from_rows(first))
    day, hot = day_and_hot()
    assert (hot["volume"], hot["session_open"]) == (day.volume, day.open) == (400, 231.17)

    run([aapl], days=1, now=now)
    ingest(TickBatch.from_rows([("AAPL", now + 4 * SECOND, 231.6, 200)]))

    day, hot = day_and_hot()
    if now - floor_to(now, timedelta(days=1)) > MINUTE:  # the day had minutes to backfill
        assert day.volume > 400 + 200
    assert hot["volume"] == day.volume
    assert hot["session_open"] == day.open
    # `change` is against the previous day's close: its 1d bar's, backfilled too.
    days = bars_for_range(symbol="AAPL", interval="1d", limit=2)
    assert len(days) == 2
    assert hot["prev_close"] == days[0].close
    assert hot["change"] == pytest.approx(231.6 - days[0].close)
    store.forget()


def test_progress_is_reported_after_every_chunk_up_to_the_whole(market):
    reports = []
    result = run(market[:2], days=1, chunk_rows=600, progress=lambda *r: reports.append(r))
    total = 2 * 1440
    assert reports[0] == (0, total)
    assert reports[-1] == (total, total)
    assert len(reports) > 3  # one per chunk of ~600 bars
    assert all(a[0] < b[0] for a, b in pairwise(reports))
    assert result.rows == total
    again = []
    assert run(market[:2], days=1, progress=lambda *r: again.append(r)).rows == 0
    assert again == [(0, 0)]  # nothing left to do, and said so
