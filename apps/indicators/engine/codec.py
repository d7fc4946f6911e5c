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
"""

from __future__ import annotations

import struct
import zlib
from typing import Final, NamedTuple

import numpy as np

from .constants import RECOMPUTE_PERIOD, WINDOW
from .kernel import ANC, M2, M2MAX, NSTATE, THR, G, S

MAGIC: Final = b"MFXI"
VERSION: Final = 1
KIND_ENGINE: Final = 0
KIND_SYMBOL: Final = 1
_HEADER = struct.Struct("<4sBBHII")
_CRC = struct.Struct("<I")


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
