"""Batches of many symbols, repeated symbols, symbols added and removed mid-stream: each
symbol still gets exactly its own TA-Lib series, and the same bits whatever the batching."""

from __future__ import annotations

import numpy as np

from apps.indicators.engine import FIELDS, IndicatorEngine

from .reference import mismatch, run, run_single, talib_reference


def gbm_matrix(seed: int, steps: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start = np.exp(rng.uniform(np.log(1e-3), np.log(1e5), width))
    vol = rng.choice([0.001, 0.01, 0.03], width)
    return start * np.exp(np.cumsum(rng.normal(0.0, 1.0, (steps, width)) * vol, axis=0))


def test_300_symbols_500_ticks_each_equal_talib():
    prices = gbm_matrix(0, 500, 300)
    symbols = [f"S{i:03d}" for i in range(300)]
    engine = IndicatorEngine()
    for symbol in symbols:
        engine.add_symbol(symbol)
    res = run(engine, symbols, prices)
    for j in range(300):
        ref = talib_reference(prices[:, j])
        for field in FIELDS:
            assert mismatch(res[field][:, j], ref[field]) is None, (symbols[j], field)


def test_batching_does_not_change_a_single_bit():
    """Engine order, shuffled order, one engine per symbol, several ticks per batch."""
    steps, width = 300, 40
    prices = gbm_matrix(1, steps, width)
    symbols = [f"S{i}" for i in range(width)]
    engine = IndicatorEngine()
    for symbol in symbols:
        engine.add_symbol(symbol)
    in_order = run(engine, symbols, prices)  # the fast path once all are warm

    rng = np.random.default_rng(2)
    shuffled = IndicatorEngine()
    got = {f: np.empty_like(v) for f, v in in_order.items()}
    for t in range(steps):
        perm = rng.permutation(width)
        values = shuffled.update([symbols[i] for i in perm], prices[t, perm])
        for f in FIELDS:
            got[f][t, perm] = values[f]
    for f in FIELDS:
        assert np.array_equal(got[f], in_order[f], equal_nan=f != "anomaly"), f

    for j in (0, 17, 39):
        alone = run_single(prices[:, j])
        for f in FIELDS:
            assert np.array_equal(alone[f], in_order[f][:, j], equal_nan=f != "anomaly"), f

    one_by_one = IndicatorEngine()  # one symbol per batch
    for t in range(steps):
        for j in rng.permutation(width)[:: 1 if t % 2 else -1]:
            values = one_by_one.update([symbols[j]], prices[t, j : j + 1])
            for f in FIELDS:
                want = in_order[f][t, j]
                assert np.array_equal(values[f][0], want, equal_nan=f != "anomaly"), (t, j, f)

    multi = IndicatorEngine()  # three ticks of every symbol per batch: three rounds
    for t in range(0, steps, 3):
        values = multi.update(symbols * 3, prices[t : t + 3].ravel())
        for f in FIELDS:
            assert np.array_equal(
                values[f].reshape(3, width), in_order[f][t : t + 3], equal_nan=f != "anomaly"
            ), (t, f)


def test_repeated_symbols_in_one_batch_apply_in_order():
    x = gbm_matrix(3, 120, 1)[:, 0]
    y = gbm_matrix(4, 120, 1)[:, 0]
    engine = IndicatorEngine()
    # interleaved: x0 y0 x1 x2 y1 y2 ... in uneven groups, split across batches
    rows, values = [], []
    i = j = 0
    rng = np.random.default_rng(5)
    while i < len(x) or j < len(y):
        batch_symbols, batch_prices, batch_refs = [], [], []
        for _ in range(int(rng.integers(1, 12))):
            if i >= len(x) and j >= len(y):
                break
            if (rng.random() < 0.5 and i < len(x)) or j >= len(y):
                batch_symbols.append("X")
                batch_prices.append(x[i])
                batch_refs.append(("X", i))
                i += 1
            else:
                batch_symbols.append("Y")
                batch_prices.append(y[j])
                batch_refs.append(("Y", j))
                j += 1
        out = engine.update(batch_symbols, np.array(batch_prices))
        for k, ref in enumerate(batch_refs):
            rows.append(ref)
            values.append({f: out[f][k] for f in FIELDS})
    for name, series in (("X", x), ("Y", y)):
        ref = talib_reference(series)
        got = {f: np.empty(len(series), dtype=ref[f].dtype) for f in FIELDS}
        for (sym, idx), value in zip(rows, values, strict=True):
            if sym == name:
                for f in FIELDS:
                    got[f][idx] = value[f]
        for f in FIELDS:
            assert mismatch(got[f], ref[f]) is None, (name, f)


def test_symbols_added_mid_stream_and_removed():
    prices = gbm_matrix(6, 400, 6)
    names = [f"M{i}" for i in range(6)]
    starts = [0, 0, 50, 120, 120, 333]  # when each symbol first appears
    # M1 is removed at t=200 and comes back (fresh) at t=260
    engine = IndicatorEngine()
    history: dict[str, list[dict]] = {n: [] for n in names}
    for t in range(400):
        live = [j for j in range(6) if t >= starts[j] and not (j == 1 and 200 <= t < 260)]
        if t == 200:
            engine.remove_symbol("M1")
            engine.remove_symbol("M1")  # idempotent
            assert "M1" not in engine
        if t == 120:
            engine.add_symbol("M3")  # explicitly; M4 is added by update itself
        values = engine.update([names[j] for j in live], prices[t, live])
        for k, j in enumerate(live):
            history[names[j]].append({f: values[f][k] for f in FIELDS})
    for j, name in enumerate(names):
        if j == 1:
            segments = [
                (prices[0:200, 1], history[name][:200]),
                (prices[260:, 1], history[name][200:]),
            ]
        else:
            segments = [(prices[starts[j] :, j], history[name])]
        for series, got in segments:
            ref = talib_reference(series)
            for f in FIELDS:
                ours = np.array([g[f] for g in got])
                assert mismatch(ours, ref[f]) is None, (name, f)
    assert engine.ticks_seen("M1") == 140
    assert engine.symbols == ["M0", "M2", "M3", "M4", "M1", "M5"]


def test_subset_batches_then_full_batches_keep_every_series_exact():
    """Partial batches put symbols out of step (the fast path realigns them afterwards)."""
    prices = gbm_matrix(7, 200, 8)
    symbols = [f"P{i}" for i in range(8)]
    engine = IndicatorEngine()
    for symbol in symbols:
        engine.add_symbol(symbol)
    seen = {s: [] for s in symbols}
    cursor = [0] * 8
    rng = np.random.default_rng(8)
    for t in range(240):
        if t < 60:  # random subsets
            idx = [j for j in range(8) if rng.random() < 0.6 and cursor[j] < 200]
        else:  # everyone, in engine order (fast path when warm)
            idx = [j for j in range(8) if cursor[j] < 200]
            if len(idx) < 8:
                break
        if not idx:
            continue
        values = engine.update([symbols[j] for j in idx], prices[[cursor[j] for j in idx], idx])
        for k, j in enumerate(idx):
            seen[symbols[j]].append({f: values[f][k] for f in FIELDS})
            cursor[j] += 1
    for j, symbol in enumerate(symbols):
        series = prices[: cursor[j], j]
        ref = talib_reference(series)
        for f in FIELDS:
            ours = np.array([g[f] for g in seen[symbol]])
            assert mismatch(ours, ref[f]) is None, (symbol, f)


def test_update_records_gives_none_for_nulls():
    engine = IndicatorEngine()
    records = engine.update_records(["A", "B"], [10.0, 20.0])
    assert [r["symbol"] for r in records] == ["A", "B"]
    assert records[0]["sma_20"] is None
    assert records[0]["anomaly"] is False
    assert set(records[0]) == {"symbol", *FIELDS}
    for _ in range(40):
        records = engine.update_records(["A"], [10.5])
    assert records[0]["rsi_14"] == 100.0  # one gain, no loss ever
    assert isinstance(records[0]["sma_20"], float)
    assert records[0]["zscore_20"] is None  # flat window
