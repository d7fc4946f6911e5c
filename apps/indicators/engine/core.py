"""IndicatorEngine: incremental indicators for many symbols, vectorised across symbols.

Storage is column-per-symbol: a (11, n) float block (kernel.py), a (3, n) int block (ticks
seen, ticks until the next periodic exact recompute, ring write slot) and a (20, n) ring
buffer of the last prices. A batch that holds every symbol once, in engine order, once all
symbols are past warm-up, runs the fast path: about 40 numpy calls on contiguous rows, no
gather or scatter (the same batch in another order only permutes the prices). Anything else
(subsets, repeated symbols, warm-up) runs the general path: the batch is split into rounds
of distinct symbols, each round gathers its columns, runs the same kernel, fixes up warm-up
rows and scatters back. Engines and rounds of at most 6 symbols use a scalar twin of the
kernel on Python floats instead (numpy's per-call overhead would dominate).

Every symbol's results depend only on its own prices (and threshold): not on the batching,
the path taken, the other symbols or where its state was serialised and restored. The
tests hold all paths to the same bits.

Warm-up follows TA-Lib exactly: EMA seeds are the sequential sum of the first prices divided
by the period (EMA20 at price 20, EMA26 at 26; the MACD fast EMA12 is seeded at price 26
with the mean of prices 15..26, so it starts together with the slow one, as TA-Lib does);
the signal is seeded at price 34 with the mean of the first 9 MACD values; RSI is seeded at
price 15 with the means of the first 14 gains and losses.

Not thread-safe: one engine per thread (or a lock around it).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from . import codec
from .constants import (
    DEFAULT_THRESHOLD,
    FIELDS,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    PRICE_MAX,
    PRICE_MIN,
    RECOMPUTE_PERIOD,
    RSI_PERIOD,
    STEADY_AFTER,
    WINDOW,
)
from .kernel import (
    ANC,
    E0,
    E1,
    E2,
    M2,
    M2MAX,
    MD,
    NOUT,
    NSTATE,
    O_BBL,
    O_BBM,
    O_BBU,
    O_EMA,
    O_HIST,
    O_MACD,
    O_RSI,
    O_SIG,
    O_SMA,
    O_Z,
    SIG,
    THR,
    G,
    S,
    Views,
    count_true,
    finish_scalar,
    kernel,
    kernel_scalar,
    views,
    window_stats,
)

# Rows of the int block.
_CNT, _DUE, _POS = range(3)
_AR = np.arange(WINDOW)
_CHRON_SLOTS = (_AR[:, None] - _AR) % WINDOW  # [pos, j]: ring slot of the j-th oldest price
_MAX_NAME_BYTES = 1024
_SCALAR_MAX = 6  # engines up to this many symbols run kernel_scalar (measured break-even)
_C_PRICE_MIN = np.array(PRICE_MIN)  # 0-d arrays: a ufunc takes them faster than floats
_C_PRICE_MAX = np.array(PRICE_MAX)


class IndicatorEngine:
    """Incremental sma_20, ema_20, rsi_14, zscore_20, anomaly, macd (+signal, hist) and
    Bollinger bands for any number of symbols; see docs/contracts.md#indicators and the module doc.
    """

    def __init__(self) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._n = 0  # columns materialised in the arrays
        self._queued: list[tuple[str, float]] = []  # added, not yet materialised
        self._st = np.zeros((NSTATE, 0))
        self._ints = np.zeros((3, 0), dtype=np.int64)
        self._ring = np.zeros((WINDOW, 0))
        # Lazily applied state of the fast path (see _materialise): while _gpos is an int every
        # symbol's next ring write slot is _gpos; _pend ticks are not yet added to the counts;
        # while _due is an int every symbol has _due ticks to its periodic recompute.
        self._gpos: int | None = 0
        self._pend = 0
        self._due: int | None = RECOMPUTE_PERIOD
        self._cold = 0  # symbols not yet past warm-up (fast path needs 0)
        self._rsi_guard = False  # some symbol may have an RSI denominator of 0
        self._fast: tuple | None = None  # cached views and scratch for the fast path
        # the last batch's symbols -> (their columns, all distinct?); reset when columns move
        self._cache: tuple[list[str], np.ndarray, bool] | None = None

    # ------------------------------------------------------------------ symbols

    def add_symbol(self, symbol: str, anomaly_threshold: float = DEFAULT_THRESHOLD) -> None:
        """Start tracking `symbol` (idempotent: if present, only its threshold is updated).

        O(1): the new column is materialised, together with any others added meanwhile, by
        the next call that needs the arrays.
        """
        threshold = _check_threshold(anomaly_threshold)
        col = self._index.get(symbol)
        if col is not None:
            self._set_threshold_col(col, threshold)
            return
        _check_name(symbol)
        self._index[symbol] = len(self._names)
        self._names.append(symbol)
        self._queued.append((symbol, threshold))
        self._fast = None

    def remove_symbol(self, symbol: str) -> None:
        """Forget `symbol` and its state (idempotent). O(n): the arrays are compacted."""
        col = self._index.get(symbol)
        if col is None:
            return
        self._flush()
        self._materialise()
        keep = np.ones(self._n, dtype=bool)
        keep[col] = False
        self._st = np.ascontiguousarray(self._st[:, keep])
        self._ints = np.ascontiguousarray(self._ints[:, keep])
        self._ring = np.ascontiguousarray(self._ring[:, keep])
        del self._names[col]
        del self._index[symbol]
        for i in range(col, len(self._names)):
            self._index[self._names[i]] = i
        self._n -= 1
        self._fast = None
        self._cache = None
        self._resync()

    def set_threshold(self, symbol: str, threshold: float) -> None:
        """Set the anomaly threshold on abs(zscore_20) of a known symbol (KeyError if not)."""
        col = self._index.get(symbol)
        if col is None:
            raise KeyError(symbol)
        self._set_threshold_col(col, _check_threshold(threshold))

    @property
    def symbols(self) -> list[str]:
        """The tracked symbols in engine order (a copy). Passing this order to `update` with
        one price per symbol takes the fast path."""
        return list(self._names)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._index

    def __len__(self) -> int:
        """Number of tracked symbols."""
        return len(self._names)

    def ticks_seen(self, symbol: str) -> int:
        """Prices applied to `symbol` since it was added (KeyError if unknown)."""
        col = self._index[symbol]
        if col >= self._n:
            return 0
        return int(self._ints[_CNT, col]) + self._pend

    def threshold(self, symbol: str) -> float:
        """The anomaly threshold of `symbol` (KeyError if unknown)."""
        col = self._index[symbol]
        if col >= self._n:
            return self._queued[col - self._n][1]
        return float(self._st[THR, col])

    # ------------------------------------------------------------------ update

    def update(
        self, symbols: Sequence[str], prices: Sequence[float] | np.ndarray
    ) -> dict[str, np.ndarray]:
        """Apply one batch of prices, in order (a symbol may repeat; unknown symbols are added
        with the default threshold). Returns field -> array aligned with the input rows:
        float64 with NaN for null, bool for ``anomaly``. Prices must be finite, > 0 and within
        [PRICE_MIN, PRICE_MAX]; otherwise ValueError naming the symbol, and nothing changes.
        """
        if isinstance(symbols, np.ndarray):
            symbols = symbols.tolist()
        x = np.ascontiguousarray(prices, dtype=np.float64)
        m = len(symbols)
        if x.ndim != 1 or x.shape[0] != m:
            raise ValueError(f"got {m} symbols but prices of shape {x.shape}")
        if m == 0:
            return _empty_result(0)
        if m == self._n and m > _SCALAR_MAX and not self._cold and not self._queued:
            names = self._names
            if symbols is names or (
                symbols == names if type(symbols) is list else list(symbols) == names
            ):
                return self._update_fast(x)  # checks the prices itself
        if m > _SCALAR_MAX:  # two comparisons and a count: cheaper than min and max
            flags = np.empty((2, m), dtype=bool)
            np.greater_equal(x, _C_PRICE_MIN, flags[0])
            np.less_equal(x, _C_PRICE_MAX, flags[1])
            ok = count_true(flags) == 2 * m
        else:  # a numpy call costs ~1 us even for one element
            ok = all(PRICE_MIN <= v <= PRICE_MAX for v in x.tolist())
        if not ok:  # (NaN fails every comparison)
            _raise_bad_price(symbols, x)
        if self._queued:
            self._flush()
        if m == self._n and not self._cold:
            names = self._names
            if symbols is names or (
                symbols == names if type(symbols) is list else list(symbols) == names
            ):
                if m <= _SCALAR_MAX:
                    return self._update_scalar(x)
                return self._update_fast(x)
        return self._update_general(symbols, x)

    def update_records(
        self, symbols: Sequence[str], prices: Sequence[float] | np.ndarray
    ) -> list[dict[str, str | float | bool | None]]:
        """`update`, returned as one dict per input row: ``symbol`` plus every field, with None
        for null (what a serializer or the database layer wants)."""
        result = self.update(symbols, prices)
        cols = [result[f].tolist() for f in FIELDS]
        records: list[dict[str, str | float | bool | None]] = []
        for i, symbol in enumerate(symbols):
            rec: dict[str, str | float | bool | None] = {"symbol": str(symbol)}
            for field, col in zip(FIELDS, cols, strict=True):
                value = col[i]
                rec[field] = None if value != value else value  # NaN -> None
            records.append(rec)
        return records

    def _update_fast(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every symbol once, in engine order, all past warm-up: no gather, no scatter."""
        fast = self._fast
        if fast is None or self._gpos is None:
            fast = self._prepare_fast()
        rows, pairs, v, flags, flag_lo, flag_hi = fast
        n = self._n
        np.greater_equal(x, _C_PRICE_MIN, flag_lo)
        np.less_equal(x, _C_PRICE_MAX, flag_hi)
        if count_true(flags) != 2 * n:  # a price out of range or NaN: nothing changed yet
            _raise_bad_price(self._names, x)
        g = self._gpos
        v.xs4[...] = x
        if g < WINDOW - 1:  # oldest and previous prices are adjacent ring rows
            np.subtract(v.xs2, pairs[g], v.w2)
        else:
            np.subtract(x, rows[g], v.dl)
            np.subtract(x, rows[0], v.d)
        rows[g][...] = x  # x replaces the oldest price; the ring is written backwards
        self._gpos = g = g - 1 if g else WINDOW - 1
        forced = self._tick_due()
        out = tuple(np.empty((NOUT, n)))
        anomaly = np.empty(n, dtype=bool)

        def recompute(local: np.ndarray | None) -> None:
            cols = local if local is not None else np.arange(n)
            self._recompute(cols, cols, x, np.full(len(cols), g), v)

        self._rsi_guard = kernel(v, out, anomaly, recompute, forced, self._rsi_guard)
        self._pend += 1
        return _result(out, anomaly)

    def _tick_due(self) -> np.ndarray | bool | None:
        """Count down every symbol's periodic recompute (all symbols take this tick). Returns
        which are due: True for all, a mask, or None."""
        due = self._due
        if due is None:
            dues = self._ints[_DUE]
            np.subtract(dues, 1, dues)
            hit = dues <= 0
            if count_true(hit):
                dues[hit] = RECOMPUTE_PERIOD
                return hit
            return None
        if due > 1:
            self._due = due - 1
            return None
        self._due = RECOMPUTE_PERIOD
        return True

    def _update_scalar(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The fast path for a handful of symbols: the same arithmetic on Python floats
        (kernel_scalar), since numpy's per-call overhead would cost far more."""
        fast = self._fast
        if fast is None or self._gpos is None:
            fast = self._prepare_fast()
        rows = fast[0]
        g = self._gpos
        prices = x.tolist()
        oldest = rows[g]
        olds = oldest.tolist()
        prevs = rows[g + 1 if g < WINDOW - 1 else 0].tolist()
        oldest[...] = x
        self._gpos = g = g - 1 if g else WINDOW - 1
        forced = self._tick_due()
        st = self._st
        cols = st.T.tolist()
        outs, flags = [], []
        for i, col in enumerate(cols):
            due = forced is True or (forced is not None and bool(forced[i]))
            out, redo = kernel_scalar(col, prices[i], olds[i], prevs[i], due)
            if redo:
                chron = self._ring[(g - _AR) % WINDOW, i : i + 1]  # (20, 1), oldest first
                md, m2 = (float(v[0]) for v in window_stats(chron, x[i : i + 1]))
                col[ANC], col[MD], col[M2], col[M2MAX] = prices[i], md, m2, m2
                out[O_Z] = -md
            flags.append(finish_scalar(col, out))
            outs.append(out)
        st.T[...] = cols
        self._pend += 1
        return _result(tuple(np.array(outs).T.copy()), np.array(flags))

    def _prepare_fast(self) -> tuple:
        """Align every symbol's ring write slot (results never depend on the slot layout)
        and cache the row views and scratch arrays of the fast path."""
        if self._gpos is None:
            self._materialise()
            n = self._n
            pos = self._ints[_POS]
            # slot of the j-th oldest price is (pos - j) % 20; with pos = 0 it is (-j) % 20
            idx = (pos[None, :] + _AR[:, None]) % WINDOW
            self._ring = np.ascontiguousarray(self._ring[idx, np.arange(n)])
            pos[:] = 0
            self._gpos = 0
        ring = self._ring
        flags = np.empty((2, self._n), dtype=bool)  # price checks: >= PRICE_MIN, <= PRICE_MAX
        fast = (
            list(ring),
            [ring[j : j + 2] for j in range(WINDOW - 1)],
            views(self._st),
            flags,
            *flags,
        )
        self._fast = fast
        return fast

    def _update_general(self, symbols: Sequence[str], x: np.ndarray) -> dict[str, np.ndarray]:
        """Any batch: rounds of distinct symbols (round r = r-th occurrence), in order."""
        cols, unique = self._columns(symbols)
        m = len(cols)
        if unique and m == self._n and not self._cold:
            # every symbol once, in another order: permute the prices, not the state
            ordered = np.empty(m)
            ordered[cols] = x
            fast = self._update_scalar if m <= _SCALAR_MAX else self._update_fast
            return {field: value[cols] for field, value in fast(ordered).items()}
        self._materialise()
        out = np.empty((NOUT, m))
        anomaly = np.empty(m, dtype=bool)
        for rows in [slice(None)] if unique else _rounds(cols):
            c = cols[rows]
            if len(c) <= _SCALAR_MAX and self._ints[_CNT, c].min() >= STEADY_AFTER:
                step = self._step_scalar
            else:
                step = self._step_general
            o = np.empty((NOUT, len(c)))
            a = np.empty(len(c), dtype=bool)
            step(c, x[rows], o, a)
            out[:, rows] = o
            anomaly[rows] = a
        self._resync()
        return _result(out, anomaly)

    def _columns(self, symbols: Sequence[str]) -> tuple[np.ndarray, bool]:
        """Engine columns of `symbols` (adding unknown ones, all validated first) and whether
        they are distinct. Remembers the last answer: feeds often repeat the same order."""
        if type(symbols) is not list:
            symbols = list(symbols)
        cache = self._cache
        if cache is not None and cache[0] == symbols:
            return cache[1], cache[2]
        index = self._index
        try:
            cols = list(map(index.__getitem__, symbols))
        except KeyError:
            unknown = [s for s in dict.fromkeys(symbols) if s not in index]
            for s in unknown:  # validate all before adding any
                _check_name(s)
            for s in unknown:
                self.add_symbol(s)
            cols = list(map(index.__getitem__, symbols))
        if self._queued:
            self._flush()
        result = np.array(cols, dtype=np.intp)
        unique = len(set(cols)) == len(cols)
        self._cache = (symbols.copy(), result, unique)
        return result, unique

    def _step_general(
        self, cols: np.ndarray, x: np.ndarray, out: np.ndarray, anomaly: np.ndarray
    ) -> None:
        """One price for each of the distinct columns `cols` (arrays materialised)."""
        n = self._n
        ints = self._ints
        cnt = ints[_CNT, cols]
        c = cnt + 1  # prices seen including this one
        pos = ints[_POS, cols]  # slot of the oldest price, written next (backwards)
        ring = self._ring.reshape(-1)
        f_old = pos * n + cols
        dl = x - ring[f_old]
        d = x - ring[(pos + 1) % WINDOW * n + cols]
        ring[f_old] = x
        pos_after = pos - 1
        pos_after[pos_after < 0] = WINDOW - 1
        ints[_POS, cols] = pos_after
        ints[_CNT, cols] = c
        due = ints[_DUE, cols] - 1
        periodic = due <= 0
        due[periodic] = RECOMPUTE_PERIOD
        ints[_DUE, cols] = due

        st = self._st[:, cols]  # gathered copy
        cold = cnt < STEADY_AFTER
        any_cold = bool(cold.any())
        forced = periodic & (c >= WINDOW)
        if any_cold:
            pre = st[:, cold]
            early = c < WINDOW
            if early.any():  # no window yet: keep the sliding update harmless
                dl[early] = 0.0
                st[MD, early] = 0.0
                st[M2, early] = 1.0
                st[M2MAX, early] = 1.0
                st[ANC, early] = x[early]
            forced |= c == WINDOW  # first full window: exact statistics
        v = views(st)
        v.xs4[...] = x
        v.dl[...] = dl
        v.d[...] = d

        def recompute(local: np.ndarray | None) -> None:
            rows = np.arange(len(cols)) if local is None else local
            self._recompute(rows, cols[rows], x, pos_after[rows], v)

        kernel(v, tuple(out), anomaly, recompute, forced if forced.any() else None, True)
        if any_cold:
            _warmup(st, pre, cold, c, x, d, out, anomaly)
        self._st[:, cols] = st

    def _step_scalar(
        self, cols: np.ndarray, x: np.ndarray, out: np.ndarray, anomaly: np.ndarray
    ) -> None:
        """`_step_general` for a few distinct columns past warm-up, on Python floats (the
        same bits; see kernel_scalar)."""
        ring, ints, st = self._ring, self._ints, self._st
        prices = x.tolist()
        for i, c in enumerate(cols.tolist()):
            pos, due = int(ints[_POS, c]), int(ints[_DUE, c]) - 1
            after = pos - 1 if pos else WINDOW - 1
            old = float(ring[pos, c])
            prev = float(ring[pos + 1 if pos < WINDOW - 1 else 0, c])
            ring[pos, c] = prices[i]
            ints[_POS, c] = after
            ints[_CNT, c] += 1
            ints[_DUE, c] = due if due > 0 else RECOMPUTE_PERIOD
            col = st[:, c].tolist()
            values, redo = kernel_scalar(col, prices[i], old, prev, due <= 0)
            if redo:
                chron = ring[(after - _AR) % WINDOW, c : c + 1]  # (20, 1), oldest first
                md, m2 = (float(v[0]) for v in window_stats(chron, x[i : i + 1]))
                col[ANC], col[MD], col[M2], col[M2MAX] = prices[i], md, m2, m2
                values[O_Z] = -md
            anomaly[i] = finish_scalar(col, values)
            out[:, i] = values
            st[:, c] = col

    def _recompute(
        self, rows: np.ndarray, cols: np.ndarray, x: np.ndarray, pos_after: np.ndarray, v: Views
    ) -> None:
        """Exact window statistics for local `rows` (engine columns `cols`), whose ring slots
        already hold the new prices `x[rows]`: re-anchor at the current price."""
        n = self._n
        flat = ((pos_after - _AR[:, None]) % WINDOW) * n + cols
        chron = self._ring.reshape(-1)[flat]  # (20, k) C-contiguous, oldest first
        xr = x[rows]
        md, m2 = window_stats(chron, xr)
        st = v.st
        st[ANC, rows] = xr
        st[MD, rows] = md
        st[M2, rows] = m2
        st[M2MAX, rows] = m2
        v.u[rows] = -md  # x - mean, with mean = x + md

    # ------------------------------------------------------------------ bookkeeping

    def _set_threshold_col(self, col: int, threshold: float) -> None:
        if col >= self._n:
            name = self._names[col]
            self._queued[col - self._n] = (name, threshold)
        else:
            self._st[THR, col] = threshold

    def _flush(self) -> None:
        """Materialise queued symbols as new columns (one O(n) reallocation for all)."""
        if not self._queued:
            return
        self._grow([t for _, t in self._queued])
        self._queued.clear()

    def _grow(self, thresholds: Sequence[float] | np.ndarray) -> None:
        """Materialise fresh columns for the last len(thresholds) names of self._names."""
        self._materialise()
        k = len(thresholds)
        st = np.zeros((NSTATE, k))
        st[M2] = 1.0
        st[M2MAX] = 1.0
        st[ANC] = 1.0
        st[THR] = thresholds
        ints = np.zeros((3, k), dtype=np.int64)
        ints[_DUE] = RECOMPUTE_PERIOD  # a symbol's schedule depends on its own ticks only
        ints[_POS] = 0 if self._gpos is None else self._gpos
        self._st = np.concatenate([self._st, st], axis=1)
        self._ints = np.concatenate([self._ints, ints], axis=1)
        self._ring = np.concatenate([self._ring, np.zeros((WINDOW, k))], axis=1)
        self._n += k
        if self._due != RECOMPUTE_PERIOD:
            self._due = None  # no longer one schedule for all: the arrays are authoritative
        self._cold += k
        self._rsi_guard = True
        self._fast = None

    def _materialise(self) -> None:
        """Write the lazily kept fast-path state into the arrays (they are exact afterwards,
        and the lazy values stay valid)."""
        n = self._n
        if not n:
            self._pend = 0
            return
        if self._gpos is not None:
            self._ints[_POS, :n] = self._gpos
        if self._pend:
            self._ints[_CNT, :n] += self._pend
            self._pend = 0
        if self._due is not None:
            self._ints[_DUE, :n] = self._due

    def _resync(self) -> None:
        """After arrays changed: are positions and schedules uniform (lazy mode possible)?"""
        n = self._n
        ints = self._ints
        if n == 0:
            self._gpos, self._due, self._cold, self._rsi_guard = 0, RECOMPUTE_PERIOD, 0, False
            return
        pos = ints[_POS]
        self._gpos = int(pos[0]) if (pos == pos[0]).all() else None
        due = ints[_DUE]
        self._due = int(due[0]) if (due == due[0]).all() else None
        self._cold = int(np.count_nonzero(ints[_CNT] < STEADY_AFTER))
        self._rsi_guard = bool((self._st[S] == 0.0).any())

    # ------------------------------------------------------------------ serialisation

    def _export_state(self, cols: np.ndarray) -> codec.State:
        self._flush()
        self._materialise()
        pos = self._ints[_POS, cols]
        chron = self._ring[(pos[:, None] - _AR) % WINDOW, cols[:, None]]
        return codec.State(
            [self._names[c] for c in cols.tolist()],
            self._ints[[_CNT, _DUE]][:, cols],
            self._st[:, cols],
            chron,
        )

    def to_bytes(self) -> bytes:
        """The whole state (every symbol, thresholds included), versioned and checksummed.
        `from_bytes` in any process continues bit for bit."""
        self._flush()
        return codec.encode(codec.KIND_ENGINE, self._export_state(np.arange(self._n)))

    @classmethod
    def from_bytes(cls, data: bytes) -> IndicatorEngine:
        """Rebuild an engine written by `to_bytes`; ValueError if `data` is not one."""
        state = codec.decode(data, codec.KIND_ENGINE)
        engine = cls()
        engine._load(state, np.arange(len(state.names)))
        return engine

    def export_symbols(self, symbols: Iterable[str]) -> dict[str, bytes]:
        """One self-contained blob per symbol (KeyError for an unknown one), for
        `import_symbols` in any engine. Vectorised: one gather of all the symbols' state
        into rows, then codec.encode_symbols (about 1 us a symbol)."""
        symbols = list(symbols)
        if not symbols:
            return {}
        index = self._index
        cols = _lookup(index, symbols)
        self._flush()
        self._materialise()
        return dict(zip(symbols, codec.encode_symbols(symbols, self._rows(cols)), strict=True))

    def import_symbols(self, blobs: Mapping[str, bytes]) -> None:
        """Add (or overwrite) symbols from `export_symbols` blobs. All blobs are validated
        first (ValueError, nothing changed); the key must be the blob's symbol. Vectorised:
        codec.decode_symbols, then one scatter of all the rows."""
        if not blobs:
            return
        names = list(blobs)
        rows = codec.decode_symbols(names, list(blobs.values()))
        self._flush()
        index = self._index
        missing = list(itertools.filterfalse(index.__contains__, names))
        if missing:  # names checked by decode_symbols: non-empty str, <= 1024 bytes
            start = len(self._names)
            self._names += missing
            index.update(zip(missing, range(start, start + len(missing)), strict=True))
            self._grow(np.full(len(missing), DEFAULT_THRESHOLD))
        self._materialise()
        cols = _lookup(index, names)
        words = rows.view("<i8")
        ints = self._ints
        slot = 0 if self._gpos is None else self._gpos
        ints[_CNT, cols] = words[:, 0]
        ints[_DUE, cols] = words[:, 1]
        ints[_POS, cols] = slot
        self._st[:, cols] = rows[:, 2 : 2 + NSTATE].T
        # the j-th oldest price goes to slot (slot - j) % 20, so slot r gets the j = (slot - r)
        # % 20-th: the rows of the transposed chronology, permuted, into columns `cols`
        self._ring[:, cols] = rows[:, 2 + NSTATE :].T[(slot - _AR) % WINDOW]
        self._resync()

    def _rows(self, cols: np.ndarray) -> np.ndarray:
        """The state of columns `cols` as codec.SYMBOL_WORDS-word rows (arrays materialised)."""
        rows = np.empty((len(cols), codec.SYMBOL_WORDS))
        words = rows.view(np.int64)
        ints = self._ints
        words[:, 0] = ints[_CNT].take(cols)
        words[:, 1] = ints[_DUE].take(cols)
        rows[:, 2 : 2 + NSTATE] = self._st.take(cols, axis=1).T
        chron = rows[:, 2 + NSTATE :]  # oldest first: slot (pos - j) % 20 for the j-th oldest
        if self._gpos is not None:
            chron[...] = self._ring.take(cols, axis=1)[(self._gpos - _AR) % WINDOW].T
        else:
            flat = (_CHRON_SLOTS * self._n).take(ints[_POS].take(cols), axis=0)
            np.add(flat, cols[:, None], flat)
            chron[...] = self._ring.reshape(-1).take(flat)
        return rows

    def _load(self, state: codec.State, cols: np.ndarray) -> None:
        """Write decoded state into columns `cols` (adding the symbols if needed)."""
        for name in state.names:
            if name not in self._index:
                self.add_symbol(name)
        self._flush()
        self._materialise()
        slot = 0 if self._gpos is None else self._gpos
        self._ints[_CNT, cols] = state.ints[0]
        self._ints[_DUE, cols] = state.ints[1]
        self._ints[_POS, cols] = slot
        self._st[:, cols] = state.floats
        self._ring[(slot - _AR[None, :]) % WINDOW, cols[:, None]] = state.chron
        self._resync()


# ---------------------------------------------------------------------- helpers


def _warmup(
    st: np.ndarray,
    pre: np.ndarray,
    cold: np.ndarray,
    c: np.ndarray,
    x: np.ndarray,
    d: np.ndarray,
    out: np.ndarray,
    anomaly: np.ndarray,
) -> None:
    """Overwrite the kernel's steady-state results of symbols still in warm-up (c = prices
    seen including this one) with TA-Lib's warm-up: sums, then seeds. `pre` is their state
    before this tick (columns of `cold`)."""
    rows = np.flatnonzero(cold)
    cc = c[rows]
    xc = x[rows]
    new = st[:, rows]

    # EMA20: sum of the first 19 prices, seed = sum of the first 20 / 20
    e0 = pre[E0] + xc
    np.divide(e0, WINDOW, out=e0, where=cc == WINDOW)
    new[E0] = np.where(cc <= WINDOW, e0, new[E0])
    # EMA26 (MACD slow): same with 26
    e2 = pre[E2] + xc
    np.divide(e2, MACD_SLOW, out=e2, where=cc == MACD_SLOW)
    new[E2] = np.where(cc <= MACD_SLOW, e2, new[E2])
    # EMA12 (MACD fast): TA-Lib starts it with the slow one: mean of prices 15..26
    first_fast = MACD_SLOW - MACD_FAST + 1
    e1 = np.where(cc > first_fast, pre[E1], 0.0) + xc
    np.divide(e1, MACD_FAST, out=e1, where=cc == MACD_SLOW)
    new[E1] = np.where(cc < first_fast, 0.0, np.where(cc <= MACD_SLOW, e1, new[E1]))
    # signal: sum of the MACD values from price 26 on, seed at price 34 = their mean
    macd = new[E1] - new[E2]
    first_sig = MACD_SLOW + MACD_SIGNAL - 1
    sg = np.where(cc > MACD_SLOW, pre[SIG], 0.0) + macd
    np.divide(sg, MACD_SIGNAL, out=sg, where=cc == first_sig)
    new[SIG] = np.where(cc < MACD_SLOW, 0.0, sg)  # cold rows all have cc <= first_sig
    # RSI: sums of the first 14 doubled gains and of the moves (kernel.py), from price 2 on;
    # seed at price 15 = their means
    dc = d[rows]
    ad = np.abs(dc)
    gs = np.where(cc > 1, pre[G : S + 1] + np.stack([dc + ad, ad]), 0.0)
    np.divide(gs, RSI_PERIOD, out=gs, where=cc == RSI_PERIOD + 1)
    new[G : S + 1] = np.where(cc <= RSI_PERIOD + 1, gs, new[G : S + 1])
    st[:, rows] = new

    nan = np.nan
    o = out[:, rows]
    o[O_EMA] = np.where(cc < WINDOW, nan, new[E0])
    seeded = cc == RSI_PERIOD + 1
    if seeded.any():
        s = new[S]
        o[O_RSI] = np.where(seeded, 50.0 * (new[G] / np.where(s == 0.0, 1.0, s)), o[O_RSI])
    o[O_RSI, cc <= RSI_PERIOD] = nan
    ready = cc == first_sig
    o[O_MACD] = np.where(ready, macd, nan)
    o[O_SIG] = np.where(ready, new[SIG], nan)
    o[O_HIST] = np.where(ready, macd - new[SIG], nan)
    early = cc < WINDOW
    if early.any():
        for row in (O_SMA, O_Z, O_BBU, O_BBM, O_BBL):
            o[row, early] = nan
    out[:, rows] = o
    a = anomaly[rows]
    a[early] = False
    anomaly[rows] = a


def _rounds(cols: np.ndarray) -> list[np.ndarray]:
    """Split batch rows into rounds of distinct columns: round r holds each column's r-th
    occurrence, rows in batch order within a round."""
    m = len(cols)
    order = np.argsort(cols, kind="stable")
    first = np.ones(m, dtype=bool)
    first[1:] = cols[order[1:]] != cols[order[:-1]]
    positions = np.arange(m)
    occ = np.empty(m, dtype=np.intp)
    occ[order] = positions - np.maximum.accumulate(np.where(first, positions, 0))
    by_round = np.argsort(occ, kind="stable")
    return np.split(by_round, np.flatnonzero(np.diff(occ[by_round])) + 1)


def _lookup(index: dict[str, int], names: list[str]) -> np.ndarray:
    """index[name] for each of `names` (KeyError for an unknown one), as an intp array."""
    if len(names) == 1:
        return np.array([index[names[0]]], np.intp)
    return np.array(operator.itemgetter(*names)(index), np.intp)


def _result(out: np.ndarray, anomaly: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "sma_20": out[0],
        "ema_20": out[1],
        "rsi_14": out[2],
        "zscore_20": out[3],
        "anomaly": anomaly,
        "macd": out[4],
        "macd_signal": out[5],
        "macd_hist": out[6],
        "bb_upper": out[7],
        "bb_middle": out[8],
        "bb_lower": out[9],
    }


def _empty_result(m: int) -> dict[str, np.ndarray]:
    return _result(np.full((NOUT, m), np.nan), np.zeros(m, dtype=bool))


def _check_threshold(threshold: float) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"anomaly threshold must be a number, got {threshold!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"anomaly threshold must be finite and > 0, got {threshold!r}")
    return value


def _check_name(symbol: object) -> None:
    if not isinstance(symbol, str) or not symbol:
        raise TypeError(f"symbol must be a non-empty str, got {symbol!r}")
    if len(symbol.encode()) > _MAX_NAME_BYTES:
        raise ValueError(f"symbol longer than {_MAX_NAME_BYTES} bytes: {symbol[:40]!r}...")


def _raise_bad_price(symbols: Sequence[str], x: np.ndarray) -> None:
    bad = ~((x >= PRICE_MIN) & (x <= PRICE_MAX))
    i = int(np.flatnonzero(bad)[0])
    raise ValueError(
        f"invalid price {float(x[i])!r} for symbol {symbols[i]!r} (row {i}): prices must be "
        f"finite and within [{PRICE_MIN:g}, {PRICE_MAX:g}]"
    )
