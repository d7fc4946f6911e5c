"""When each (rule, symbol) last fired: the state behind frequencies and cooldowns."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from apps.alerts.evaluation import sql
from apps.alerts.evaluation.index import RuleIndex
from apps.market import keys

_FIRED = np.dtype([("rule", "<i8"), ("micros", "<i8")])


class FiredTable:
    """When each (rule, symbol) of the batch last fired, from one Redis hash field per
    symbol (an array of rule id and tick time). A symbol Redis knows nothing about is read
    from the stored events, for every rule that applies to it, and written back whole."""

    def __init__(self, cursor, index: RuleIndex, symbols: list[str], blobs: list) -> None:
        self.position = {s: j for j, s in enumerate(symbols)}
        self.entries: dict[str, np.ndarray] = {}
        self.dirty: set[str] = set()
        unknown = [s for s, blob in zip(symbols, blobs, strict=True) if blob is None]
        for symbol, blob in zip(symbols, blobs, strict=True):
            if blob is not None:
                self.entries[symbol] = np.frombuffer(blob, _FIRED)
        if unknown:
            found = _last_fired_events(cursor, index, unknown)
            for symbol in unknown:
                self.entries[symbol] = np.array(found[symbol], _FIRED)
                self.dirty.add(symbol)
        parts = [(self.position[s] << 40) + e["rule"] for s, e in self.entries.items() if len(e)]
        micros = [e["micros"] for e in self.entries.values() if len(e)]
        keys_ = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        order = np.argsort(keys_)
        self.keys = keys_[order]
        self.micros = np.concatenate(micros)[order] if micros else np.zeros(0, np.int64)

    def key(self, symbols: list[str], rule_ids: np.ndarray) -> np.ndarray:
        return np.array([self.position[s] for s in symbols], np.int64) << 40 | rule_ids

    def last(self, keys_: np.ndarray) -> np.ndarray:
        """Tick time each key last fired, -1 for never."""
        if not len(self.keys):
            return np.full(len(keys_), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys_), len(self.keys) - 1)
        return np.where(self.keys[pos] == keys_, self.micros[pos], -1)

    def record(self, symbol: str, rule_ids: list[int], micros: list[int]) -> None:
        old = self.entries.get(symbol, np.zeros(0, _FIRED))
        new = np.array(list(zip(rule_ids, micros, strict=True)), _FIRED)
        merged = np.sort(np.concatenate((old, new)), order=["rule", "micros"])
        keep = np.append(merged["rule"][1:] != merged["rule"][:-1], True)  # a rule's latest
        self.entries[symbol] = merged[keep]
        self.dirty.add(symbol)

    def command(self) -> list[bytes]:
        command = [b"HSET", keys.ALERT_FIRED.encode()]
        for symbol in self.dirty:
            command += (symbol.encode(), self.entries[symbol].tobytes())
        return command


def _last_fired_events(
    cursor, index: RuleIndex, symbols: list[str]
) -> dict[str, list[tuple[int, int]]]:
    """Per symbol, (rule id, tick time) of each rule's latest stored event."""
    rule_ids = set(index.ids[index.every_symbol].tolist())
    for symbol in symbols:
        rule_ids.update(index.ids[index.by_symbol.get(symbol, [])].tolist())
    cursor.execute(sql.LAST_FIRED, {"symbols": sql.texts(symbols), "rules": sql.numbers(rule_ids)})
    found = defaultdict(list)
    for symbol, rule_id, micros in cursor.fetchall():
        found[symbol].append((rule_id, micros))
    return found
