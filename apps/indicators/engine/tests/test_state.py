"""Serialised state: whole engine and per symbol. Continuing from it gives the same bits as
never having serialised; anything that is not a valid state is refused with ValueError."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from apps.indicators.engine import FIELDS, IndicatorEngine

SYMBOLS = [f"S{i}" for i in range(12)]


def prices(seed: int, steps: int, width: int = len(SYMBOLS)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start = np.exp(rng.uniform(-5, 10, width))
    return start * np.exp(np.cumsum(rng.normal(0, 0.01, (steps, width)), axis=0))


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[f], b[f], equal_nan=f != "anomaly") for f in FIELDS)


def fresh(symbols=SYMBOLS) -> IndicatorEngine:
    engine = IndicatorEngine()
    for i, symbol in enumerate(symbols):
        engine.add_symbol(symbol, 2.0 + i / 10)
    return engine


# cut points: during warm-up, at the seeds, in steady state, around the periodic recompute
@pytest.mark.parametrize("cut", [0, 1, 5, 14, 19, 20, 25, 33, 34, 35, 127, 128, 129, 300])
def test_whole_engine_round_trip_continues_bit_for_bit(cut):
    x = prices(0, 420)
    reference = fresh()
    expected = [reference.update(SYMBOLS, x[t]) for t in range(420)]
    engine = fresh()
    for t in range(cut):
        engine.update(SYMBOLS, x[t])
    blob = engine.to_bytes()
    restored = IndicatorEngine.from_bytes(blob)
    assert restored.to_bytes() == blob
    assert restored.symbols == SYMBOLS
    assert [restored.threshold(s) for s in SYMBOLS] == [engine.threshold(s) for s in SYMBOLS]
    for t in range(cut, 420):
        assert same(restored.update(SYMBOLS, x[t]), expected[t]), t


def test_round_trip_with_symbols_out_of_step():
    """Subset batches leave symbols at different ring slots and recompute phases."""
    x = prices(1, 500)
    rng = np.random.default_rng(2)
    plan = [np.flatnonzero(rng.random(len(SYMBOLS)) < 0.7) for _ in range(500)]
    reference = fresh()
    expected = [reference.update([SYMBOLS[j] for j in p], x[t, p]) for t, p in enumerate(plan)]
    engine = fresh()
    for t, p in enumerate(plan):
        if t % 37 == 11:
            engine = IndicatorEngine.from_bytes(engine.to_bytes())
        assert same(engine.update([SYMBOLS[j] for j in p], x[t, p]), expected[t]), t


@pytest.mark.parametrize("cut", [3, 20, 34, 150])
def test_exported_symbols_continue_bit_for_bit_in_another_engine(cut):
    x = prices(3, 400)
    moved = SYMBOLS[:5]
    reference = fresh()
    expected = [reference.update(SYMBOLS, x[t]) for t in range(400)]
    source = fresh()
    for t in range(cut):
        source.update(SYMBOLS, x[t])
    blobs = source.export_symbols(moved)
    assert set(blobs) == set(moved)

    # the target already runs other symbols, at another ring slot and recompute phase
    target = IndicatorEngine()
    other = prices(4, 57, 3)
    for t in range(57):
        target.update(["O1", "O2", "O3"], other[t])
    target.import_symbols(blobs)
    assert [target.ticks_seen(s) for s in moved] == [cut] * 5
    batch = ["O1", *moved, "O2", "O3"]  # and not in the source's order
    for t in range(cut, 400):
        values = target.update(batch, np.r_[1.0, x[t, :5], 2.0, 3.0])
        for f in FIELDS:
            want = expected[t][f][:5]
            assert np.array_equal(values[f][1:6], want, equal_nan=f != "anomaly"), (t, f)


def test_import_overwrites_an_existing_symbol():
    x = prices(5, 200)
    a = fresh()
    for t in range(100):
        a.update(SYMBOLS, x[t])
    b = fresh()
    for t in range(60):
        b.update(SYMBOLS, x[t] * 3.0)
    b.import_symbols(a.export_symbols(["S0"]))
    assert b.ticks_seen("S0") == 100
    assert b.ticks_seen("S1") == 60
    want = a.update(["S0"], x[100, :1])
    got = b.update(["S0"], x[100, :1])
    assert same(got, want)


def test_state_is_compact_and_deterministic():
    x = prices(6, 50)
    engine = fresh()
    for t in range(50):
        engine.update(SYMBOLS, x[t])
    blob = engine.to_bytes()
    assert blob == engine.to_bytes()
    assert len(blob) < 300 * len(SYMBOLS) + 64  # ~270 bytes a symbol
    per_symbol = engine.export_symbols(SYMBOLS)
    assert all(len(b) < 300 for b in per_symbol.values())


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_corrupt_or_foreign_bytes_are_refused():
    engine = fresh()
    for row in prices(7, 40):
        engine.update(SYMBOLS, row)
    blob = engine.to_bytes()
    body = blob[:-4]
    bad = {
        "empty": b"",
        "truncated": blob[:-9],
        "extended": blob + b"\0",
        "flipped byte": blob[:100] + bytes([blob[100] ^ 0x01]) + blob[101:],
        "flipped crc": blob[:-1] + bytes([blob[-1] ^ 0x80]),
        "magic": _with_crc(b"XXXX" + body[4:]),
        "version": _with_crc(body[:4] + bytes([99]) + body[5:]),
        "kind": _with_crc(body[:5] + bytes([1]) + body[6:]),
        "garbage": bytes(range(256)) * 3,
    }
    for data in bad.values():
        with pytest.raises(ValueError, match="indicator state"):
            IndicatorEngine.from_bytes(data)
    with pytest.raises(ValueError, match="indicator state"):
        IndicatorEngine.from_bytes("not bytes")  # type: ignore[arg-type]
    # a valid checksum over nonsense values is still refused
    nan_state = bytearray(body)
    ring_start = len(body) - 8 * 20 * len(SYMBOLS)
    nan_state[ring_start : ring_start + 8] = struct.pack("<d", float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        IndicatorEngine.from_bytes(_with_crc(bytes(nan_state)))


def test_bad_per_symbol_blobs_change_nothing():
    engine = fresh()
    for row in prices(8, 30):
        engine.update(SYMBOLS, row)
    before = engine.to_bytes()
    good = engine.export_symbols(["S1", "S2"])
    cases = [
        {"S1": good["S1"], "S2": good["S2"][:-1]},  # one truncated blob
        {"S1": good["S2"]},  # under the wrong name
        {"S3": engine.to_bytes()},  # a whole-engine state is not a symbol state
        {"NEW": good["S1"]},
    ]
    for blobs in cases:
        with pytest.raises(ValueError, match="indicator state"):
            engine.import_symbols(blobs)
        assert engine.to_bytes() == before
        assert "NEW" not in engine
    with pytest.raises(ValueError, match="indicator state"):
        IndicatorEngine.from_bytes(good["S1"])  # a symbol state is not a whole engine


def test_empty_engine_round_trip():
    engine = IndicatorEngine.from_bytes(IndicatorEngine().to_bytes())
    assert engine.symbols == []
    values = engine.update(["A"], [1.0])
    assert np.isnan(values["sma_20"][0])
    assert engine.export_symbols([]) == {}
    engine.import_symbols({})
    assert engine.symbols == ["A"]
