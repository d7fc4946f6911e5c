"""Indicator engine throughput beside talipp and TA-Lib, on the same price stream.

    python bench/indicators.py [--quick]

For 1, 100, 1,000 and 10,000 symbols, one tick = one new price for every symbol, and every
implementation produces the whole indicator set (sma_20, ema_20, rsi_14, zscore_20, anomaly,
macd/signal/hist, Bollinger bands) for every symbol on every tick:

* engine  - IndicatorEngine.update(symbols, prices), the public API (fast path).
* talipp  - incremental, one talipp object per symbol and indicator (SMA, EMA, RSI, StdDev,
            MACD, BB); z-score and anomaly from SMA and StdDev.
* TA-Lib  - recomputes each indicator over the symbol's last 200 prices on every tick.

Units: symbol-updates per second (ticks/s summed over symbols). Each cell runs for a fixed
time budget (about 1.5 s; 0.3 s with --quick) on the continuing stream; generating prices is
not timed. The references are slow, so at 10,000 symbols they get through only a few ticks
in their budget (the table says how many). With --quick, talipp at 10,000 symbols runs on
1,000 of them (its cost per symbol does not depend on how many there are; warming 10,000
talipp symbols up takes ~20 s).

Then per-symbol state transfer at 5,000 symbols (what the ingest pipeline does after every
batch and when a worker takes symbols over): export_symbols of all of them, import_symbols
of the blobs into a fresh engine and over the existing symbols. Best of several runs, wall
and CPU time. Writes bench/results/indicators.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import talib
from talipp.indicators import BB, EMA, MACD, RSI, SMA, StdDev

from apps.indicators.engine import IndicatorEngine
from bench.common import print_table, write_results

SIZES = (1, 100, 1_000, 10_000)
HISTORY = 200  # ticks before timing starts (TA-Lib's window; everyone is warm by then)
TALIPP_WARMUP = 40  # talipp objects see the last 40 of them (all indicators warm at 34)
TARGET_AT_1000 = 15_000_000
STATE_SYMBOLS = 5_000


class Stream:
    """Geometric random walks, one per symbol, generated chunk by chunk from a seed."""

    def __init__(self, n: int, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.last = np.exp(self.rng.uniform(np.log(5.0), np.log(500.0), n))
        self.vol = self.rng.choice([0.0005, 0.002, 0.01], n)

    def chunk(self, ticks: int) -> np.ndarray:
        steps = self.rng.normal(0.0, 1.0, (ticks, len(self.last))) * self.vol
        out = self.last * np.exp(np.cumsum(steps, axis=0))
        self.last = out[-1]
        return out


def timed(stream: Stream, step, budget: float) -> dict:
    """Feed the stream to `step` tick by tick for ~`budget` seconds of wall-clock time.

    Timed in blocks of ticks (growing while a block is short) so that the clock reads cost
    nothing measurable; generating the prices is not timed. Returns wall-clock and CPU
    seconds (CPU time is what the process itself spent: steadier on a shared machine).
    """
    wall = cpu = 0.0
    ticks, block = 0, 1
    while wall < budget:
        rows = stream.chunk(block)
        w0, c0 = time.perf_counter(), time.process_time()
        for row in rows:
            step(row)
        spent = time.perf_counter() - w0
        cpu += time.process_time() - c0
        wall += spent
        ticks += block
        if spent < budget / 50:
            block = min(2 * block, 256)
    return {"seconds": wall, "cpu_seconds": cpu, "ticks": ticks}


def _rates(res: dict, n: int) -> dict:
    res["updates_per_s"] = res["ticks"] * n / res["seconds"]
    res["updates_per_cpu_s"] = res["ticks"] * n / res["cpu_seconds"]
    return res


def bench_engine(n: int, budget: float) -> dict:
    stream = Stream(n)
    history = stream.chunk(HISTORY)
    engine = IndicatorEngine()
    symbols = [f"SYM{i:05d}" for i in range(n)]
    for symbol in symbols:
        engine.add_symbol(symbol)
    for row in history:
        engine.update(symbols, row)
    symbols = engine.symbols  # engine order: the fast path

    def step(row: np.ndarray) -> None:
        engine.update(symbols, row)

    res = _rates(timed(stream, step, budget), n)
    check = stream.chunk(20)  # sanity (untimed): the engine still computes the right thing
    for row in check:
        last = engine.update(symbols, row)
    expected = check[:, 0].mean()
    assert abs(last["sma_20"][0] - expected) <= 1e-9 * expected, "engine sanity check failed"
    return res


def bench_talipp(n: int, budget: float) -> dict:
    stream = Stream(n)
    history = stream.chunk(HISTORY)
    objs = [(SMA(20), EMA(20), RSI(14), StdDev(20), MACD(12, 26, 9), BB(20, 2.0)) for _ in range(n)]
    for row in history[-TALIPP_WARMUP:]:
        for price, o in zip(row.tolist(), objs, strict=True):
            for ind in o:
                ind.add(price)

    def step(row: np.ndarray) -> None:
        out = []
        for price, (sma, ema, rsi, std, macd, bb) in zip(row.tolist(), objs, strict=True):
            for ind in (sma, ema, rsi, std, macd, bb):
                ind.add(price)
            mean, dev = sma[-1], std[-1]
            z = (price - mean) / dev if dev else None
            m, b = macd[-1], bb[-1]
            out.append(
                (mean, ema[-1], rsi[-1], z, z is not None and abs(z) >= 3.0, m.macd, m.signal,
                 m.histogram, b.ub, b.cb, b.lb)
            )  # fmt: skip

    return _rates(timed(stream, step, budget), n)


def bench_talib(n: int, budget: float) -> dict:
    stream = Stream(n)
    history = stream.chunk(HISTORY)
    # each symbol's last 200 prices, kept twice over so that a contiguous window always exists
    buf = np.empty((n, 2 * HISTORY))
    buf[:, :HISTORY] = history.T
    buf[:, HISTORY:] = history.T
    pos = 0  # buf[:, pos : pos + 200] is the window

    def step(row: np.ndarray) -> None:
        nonlocal pos
        buf[:, pos] = row
        buf[:, pos + HISTORY] = row
        pos = pos + 1 if pos < HISTORY - 1 else 0
        out = []
        for s in range(n):
            w = buf[s, pos : pos + HISTORY]
            sma = talib.SMA(w, 20)[-1]
            std = talib.STDDEV(w, 20, 1)[-1]
            z = (w[-1] - sma) / std if std > 0 else float("nan")
            macd, signal, hist = talib.MACD(w, 12, 26, 9)
            upper, middle, lower = talib.BBANDS(w, 20, 2, 2)
            out.append(
                (sma, talib.EMA(w, 20)[-1], talib.RSI(w, 14)[-1], z, abs(z) >= 3.0, macd[-1],
                 signal[-1], hist[-1], upper[-1], middle[-1], lower[-1])
            )  # fmt: skip

    return _rates(timed(stream, step, budget), n)


def bench_state(n: int, repeats: int) -> dict:
    """export_symbols / import_symbols of n warm symbols, out of step (subset batches)."""
    stream = Stream(n)
    engine = IndicatorEngine()
    symbols = [f"SYM{i:05d}" for i in range(n)]
    rng = np.random.default_rng(3)
    for row in stream.chunk(60):
        keep = np.flatnonzero(rng.random(n) < 0.9)
        engine.update([symbols[i] for i in keep], row[keep])
    blobs = engine.export_symbols(symbols)

    def best(call, fresh=None) -> tuple[float, float]:
        walls, cpus = [], []
        for _ in range(repeats):
            arg = fresh() if fresh else None
            w0, c0 = time.perf_counter(), time.process_time()
            call(arg)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        return 1e3 * min(walls), 1e3 * min(cpus)

    res = {
        "symbols": n,
        "bytes_per_symbol": sum(map(len, blobs.values())) / n,
        "export_ms": best(lambda _: engine.export_symbols(symbols)),
        "import_new_ms": best(lambda e: e.import_symbols(blobs), IndicatorEngine),
        "import_overwrite_ms": best(lambda _: engine.import_symbols(blobs)),
    }
    assert engine.export_symbols(symbols) == blobs, "state round trip changed the state"
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (0.3 s a cell)")
    args = parser.parse_args()
    budget = 0.3 if args.quick else 1.5
    rows, results = [], []
    for n in SIZES:
        print(f"{n} symbols ...", flush=True)
        engine = bench_engine(n, budget)
        talipp_n = 1_000 if (args.quick and n > 1_000) else n
        talipp_res = bench_talipp(talipp_n, budget)
        talipp_res["symbols_measured"] = talipp_n
        talib_res = bench_talib(n, budget)
        best_name, best = max(
            (("talipp", talipp_res), ("TA-Lib recompute", talib_res)),
            key=lambda item: item[1]["updates_per_s"],
        )
        speedup = engine["updates_per_s"] / best["updates_per_s"]
        speedup_text = f"{speedup:,.1f}x" if speedup < 10 else f"{speedup:,.0f}x"
        notes = []
        if talib_res["ticks"] < 100:
            notes.append(f"TA-Lib: {talib_res['ticks']} ticks")
        if talipp_res["ticks"] < 100:
            notes.append(f"talipp: {talipp_res['ticks']} ticks")
        if talipp_n != n:
            notes.append(f"talipp on {talipp_n} symbols")
        rows.append(
            [
                n,
                engine["updates_per_s"],
                talipp_res["updates_per_s"],
                talib_res["updates_per_s"],
                f"{speedup_text} ({best_name})",
                1e6 * engine["seconds"] / engine["ticks"],
                1e6 * engine["cpu_seconds"] / engine["ticks"],
                "; ".join(notes) or "-",
            ]
        )
        results.append(
            {
                "symbols": n,
                "engine": engine,
                "talipp": talipp_res,
                "talib_recompute": talib_res,
                "best_reference": best_name,
                "speedup_vs_best_reference": speedup,
            }
        )
    print_table(
        "Indicator updates (symbol-updates/s, all 11 fields; higher is better)",
        ["symbols", "engine", "talipp", "TA-Lib recompute", "speed-up vs best ref",
         "engine us/tick", "(CPU)", "notes"],
        rows,
    )  # fmt: skip
    state = bench_state(STATE_SYMBOLS, 5 if args.quick else 20)
    print_table(
        f"Per-symbol state transfer, {STATE_SYMBOLS:,} symbols "
        f"({state['bytes_per_symbol']:.0f} bytes each; best of runs; lower is better)",
        ["operation", "ms", "(CPU ms)"],
        [
            [label, *state[key]]
            for label, key in (
                ("export_symbols", "export_ms"),
                ("import_symbols, new symbols", "import_new_ms"),
                ("import_symbols, overwrite", "import_overwrite_ms"),
            )
        ],
    )
    at_1000 = next(r for r in results if r["symbols"] == 1_000)["engine"]["updates_per_s"]
    met = at_1000 >= TARGET_AT_1000
    print(
        f"\ntarget >= {TARGET_AT_1000:,} symbol-updates/s at 1,000 symbols: "
        f"{'met' if met else 'NOT met'} ({at_1000:,.0f})"
    )
    write_results(
        "indicators",
        {
            "quick": args.quick,
            "budget_seconds_per_cell": budget,
            "units": "symbol-updates per second",
            "target_at_1000": TARGET_AT_1000,
            "target_met": met,
            "versions": {
                "numpy": np.__version__,
                "ta-lib": version("TA-Lib"),
                "ta-lib C library": talib.__ta_version__.decode().split()[0],
                "talipp": version("talipp"),
            },
            "results": results,
            "state_transfer": state,
        },
    )


if __name__ == "__main__":
    main()
