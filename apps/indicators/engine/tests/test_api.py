"""Input validation and symbol management: a bad batch changes nothing and names the
symbol; thresholds, membership, counts and ordering behave as documented."""

from __future__ import annotations

import numpy as np
import pytest

from apps.indicators.engine import FIELDS, PRICE_MAX, PRICE_MIN, IndicatorEngine

from .reference import mismatch, run_single, talib_reference


def warmed(n_ticks: int = 40) -> tuple[IndicatorEngine, np.ndarray]:
    rng = np.random.default_rng(0)
    x = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_ticks + 40, 3)), axis=0))
    engine = IndicatorEngine()
    for t in range(n_ticks):
        engine.update(["A", "B", "C"], x[t])
    return engine, x


@pytest.mark.parametrize(
    "bad",
    [np.nan, np.inf, -np.inf, 0.0, -1.0, -0.0, PRICE_MAX * 1.01, PRICE_MIN / 2, 5e-324],
)
@pytest.mark.parametrize("extra", [0, 20])  # small batches are checked in Python, large in numpy
def test_invalid_price_raises_naming_the_symbol_and_changes_nothing(bad, extra):
    engine, x = warmed()
    twin, _ = warmed()
    before = engine.to_bytes()
    batch = ["A", "NEW", "B", "C"] + [f"E{i}" for i in range(extra)]
    with pytest.raises(ValueError, match=r"'B'.*row 2"):
        engine.update(batch, [x[40, 0], 10.0, bad, x[40, 2]] + [1.0] * extra)
    assert engine.to_bytes() == before
    assert "NEW" not in engine
    assert "E0" not in engine
    assert engine.ticks_seen("B") == 40
    for t in range(40, 80):  # and it carries on exactly like an engine that never saw it
        a = engine.update(["A", "B", "C"], x[t])
        b = twin.update(["A", "B", "C"], x[t])
        assert all(np.array_equal(a[f], b[f], equal_nan=f != "anomaly") for f in FIELDS)


def test_prices_at_the_limits_are_accepted():
    engine = IndicatorEngine()
    out = engine.update(["LO", "HI"], [PRICE_MIN, PRICE_MAX])
    assert out["sma_20"].shape == (2,)


def test_malformed_batches_are_refused_before_anything_changes():
    engine, _ = warmed()
    before = engine.to_bytes()
    with pytest.raises(ValueError, match="3 symbols"):
        engine.update(["A", "B", "C"], [1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        engine.update(["A", "B"], np.ones((2, 1)))
    with pytest.raises(TypeError, match="symbol"):
        engine.update(["A", "NEW", 7], [1.0, 2.0, 3.0])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="symbol"):
        engine.update(["A", ""], [1.0, 2.0])
    assert engine.to_bytes() == before
    assert engine.symbols == ["A", "B", "C"]


def test_inputs_in_any_sequence_type():
    x = np.linspace(10, 20, 30)
    ref = run_single(x)
    for convert in (list, tuple, np.array):
        engine = IndicatorEngine()
        for value in x:
            out = engine.update(np.array(["X"]), convert([value]))
        assert out["sma_20"][0] == ref["sma_20"][-1]
    engine = IndicatorEngine()
    for value in x.astype(int):  # integer prices are converted
        out = engine.update(("X",), np.array([value]))
    assert out["sma_20"][0] == pytest.approx(np.mean(x.astype(int)[-20:]), rel=1e-15)


def test_empty_batch():
    engine, _ = warmed()
    out = engine.update([], [])
    assert set(out) == set(FIELDS)
    assert all(len(v) == 0 for v in out.values())
    assert out["anomaly"].dtype == bool


def test_output_types_and_order():
    engine, x = warmed()
    out = engine.update(["C", "A"], x[40, [2, 0]])
    assert tuple(out) == FIELDS
    for field, value in out.items():
        assert value.shape == (2,)
        assert value.dtype == (bool if field == "anomaly" else np.float64)


def test_thresholds():
    engine = IndicatorEngine()
    engine.add_symbol("A")
    assert engine.threshold("A") == 3.0
    engine.add_symbol("A", 2.5)  # idempotent, but updates the threshold
    assert engine.threshold("A") == 2.5
    engine.update(["A"], [1.0])
    engine.add_symbol("A", 4.0)
    assert engine.threshold("A") == 4.0
    assert engine.ticks_seen("A") == 1
    engine.set_threshold("A", 1.5)
    assert engine.threshold("A") == 1.5
    for bad in (0.0, -1.0, float("nan"), float("inf"), "x", None):
        with pytest.raises(ValueError, match="threshold"):
            engine.set_threshold("A", bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="threshold"):
            engine.add_symbol("B", bad)  # type: ignore[arg-type]
    assert "B" not in engine
    assert engine.threshold("A") == 1.5
    with pytest.raises(KeyError):
        engine.set_threshold("missing", 2.0)


def test_membership_order_counts_and_removal():
    engine = IndicatorEngine()
    for symbol in ("B", "A", "C"):
        engine.add_symbol(symbol)
    assert engine.symbols == ["B", "A", "C"]
    assert len(engine) == 3
    assert "A" in engine
    assert "Z" not in engine
    assert engine.ticks_seen("A") == 0
    engine.update(["A", "A", "C"], [1.0, 2.0, 3.0])
    engine.update(["B", "A", "C"], [1.0, 2.0, 3.0])  # the fast-path shape
    assert [engine.ticks_seen(s) for s in ("B", "A", "C")] == [1, 3, 2]
    listing = engine.symbols
    listing.append("X")  # a copy
    assert engine.symbols == ["B", "A", "C"]
    engine.remove_symbol("A")
    engine.remove_symbol("A")
    engine.remove_symbol("never")
    assert engine.symbols == ["B", "C"]
    with pytest.raises(KeyError):
        engine.ticks_seen("A")
    engine.add_symbol("A")
    assert engine.ticks_seen("A") == 0  # a fresh start
    assert engine.symbols == ["B", "C", "A"]


def test_removed_symbol_leaves_the_others_untouched():
    rng = np.random.default_rng(3)
    x = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, (150, 4)), axis=0))
    names = ["W", "X", "Y", "Z"]
    engine = IndicatorEngine()
    got = {n: [] for n in names}
    for t in range(150):
        live = names if t < 70 else ["W", "Y", "Z"]
        if t == 70:
            engine.remove_symbol("X")
        cols = [names.index(n) for n in live]
        out = engine.update(live, x[t, cols])
        for k, n in enumerate(live):
            got[n].append(out["zscore_20"][k])
    for j, n in enumerate(names):
        series = x[: len(got[n]), j]
        assert mismatch(np.array(got[n]), talib_reference(series)["zscore_20"]) is None, n


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -1.0, PRICE_MAX * 1.01, PRICE_MIN / 2])
def test_invalid_price_on_the_fast_path_changes_nothing(bad):
    """Every symbol once, in engine order, all warm: the fast path checks the prices."""
    names = [f"F{i}" for i in range(12)]
    rng = np.random.default_rng(1)
    x = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (80, 12)), axis=0))
    engine, twin = IndicatorEngine(), IndicatorEngine()
    for t in range(40):
        engine.update(names, x[t])
        twin.update(names, x[t])
    before = engine.to_bytes()
    row = x[40].copy()
    row[7] = bad
    with pytest.raises(ValueError, match=r"'F7'.*row 7"):
        engine.update(engine.symbols, row)
    assert engine.to_bytes() == before
    for t in range(40, 80):
        a = engine.update(names, x[t])
        b = twin.update(names, x[t])
        assert all(np.array_equal(a[f], b[f], equal_nan=f != "anomaly") for f in FIELDS)
