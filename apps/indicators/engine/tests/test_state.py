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


# ---------------------------------------------------------------------- many symbols at once

# names of several lengths, non-ASCII ones among them (the codec groups blobs by name length)
MANY = [f"M{i}" for i in range(150)] + [f"é{i:03d}" for i in range(40)] + ["X" * 1024, "漢字"]


def _out_of_step(symbols, ticks, seed, lockstep=False):
    """An engine whose symbols are at different ring slots, counts and recompute phases,
    some still in warm-up, with thresholds of their own (lockstep: all take every tick)."""
    rng = np.random.default_rng(seed)
    x = prices(seed, ticks, len(symbols))
    engine = IndicatorEngine()
    for i, s in enumerate(symbols):
        engine.add_symbol(s, 1.5 + (i % 7) / 3)
    for t in range(ticks):
        rate = 1.0 if lockstep else 0.8 - 0.5 * (np.arange(len(symbols)) % 3 == 0)
        keep = np.flatnonzero(rng.random(len(symbols)) < rate)
        engine.update([symbols[j] for j in keep], x[t, keep])
    return engine


def _reference_blob(engine: IndicatorEngine, symbol: str) -> bytes:
    """What the whole-state encoder writes for one symbol (the per-symbol format is it, n=1)."""
    from apps.indicators.engine import codec

    col = engine._index[symbol]
    return codec.encode(codec.KIND_SYMBOL, engine._export_state(np.array([col])))


@pytest.mark.parametrize("uniform_slot", [False, True])
def test_bulk_export_is_byte_identical_to_the_single_symbol_format(uniform_slot):
    engine = _out_of_step(MANY, 90 if uniform_slot else 150, 11, lockstep=uniform_slot)
    assert (engine._gpos is not None) == uniform_slot  # one ring slot for all, or not
    wanted = [*reversed(MANY[::3]), "M7", "漢字"]
    blobs = engine.export_symbols(wanted)
    assert list(blobs) == list(dict.fromkeys(wanted))
    for s in wanted:
        assert blobs[s] == _reference_blob(engine, s), s
    # and each one decodes alone with the general decoder
    from apps.indicators.engine import codec

    assert codec.decode(blobs["漢字"], codec.KIND_SYMBOL).names == ["漢字"]


def test_bulk_import_continues_bit_for_bit():
    """Many symbols of mixed name lengths, out of step, moved in one call into an engine
    that runs others: every one continues with the same bits, in any batch shape."""
    source = _out_of_step(MANY, 160, 13)
    twin = IndicatorEngine.from_bytes(source.to_bytes())
    target = _out_of_step(["O1", "O2", "M3", "é001"], 45, 14)  # overwrites two of them
    target.import_symbols(source.export_symbols(MANY))
    assert [target.ticks_seen(s) for s in MANY] == [source.ticks_seen(s) for s in MANY]
    assert [target.threshold(s) for s in MANY] == [source.threshold(s) for s in MANY]
    x = prices(15, 200, len(MANY))
    order = np.random.default_rng(16).permutation(len(MANY))
    for t in range(200):
        if t % 3 == 0:  # a subset, shuffled, with the target's own symbols mixed in
            rows = order[: 60 + t % 50]
            got = target.update(["O1", *[MANY[j] for j in rows], "O2"], np.r_[1.0, x[t, rows], 2.0])
            got = {f: v[1:-1] for f, v in got.items()}
        else:
            rows = np.arange(len(MANY))
            got = target.update(MANY, x[t])
        want = twin.update([MANY[j] for j in rows], x[t, rows])
        assert same(got, want), t


def test_bulk_import_into_an_empty_engine_reproduces_the_state():
    source = _out_of_step(MANY, 70, 17)
    target = IndicatorEngine()
    target.import_symbols(source.export_symbols(MANY))
    assert set(target.symbols) == set(MANY)
    again = target.export_symbols(MANY)
    assert again == source.export_symbols(MANY)


def test_import_accepts_bytes_like_values():
    source = _out_of_step(SYMBOLS, 50, 18)
    blobs = source.export_symbols(SYMBOLS)
    target = IndicatorEngine()
    target.import_symbols(
        {s: (bytearray(b) if i % 2 else memoryview(b)) for i, (s, b) in enumerate(blobs.items())}
    )
    assert target.export_symbols(SYMBOLS) == blobs


def _resealed(blob: bytes, offset: int, value: bytes) -> bytes:
    """`blob` with `value` written at `offset` and a valid CRC again."""
    body = bytearray(blob[:-4])
    body[offset : offset + len(value)] = value
    return _with_crc(bytes(body))


def test_bad_blob_among_many_is_refused_and_nothing_changes():
    engine = _out_of_step(MANY, 60, 19)
    blobs = engine.export_symbols(MANY)
    target = _out_of_step(["M1", "O1"], 30, 20)
    before = target.to_bytes()
    victim = "M77"  # a 3-character name: words start at 18 + 3
    good = blobs[victim]
    words = 18 + 3
    f64 = lambda v: struct.pack("<d", v)  # noqa: E731
    bad = {
        "truncated": good[:-1],
        "extended": good + b"\0",
        "flipped payload": good[:60] + bytes([good[60] ^ 0x10]) + good[61:],
        "flipped crc": good[:-1] + bytes([good[-1] ^ 1]),
        "another symbol's blob": blobs["M78"],
        "another length's blob": blobs["é001"],
        "whole engine": engine.to_bytes(),
        "not bytes": "text",
        "none": None,
        "version": _resealed(good, 4, bytes([9])),
        "kind": _resealed(good, 5, bytes([0])),
        "name": _resealed(good, 18, b"N"),
        "negative count": _resealed(good, words, struct.pack("<q", -1)),
        "schedule 0": _resealed(good, words + 8, struct.pack("<q", 0)),
        "schedule 129": _resealed(good, words + 8, struct.pack("<q", 129)),
        "nan state": _resealed(good, words + 16 + 8, f64(float("nan"))),
        "inf price": _resealed(good, words + 16 + 8 * 11 + 8 * 5, f64(float("inf"))),
        "-inf ema": _resealed(good, words + 16 + 8 * 2, f64(float("-inf"))),
        "negative price": _resealed(good, words + 16 + 8 * 11, f64(-1.0)),
        "negative M2": _resealed(good, words + 16 + 8 * 5, f64(-1e-300)),
        "zero threshold": _resealed(good, words + 16 + 8 * 10, f64(0.0)),
    }
    for what, blob in bad.items():
        with pytest.raises(ValueError, match="indicator state"):
            target.import_symbols({**blobs, victim: blob})
        assert target.to_bytes() == before, what
        assert "M2" not in target, what
    # a name that is not a str, or too long to be a symbol, with an otherwise valid blob
    for key, blob in [(7, good), ("Y" * 1025, None)]:
        if blob is None:
            big = IndicatorEngine()
            big._names.append(key)  # bypass add_symbol's length check to forge the blob
            big._index[key] = 0
            big._queued.append((key, 3.0))
            big.update([key], [1.0])
            blob = big.export_symbols([key])[key]
        with pytest.raises(ValueError, match="indicator state"):
            target.import_symbols({**blobs, key: blob})
        assert target.to_bytes() == before
    # the same blob under its own name is fine (negative zero is not negative)
    target.import_symbols({**blobs, victim: _resealed(good, words + 16 + 8 * 5, f64(-0.0))})
