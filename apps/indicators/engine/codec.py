"""Binary state format of the engine: whole engine (``to_bytes``) and per-symbol blobs.

Layout, little-endian, columnar so that thousands of symbols encode with a few numpy calls::

    header  <4s B B H I I   magic b"MFXI", format version, kind, 0, n symbols, name bytes
    u16[n]                  UTF-8 length of each name
    bytes                   the names, concatenated
    i64[2, n]               ticks seen, ticks until the next periodic exact recompute
    f64[11, n]              the float state block (rows in kernel.py)
    f64[n, 20]              the last 20 prices of each symbol, oldest first
    u32                     CRC-32 of everything before it

The ring buffer is stored in chronological order, so the physical slot layout of the
process that wrote it does not matter: a reader places it wherever suits it and continues
bit for bit (no result depends on where a price sits in the ring).

A per-symbol blob (KIND_SYMBOL) is this format with n = 1, so after its 18 + len(name) bytes
of header and name come the symbol's 33 state words (SYMBOL_WORDS: i64 ticks seen, i64 ticks
to the recompute, f64[11], f64[20]) and the CRC. `encode_symbols` and `decode_symbols` handle
thousands of them at once: the blobs of all symbols whose names have the same length form one
(k, blob length) byte array, filled, checked and cut with a few numpy calls; only the CRC-32
(zlib, in C) and the cutting run per blob. They read and write exactly the bytes of
`encode`/`decode` (tests hold them to it).
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Sequence
from typing import Final, NamedTuple, NoReturn

import numpy as np

from .constants import RECOMPUTE_PERIOD, WINDOW
from .kernel import ANC, M2, M2MAX, NSTATE, THR, G, S

MAGIC: Final = b"MFXI"
VERSION: Final = 2  # 2: RSI averages (not sums), M2 = variance (not sum), rows reordered
KIND_ENGINE: Final = 0
KIND_SYMBOL: Final = 1
_HEADER = struct.Struct("<4sBBHII")
_CRC = struct.Struct("<I")
MAX_NAME_BYTES: Final = 1024
SYMBOL_WORDS: Final = 2 + NSTATE + WINDOW
"""8-byte words of one symbol's state in a per-symbol blob (and in a row of `decode_symbols`):
ticks seen and ticks to the periodic recompute (int64), the float state block (rows in
kernel.py), then its last 20 prices, oldest first."""
_SYM_HEAD = _HEADER.size + 2  # header, then the u16 length of the one name
_SYM_FIXED = _SYM_HEAD + 8 * SYMBOL_WORDS + _CRC.size  # a blob is this + len(name) bytes
_CRC_RESIDUE = 0x2144DF1C  # CRC-32 of any message followed by its CRC-32 (little-endian)
_CUT_MAX = 4096  # largest count of a cached struct that cuts a buffer into blobs
_CRC_CHUNK = 512  # blobs whose CRC is computed from one cut of the buffer


class State(NamedTuple):
    """Decoded state of some symbols, in the engine's column layout."""

    names: list[str]
    ints: np.ndarray  # (2, n) int64: count, due
    floats: np.ndarray  # (11, n) float64
    chron: np.ndarray  # (n, 20) float64, oldest first


def encode(kind: int, state: State) -> bytes:
    """Serialise `state` (kind: KIND_ENGINE or KIND_SYMBOL)."""
    raw = [name.encode() for name in state.names]
    n = len(raw)
    lengths = np.array([len(r) for r in raw], dtype="<u2")
    names = b"".join(raw)
    body = b"".join(
        (
            _HEADER.pack(MAGIC, VERSION, kind, 0, n, len(names)),
            lengths.tobytes(),
            names,
            np.ascontiguousarray(state.ints, dtype="<i8").tobytes(),
            np.ascontiguousarray(state.floats, dtype="<f8").tobytes(),
            np.ascontiguousarray(state.chron, dtype="<f8").tobytes(),
        )
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode(data: bytes, kind: int) -> State:
    """Parse and validate a blob written by `encode`; ValueError if it is not one."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"indicator state must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size + _CRC.size:
        raise ValueError("indicator state: truncated (shorter than its header)")
    magic, version, got_kind, _reserved, n, names_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("indicator state: bad magic, not an indicator engine state")
    if version != VERSION:
        raise ValueError(
            f"indicator state: unsupported format version {version} (expected {VERSION})"
        )
    if got_kind != kind:
        what = {KIND_ENGINE: "a whole-engine state", KIND_SYMBOL: "a per-symbol state"}
        raise ValueError(f"indicator state: expected {what[kind]}, got kind {got_kind}")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise ValueError("indicator state: checksum mismatch (corrupt or truncated)")
    expected = _HEADER.size + 2 * n + names_len + 8 * n * (2 + NSTATE + WINDOW) + _CRC.size
    if len(data) != expected:
        raise ValueError(f"indicator state: length {len(data)}, expected {expected}")

    off = _HEADER.size
    lengths = np.frombuffer(data, "<u2", n, off).astype(np.int64)
    off += 2 * n
    if int(lengths.sum()) != names_len or (n and int(lengths.min()) == 0):
        raise ValueError("indicator state: inconsistent symbol names")
    raw = data[off : off + names_len]
    names: list[str] = []
    pos = 0
    try:
        for length in lengths.tolist():
            names.append(raw[pos : pos + length].decode())
            pos += length
    except UnicodeDecodeError as exc:
        raise ValueError("indicator state: symbol names are not UTF-8") from exc
    if len(set(names)) != n:
        raise ValueError("indicator state: duplicate symbol names")
    off += names_len
    ints = np.frombuffer(data, "<i8", 2 * n, off).reshape(2, n).astype(np.int64)
    off += 16 * n
    floats = np.frombuffer(data, "<f8", NSTATE * n, off).reshape(NSTATE, n).astype(np.float64)
    off += 8 * NSTATE * n
    chron = np.frombuffer(data, "<f8", WINDOW * n, off).reshape(n, WINDOW).astype(np.float64)

    if n:
        if int(ints[0].min()) < 0:
            raise ValueError("indicator state: negative tick count")
        if int(ints[1].min()) < 1 or int(ints[1].max()) > RECOMPUTE_PERIOD:
            raise ValueError("indicator state: recompute schedule out of range")
        if not (np.isfinite(floats).all() and np.isfinite(chron).all()):
            raise ValueError("indicator state: non-finite value")
        if (
            floats[THR].min() <= 0
            or floats[ANC].min() < 0
            or min(floats[G].min(), floats[S].min(), floats[M2].min(), floats[M2MAX].min()) < 0
            or chron.min() < 0
        ):
            raise ValueError("indicator state: value out of range")
    return State(names, ints, floats, chron)


# ---------------------------------------------------------------------- per-symbol blobs


def encode_symbols(names: Sequence[str], rows: np.ndarray) -> list[bytes]:
    """Per-symbol blobs (KIND_SYMBOL, byte for byte what `encode` writes for each symbol
    alone), in the order of `names`. rows: (m, SYMBOL_WORDS) C-contiguous float64, one per
    name, the first two words holding int64 bits."""
    m = len(names)
    if not m:
        return []
    raw, length = _same_length(names)
    if raw is not None:
        return _encode_group(raw, length, rows)
    encoded = [name.encode() for name in names]
    blobs: list[bytes] = [b""] * m
    for idx, length in _groups(np.fromiter(map(len, encoded), np.intp, m)):
        rows_of = idx.tolist()
        group = _encode_group(b"".join([encoded[i] for i in rows_of]), length, rows[idx])
        for i, blob in zip(rows_of, group, strict=True):
            blobs[i] = blob
    return blobs


def _encode_group(raw: bytes, length: int, rows: np.ndarray) -> list[bytes]:
    """Blobs of k symbols whose names (concatenated in `raw`) are all `length` bytes."""
    k = rows.shape[0]
    size = _SYM_FIXED + length
    body = size - _CRC.size
    buf = np.empty((k, size), np.uint8)
    buf[:, :_SYM_HEAD] = np.frombuffer(_symbol_head(length), np.uint8)
    buf[:, _SYM_HEAD : _SYM_HEAD + length] = np.frombuffer(raw, np.uint8).reshape(k, length)
    buf[:, _SYM_HEAD + length : body] = rows.astype("<f8", copy=False).view(np.uint8)
    # CRC of each blob's body, cut from the buffer a chunk at a time (the pieces are freed
    # and their memory reused: cheaper than cutting all of them at once)
    crc = np.empty(k, "<u4")
    for start in range(0, k, _CRC_CHUNK):
        count = min(_CRC_CHUNK, k - start)
        bodies = _cutter(body, _CRC.size, count).unpack_from(buf, start * size)
        crc[start : start + count] = np.fromiter(map(zlib.crc32, bodies), np.uint32, count)
    buf[:, body:] = crc.view(np.uint8).reshape(k, _CRC.size)
    return _cut(buf, size, k)


def decode_symbols(names: Sequence[object], blobs: Sequence[object]) -> np.ndarray:
    """Validate per-symbol blobs, blobs[i] being the state of names[i], and return their
    state as (m, SYMBOL_WORDS) rows (see encode_symbols). ValueError, naming the problem, if
    any blob is not a valid per-symbol state of its name: the checks of `decode` (one CRC-32
    per blob), and the name must be a str of at most MAX_NAME_BYTES bytes."""
    m = len(blobs)
    if len(names) != m:
        raise ValueError(f"indicator state: {len(names)} names for {m} blobs")
    if not m:
        return np.empty((0, SYMBOL_WORDS))
    if len(set(map(type, blobs))) != 1 or type(blobs[0]) is not bytes:
        blobs = [_as_bytes(blob) for blob in blobs]
    data: list[bytes] = blobs  # type: ignore[assignment]
    try:
        raw, length = _same_length(names)  # type: ignore[arg-type]
    except (TypeError, UnicodeEncodeError):  # a name that is not a str, or not UTF-8
        _explain(names, data)
    rows = None
    if raw is not None:
        sizes = set(map(len, data))
        if sizes == {_SYM_FIXED + length}:
            rows = _decode_group(raw, length, b"".join(data))
    else:  # names of several lengths
        encoded = [name.encode() for name in names]  # type: ignore[union-attr]
        lengths = np.fromiter(map(len, encoded), np.intp, m)
        if np.array_equal(np.fromiter(map(len, data), np.intp, m), lengths + _SYM_FIXED):
            rows = np.empty((m, SYMBOL_WORDS))
            for idx, length in _groups(lengths):
                rows_of = idx.tolist()
                raw = b"".join([encoded[i] for i in rows_of])
                group = _decode_group(raw, length, b"".join([data[i] for i in rows_of]))
                if group is None:
                    rows = None
                    break
                rows[idx] = group
    if (
        rows is None
        or not (np.fromiter(map(zlib.crc32, data), np.uint32, m) == _CRC_RESIDUE).all()
        or not _values_ok(rows)
    ):
        _explain(names, data)
    return rows  # type: ignore[return-value]


def _same_length(names: Sequence[str]) -> tuple[bytes | None, int]:
    """The names' UTF-8, concatenated, and their length if they are all ASCII and of one
    length (the usual case: then no per-name work is needed); else (None, 0)."""
    joined = "".join(names)
    raw = joined.encode()
    length = len(names[0])
    if len(raw) == len(joined) == len(names) * length and len(set(map(len, names))) == 1:
        return raw, length
    return None, 0


def _decode_group(raw: bytes, length: int, joined: bytes) -> np.ndarray | None:
    """State rows of the k blobs concatenated in `joined`, each `length` + _SYM_FIXED bytes,
    or None if some header is not that of a per-symbol state of a `length`-byte name or some
    name is not the expected one (raw: the expected names, concatenated)."""
    if not 0 < length <= MAX_NAME_BYTES:
        return None
    size = _SYM_FIXED + length
    buf = np.frombuffer(joined, np.uint8).reshape(-1, size)
    head = np.frombuffer(_symbol_head(length), np.uint8)
    # the reserved header field (bytes 6-7) is not checked, as `decode` does not check it
    if (
        np.not_equal(buf[:, :6], head[:6]).any()
        or np.not_equal(buf[:, 8:_SYM_HEAD], head[8:]).any()
        or np.not_equal(
            buf[:, _SYM_HEAD : _SYM_HEAD + length],
            np.frombuffer(raw, np.uint8).reshape(-1, length),
        ).any()
    ):
        return None
    return np.ascontiguousarray(buf[:, _SYM_HEAD + length : size - _CRC.size]).view("<f8")


def _values_ok(rows: np.ndarray) -> bool:
    """The value checks of `decode`, on state rows (see encode_symbols)."""
    ints = rows.view("<i8")
    if ints[:, 0].min() < 0 or ints[:, 1].min() < 1 or ints[:, 1].max() > RECOMPUTE_PERIOD:
        return False
    # the int words read as floats are finite (tiny) unless >= 0x7FF0 << 48: test them too,
    # unless that fails, as testing the float words alone would take a strided copy
    if not (np.isfinite(rows).all() or np.isfinite(rows[:, 2:]).all()):
        return False
    if np.less(rows, _LOWER).any():  # NaN, as the ints might read, compares False
        return False
    return bool(rows[:, 2 + THR].min() > 0)


# lower bound of each word of a state row: >= 0 for the anchor, RSI averages, M2 and the prices
_LOWER = np.full(SYMBOL_WORDS, -np.inf)
_LOWER[[2 + ANC, 2 + G, 2 + S, 2 + M2, 2 + M2MAX]] = 0.0
_LOWER[2 + NSTATE :] = 0.0


def _explain(names: Sequence[object], blobs: Sequence[bytes]) -> NoReturn:
    """Raise the ValueError for the first bad blob: what decoding it alone says."""
    for name, blob in zip(names, blobs, strict=True):
        state = decode(blob, KIND_SYMBOL)
        if state.names != [name]:
            raise ValueError(f"indicator state for {state.names[0]!r} given as {name!r}")
        if len(state.names[0].encode()) > MAX_NAME_BYTES:
            raise ValueError(f"indicator state: symbol name longer than {MAX_NAME_BYTES} bytes")
    raise ValueError("indicator state: invalid per-symbol state")  # pragma: no cover


def _as_bytes(blob: object) -> bytes:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise ValueError(f"indicator state must be bytes, not {type(blob).__name__}")
    return bytes(blob)


@functools.lru_cache(maxsize=64)
def _symbol_head(length: int) -> bytes:
    """Header and name length of the per-symbol state of a `length`-byte name."""
    return _HEADER.pack(MAGIC, VERSION, KIND_SYMBOL, 0, 1, length) + struct.pack("<H", length)


def _groups(lengths: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The indices of each distinct value of `lengths`, with the value."""
    order = np.argsort(lengths, kind="stable")
    cuts = np.flatnonzero(np.diff(lengths[order])) + 1
    return [(idx, int(lengths[idx[0]])) for idx in np.split(order, cuts)]


def _cut(data: bytes | np.ndarray, size: int, count: int) -> list[bytes]:
    """`data` cut into `count` pieces of `size` bytes: a few struct calls (cached formats of
    power-of-two counts), several times cheaper than slicing."""
    pieces: list[bytes] = []
    offset = 0
    while count:
        chunk = min(1 << (count.bit_length() - 1), _CUT_MAX)
        pieces += _cutter(size, 0, chunk).unpack_from(data, offset)
        offset += chunk * size
        count -= chunk
    return pieces


@functools.lru_cache(maxsize=48)
def _cutter(size: int, skip: int, count: int) -> struct.Struct:
    """Unpacks `count` pieces of `size` bytes, each followed by `skip` bytes left out."""
    return struct.Struct((f"{size}s{skip}x" if skip else f"{size}s") * count)
