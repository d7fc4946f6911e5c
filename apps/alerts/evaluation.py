"""Alert evaluation: stage 5 of `pipeline.ingest` (docs/architecture.md#alert-evaluation).

It runs inside the batch's transaction, after the ticks, bars and snapshots, and only over
the rules of the symbols in the batch. Rules are held in memory, indexed by symbol, and
reloaded when the rules' version in Redis changes (every rule change bumps it).

Conditions are evaluated for every (tick, rule) pair at once with numpy; only the pairs
whose condition holds go through the frequency check one by one. What a rule needs to
know about the past comes from:
- crossings: the previous tick's price, SMA and EMA, from the previous tick in the batch or
  from Redis (`keys.ALERT_PREVIOUS`), used only when stamped with exactly the tick the
  database says came before; otherwise from that tick's stored snapshot;
- change over a window: the stored tick at or before `ts - window`;
- volume: the 1-minute bar (already upserted by this batch) and the 20 before it;
- frequency: when each (rule, symbol) last fired, in Redis (`keys.ALERT_FIRED`), with the
  stored events as the fallback when Redis has forgotten.

Events are inserted with ON CONFLICT DO NOTHING on (rule, symbol, ts) in the same
transaction as the ticks: a batch that is replayed after a crash either finds its ticks
stored (and evaluates nothing) or was rolled back whole (and fires the same events again,
once). A rule that fired on a tick is never held back by its cooldown on that same tick.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from apps.alerts import conditions as c
from apps.alerts import messages
from apps.market import keys
from apps.market.constants import BAR_INTERVAL_1M
from apps.ops.redis_client import execute_packed

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = 60_000_000
_NEVER = np.iinfo(np.int64).max
_PREVIOUS = struct.Struct("<qddd")  # tick (µs since epoch), price, sma_20, ema_20

CODES = {code: n for n, code in enumerate(c.CONDITIONS)}
_FREQ_CODES = {code: n for n, (code, _) in enumerate(c.FREQUENCIES)}
_ONCE, _ONCE_PER_BAR, _EVERY_TIME = (_FREQ_CODES[f] for f in (c.ONCE, c.ONCE_PER_BAR, c.EVERY_TIME))
_CROSSINGS = {CODES[k] for k in (c.CROSSES_ABOVE, c.CROSSES_BELOW, c.SMA_CROSSES_ABOVE_EMA,
                                  c.SMA_CROSSES_BELOW_EMA)}  # fmt: skip
_WINDOWED = {CODES[c.CHANGE_UP], CODES[c.CHANGE_DOWN]}
_VOLUME = CODES[c.VOLUME_SPIKE]


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@dataclass
class RuleIndex:
    """The active rules as columns (one row a rule), and which rows each symbol has."""

    version: bytes | None = None
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    owners: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    thresholds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    windows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # µs
    frequencies: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    cooldowns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # µs
    expires: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # µs
    templates: list[str] = field(default_factory=list)
    by_symbol: dict[str, np.ndarray] = field(default_factory=dict)
    every_symbol: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def rows_for(self, symbol: str) -> np.ndarray:
        own = self.by_symbol.get(symbol)
        if own is None:
            return self.every_symbol
        return np.concatenate((own, self.every_symbol)) if len(self.every_symbol) else own

    @classmethod
    def load(cls, version: bytes | None) -> RuleIndex:
        from apps.alerts.models import AlertRule

        rows = list(
            AlertRule.objects.filter(active=True)
            .exclude(expires_at__lte=datetime.now(UTC))
            .order_by("id")
            .values_list(
                "id", "owner_id", "symbol_id", "condition", "threshold", "window_seconds",
                "frequency", "cooldown_seconds", "expires_at", "message",
            )
        )  # fmt: skip
        index = cls(version=version)
        if not rows:
            return index
        cols = list(zip(*rows, strict=True))
        index.ids = np.array(cols[0], np.int64)
        index.owners = np.array(cols[1], np.int64)
        index.codes = np.array([CODES[x] for x in cols[3]], np.int8)
        index.thresholds = np.array([np.nan if x is None else x for x in cols[4]], float)
        index.windows = np.array([(x or 0) * 1_000_000 for x in cols[5]], np.int64)
        index.frequencies = np.array([_FREQ_CODES[x] for x in cols[6]], np.int8)
        index.cooldowns = np.array(cols[7], np.int64) * 1_000_000
        index.expires = np.array([_NEVER if x is None else _micros(x) for x in cols[8]], np.int64)
        index.templates = list(cols[9])
        grouped: dict[str | None, list[int]] = defaultdict(list)
        for row, symbol in enumerate(cols[2]):
            grouped[symbol].append(row)
        index.every_symbol = np.array(grouped.pop(None, []), np.int64)
        index.by_symbol = {s: np.array(r, np.int64) for s, r in grouped.items()}
        return index


_index = RuleIndex()


def new_rules_version() -> bytes:
    """A random token (not a counter: a counter restarts at the same values after Redis
    is flushed, and a worker would take its old index for current)."""
    return uuid.uuid4().hex.encode()


def rule_index(client) -> RuleIndex:
    """This process's rule index, reloaded if any rule changed since it was loaded."""
    global _index
    version = client.get(keys.ALERT_RULES_VERSION)
    if version is None:  # a new (or flushed) Redis: a fresh token, never one seen before
        client.set(keys.ALERT_RULES_VERSION, new_rules_version(), nx=True)
        version = client.get(keys.ALERT_RULES_VERSION)
    if version != _index.version:
        _index = RuleIndex.load(version)
    return _index


@dataclass
class Evaluation:
    """What stage 5 did: the events it stored, and what to write once the batch commits."""

    events: list[dict] = field(default_factory=list)  # messages.alert_event + "owner"
    after_commit: list[list[bytes]] = field(default_factory=list)  # Redis commands


# Arrays travel as one text literal each ("{a,b,c}"): psycopg quotes one string far faster
# than it adapts a list element by element. Times travel as epoch microseconds.
_AT = "(TIMESTAMPTZ 'epoch' + {} * INTERVAL '1 microsecond')"

_PREVIOUS_SNAPSHOTS_SQL = f"""
SELECT s.symbol_id, s.price, s.sma_20, s.ema_20
FROM unnest(%(symbols)s::varchar[], %(micros)s::bigint[]) AS q(symbol, micros)
JOIN indicators_indicatorsnapshot s ON s.symbol_id = q.symbol AND s.ts = {_AT.format("q.micros")}
"""

_WINDOW_SPANS_SQL = f"""
SELECT q.k, (extract(epoch FROM t.ts) * 1000000)::bigint, t.price
FROM unnest(%(symbols)s::varchar[], %(starts)s::bigint[], %(untils)s::bigint[])
     WITH ORDINALITY AS q(symbol, start, until, k)
CROSS JOIN LATERAL (
    (SELECT ts, price FROM market_tick
     WHERE symbol_id = q.symbol AND ts <= {_AT.format("q.start")} ORDER BY ts DESC LIMIT 1)
    UNION ALL
    (SELECT ts, price FROM market_tick
     WHERE symbol_id = q.symbol
       AND ts > {_AT.format("q.start")} AND ts <= {_AT.format("q.until")})
) t
ORDER BY q.k, t.ts
"""

_BAR_VOLUME_SQL = f"""
SELECT q.k, b.volume
FROM unnest(%(symbols)s::varchar[], %(micros)s::bigint[]) WITH ORDINALITY AS q(symbol, micros, k)
JOIN market_bar b
  ON b.symbol_id = q.symbol AND b.interval = %(interval)s AND b.ts = {_AT.format("q.micros")}
"""

_AVERAGE_VOLUME_SQL = f"""
SELECT q.k, prev.average, prev.bars
FROM unnest(%(symbols)s::varchar[], %(micros)s::bigint[]) WITH ORDINALITY AS q(symbol, micros, k)
CROSS JOIN LATERAL (
    SELECT avg(p.volume)::float8 AS average, count(*) AS bars FROM (
        SELECT b.volume FROM market_bar b
        WHERE b.symbol_id = q.symbol AND b.interval = %(interval)s
          AND b.ts < {_AT.format("q.micros")}
        ORDER BY b.ts DESC LIMIT %(bars)s
    ) p
) prev
"""

_LAST_FIRED_SQL = """
SELECT symbol, rule_id, (extract(epoch FROM max(ts)) * 1000000)::bigint
FROM alerts_alertevent
WHERE symbol = ANY(%(symbols)s::varchar[]) AND rule_id = ANY(%(rules)s::bigint[])
GROUP BY 1, 2
"""

_INSERT_EVENTS_SQL = f"""
INSERT INTO alerts_alertevent
    (rule_id, owner_id, symbol, ts, condition, price, value, message, acknowledged, created_at)
SELECT q.rule_id, q.owner_id, q.symbol, {_AT.format("q.micros")}, q.condition, q.price,
       q.value, q.message, false, now()
FROM unnest(
    %(rules)s::bigint[], %(owners)s::bigint[], %(symbols)s::varchar[], %(micros)s::bigint[],
    %(conditions)s::varchar[], %(prices)s::float8[], %(values)s::float8[],
    %(messages)s::varchar[]
) AS q(rule_id, owner_id, symbol, micros, condition, price, value, message)
ON CONFLICT (rule_id, symbol, ts) DO NOTHING
RETURNING id, rule_id, symbol, (extract(epoch FROM ts) * 1000000)::bigint
"""

_MARK_FIRED_SQL = f"""
UPDATE alerts_alertrule r
SET last_fired_at = GREATEST(r.last_fired_at, {_AT.format("q.micros")}),
    active = r.active AND r.frequency <> %(once)s
FROM (
    SELECT id, max(micros) AS micros
    FROM unnest(%(rules)s::bigint[], %(micros)s::bigint[]) AS u(id, micros)
    GROUP BY id
) AS q
WHERE r.id = q.id
"""


def _numbers(values) -> str:
    return "{" + ",".join(map(repr, values)) + "}"


def _texts(values) -> str:
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


_FIRED = np.dtype([("rule", "<i8"), ("micros", "<i8")])


def evaluate(
    cursor,
    client,
    *,
    symbols: list[str],
    micros: list[int],
    prices: np.ndarray,
    values: dict[str, np.ndarray],
    sizes: list[int],
    prev_micros: dict[str, int | None],
) -> Evaluation:
    """Evaluate every rule of the batch's symbols on each of its new ticks, in order."""
    index = rule_index(client)
    result = Evaluation()
    if not len(index.ids):
        return result

    # The (tick, rule) pairs to evaluate.
    tick_rows = [index.rows_for(s) for s in symbols]
    counts = np.fromiter(map(len, tick_rows), np.int64, len(tick_rows))
    if not counts.sum():
        return result
    pair_tick = np.repeat(np.arange(len(symbols)), counts)
    pair_rule = np.concatenate(tick_rows)
    tick_micros = np.array(micros, np.int64)
    codes = index.codes[pair_rule]
    thresholds = index.thresholds[pair_rule]
    live = tick_micros[pair_tick] < index.expires[pair_rule]
    crossing = live & np.isin(codes, list(_CROSSINGS))

    # What Redis remembers of the batch's symbols, in one round trip.
    ruled = list(dict.fromkeys(s for s, k in zip(symbols, counts.tolist(), strict=True) if k))
    names = [s.encode() for s in ruled]
    commands = [[b"HMGET", keys.ALERT_FIRED.encode(), *names]]
    if crossing.any():
        commands.append([b"HMGET", keys.ALERT_PREVIOUS.encode(), *names])
    replies = execute_packed(client, commands)

    sma, ema, rsi = values["sma_20"], values["ema_20"], values["rsi_14"]
    price = prices[pair_tick]
    fired_value = np.full(len(pair_rule), np.nan)
    hold = np.zeros(len(pair_rule), bool)

    def where(code: str) -> np.ndarray:
        return live & (codes == CODES[code])

    m = where(c.PRICE_ABOVE)
    hold |= m & (price > thresholds)
    m2 = where(c.PRICE_BELOW)
    hold |= m2 & (price < thresholds)
    fired_value[m | m2] = price[m | m2]

    m = where(c.RSI_ABOVE)
    m2 = where(c.RSI_BELOW)
    pair_rsi = rsi[pair_tick]
    hold |= (m & (pair_rsi > thresholds)) | (m2 & (pair_rsi < thresholds))
    fired_value[m | m2] = pair_rsi[m | m2]

    m = where(c.ANOMALY)
    hold |= m & values["anomaly"][pair_tick].astype(bool)
    fired_value[m] = values["zscore_20"][pair_tick][m]

    if crossing.any():
        prev_price, prev_sma, prev_ema = _previous(
            cursor, dict(zip(ruled, replies[1], strict=True)), symbols, micros, prices, sma, ema,
            prev_micros, needed=set(pair_tick[crossing].tolist()),
        )  # fmt: skip
        pp, ps, pe = prev_price[pair_tick], prev_sma[pair_tick], prev_ema[pair_tick]
        s, e = sma[pair_tick], ema[pair_tick]
        m = where(c.CROSSES_ABOVE)
        hold |= m & (pp <= thresholds) & (price > thresholds)
        m2 = where(c.CROSSES_BELOW)
        hold |= m2 & (pp >= thresholds) & (price < thresholds)
        fired_value[m | m2] = price[m | m2]
        m = where(c.SMA_CROSSES_ABOVE_EMA)
        hold |= m & (ps <= pe) & (s > e)
        m2 = where(c.SMA_CROSSES_BELOW_EMA)
        hold |= m2 & (ps >= pe) & (s < e)
        fired_value[m | m2] = s[m | m2]
        result.after_commit.append(_previous_command(symbols, micros, prices, sma, ema))

    windowed = live & np.isin(codes, list(_WINDOWED))
    if windowed.any():
        change = _window_change(cursor, symbols, tick_micros, prices, pair_tick,
                                index.windows[pair_rule], windowed)  # fmt: skip
        m = where(c.CHANGE_UP)
        hold |= m & (change >= thresholds)
        m2 = where(c.CHANGE_DOWN)
        hold |= m2 & (change <= -thresholds)
        fired_value[windowed] = change[windowed]

    volume = live & (codes == _VOLUME)
    if volume.any():
        ratio = _volume_ratio(cursor, symbols, tick_micros, sizes, pair_tick, volume, prev_micros)
        hold |= volume & (ratio > thresholds)
        fired_value[volume] = ratio[volume]

    hold &= ~np.isnan(fired_value)
    candidates = np.flatnonzero(hold)
    if len(candidates):
        fired = _FiredTable(cursor, index, ruled, replies[0])
        _fire(cursor, client, index, fired, result, symbols, tick_micros, prices,
              pair_tick[candidates], pair_rule[candidates], fired_value[candidates])  # fmt: skip
    return result


def _previous(
    cursor, stored, symbols, micros, prices, sma, ema, prev_micros, *, needed: set[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Price, SMA and EMA of the tick before each tick of the batch (NaN when unknown).

    `stored` holds what Redis has per symbol (`keys.ALERT_PREVIOUS`)."""
    n = len(symbols)
    before = np.full(n, -1)  # the previous tick of the same symbol in the batch
    last_in_batch: dict[str, int] = {}
    outside: dict[str, list[int]] = defaultdict(list)  # symbol -> its first tick(s) here
    for i, symbol in enumerate(symbols):
        j = last_in_batch.get(symbol)
        if j is not None:
            before[i] = j
        elif i in needed and prev_micros.get(symbol) is not None:
            outside[symbol].append(i)
        last_in_batch[symbol] = i
    inside = before >= 0
    prev = np.full((3, n), np.nan)
    for row, series in enumerate((prices, sma, ema)):
        prev[row, inside] = series[before[inside]]
    found: list[tuple[int, float, float, float]] = []
    missing = []
    for symbol, ticks in outside.items():
        blob = stored.get(symbol)
        fields = _PREVIOUS.unpack(blob) if blob and len(blob) == _PREVIOUS.size else None
        if fields and fields[0] == prev_micros[symbol]:
            found += [(i, *fields[1:]) for i in ticks]
        else:
            missing.append(symbol)
    if missing:  # Redis lost it or is behind: the stored snapshot of that tick
        cursor.execute(
            _PREVIOUS_SNAPSHOTS_SQL,
            {"symbols": _texts(missing), "micros": _numbers(prev_micros[s] for s in missing)},
        )
        for symbol, p, s, e in cursor.fetchall():
            nan = float("nan")
            found += [(i, p, nan if s is None else s, nan if e is None else e)
                      for i in outside[symbol]]  # fmt: skip
    if found:
        at, *columns = zip(*found, strict=True)
        prev[:, list(at)] = columns
    return prev[0], prev[1], prev[2]


def _previous_command(symbols, micros, prices, sma, ema) -> list[bytes]:
    """HSET of each symbol's last tick, for the crossings of the next batch."""
    last = {s: i for i, s in enumerate(symbols)}
    command = [b"HSET", keys.ALERT_PREVIOUS.encode()]
    for symbol, i in last.items():
        command += (
            symbol.encode(),
            _PREVIOUS.pack(micros[i], float(prices[i]), float(sma[i]), float(ema[i])),
        )
    return command


class _Span:
    """The stored ticks of one symbol from the last one at or before `start` up to `until`:
    the answer to "the price W seconds ago" for every moment in between."""

    __slots__ = ("at", "micros", "prices", "start", "until")

    def __init__(self, start: int, until: int) -> None:
        self.micros: list[int] = []
        self.prices: list[float] = []
        self.start, self.until, self.at = start, until, 0

    def price_at(self, moment: int) -> float | None:
        """The price of the last tick at or before `moment` (start <= moment <= until)."""
        micros, at = self.micros, self.at
        while at + 1 < len(micros) and micros[at + 1] <= moment:
            at += 1
        self.at = at
        return self.prices[at] if micros and micros[at] <= moment else float("nan")


# Per (symbol, window): the ticks a change-over-a-window rule will look back at over the
# next minute or two. A tick's window start moves on with every batch, so one lookup a
# batch per symbol and window would cost a database round of index scans every batch;
# a span is read once and then answers until the window start passes its end.
_spans: dict[tuple[str, int], _Span] = {}
_SPAN_MICROS = 60_000_000  # plus up to as much again, so spans do not all end together


def forget_process_state() -> None:
    """Drop what this process remembers between batches (as a newly started worker)."""
    _spans.clear()
    _bar_volume.clear()
    _average_volume.clear()


def _window_change(cursor, symbols, tick_micros, prices, pair_tick, windows, mask):
    """Change % of each masked pair's tick over its rule's window (NaN without history)."""
    pairs = np.flatnonzero(mask)
    ticks = pair_tick[pairs]
    # One lookup per tick and window, however many rules share them.
    wanted, inverse = np.unique(np.stack((ticks, windows[pairs])), axis=1, return_inverse=True)
    # Spans hold committed ticks only: those before this batch (which may yet roll back).
    committed = int(tick_micros.min()) - 1
    keys_ = [(symbols[t], w) for t, w in zip(wanted[0].tolist(), wanted[1].tolist(), strict=True)]
    moments = (tick_micros[wanted[0]] - wanted[1]).tolist()
    if len(_spans) > 200_000:  # symbols and windows no rule asks for any more
        _spans.clear()
    stale: list[tuple[str, _Span]] = []
    used: list[_Span] = []  # per lookup (a symbol's ticks in time order: moments ascend)
    for key, moment in zip(keys_, moments, strict=True):
        span = _spans.get(key)
        if span is None or not span.start <= moment <= span.until:
            if moment > committed:  # a window shorter than the batch: this once, uncached
                span = _Span(moment, moment)
            else:
                jitter = zlib.crc32(f"{key[0]}{key[1]}".encode()) % _SPAN_MICROS
                span = _Span(moment, min(moment + _SPAN_MICROS + jitter, committed))
            _spans[key] = span
            stale.append((key[0], span))
        used.append(span)
    if stale:
        cursor.execute(
            _WINDOW_SPANS_SQL,
            {
                "symbols": _texts([symbol for symbol, _ in stale]),
                "starts": _numbers(span.start for _, span in stale),
                "untils": _numbers(span.until for _, span in stale),
            },
        )
        for k, micros, price in cursor.fetchall():
            span = stale[k - 1][1]
            span.micros.append(micros)
            span.prices.append(price)
    start = np.array([span.price_at(moment) for span, moment in zip(used, moments, strict=True)])
    change = np.full(len(pair_tick), np.nan)
    change[pairs] = (prices[ticks] / start[inverse.reshape(-1)] - 1.0) * 100.0
    return change


# The 20 bars before a bucket are closed: their average is kept for the bucket's minute.
_average_volume: dict[tuple[str, int], float | None] = {}


# Per symbol, where its current 1-minute bar stood after the last batch this process
# evaluated: (last tick, bucket, volume). Used only when that tick is the one the database
# says came before this batch; otherwise the bar is read back from the database.
_bar_volume: dict[str, tuple[int, int, int]] = {}


def _volume_ratio(cursor, symbols, tick_micros, sizes, pair_tick, mask, prev_micros):
    """For each masked pair, the tick's 1-minute bar volume (up to and including the tick)
    over the average of the 20 bars before; NaN with fewer than 20 bars."""
    buckets = (tick_micros - tick_micros % _MINUTE).tolist()
    ticks = sorted(set(pair_tick[mask].tolist()))
    wanted = list(dict.fromkeys((symbols[t], buckets[t]) for t in ticks))
    params = {"interval": BAR_INTERVAL_1M, "bars": c.VOLUME_BARS}
    unknown = [key for key in wanted if key not in _average_volume]
    if unknown:
        if len(_average_volume) > 100_000:
            _average_volume.clear()
        cursor.execute(
            _AVERAGE_VOLUME_SQL,
            {
                **params,
                "symbols": _texts([k[0] for k in unknown]),
                "micros": _numbers(k[1] for k in unknown),
            },
        )
        for k, average, bars in cursor.fetchall():
            _average_volume[unknown[k - 1]] = average if bars == c.VOLUME_BARS else None

    # Each symbol's bar volume before its first tick here: 0 when the tick before it lies
    # in an earlier minute, else what this process saw last, else the stored bar.
    first: dict[str, int] = {}
    for t, symbol in enumerate(symbols):
        first.setdefault(symbol, t)
    start: dict[str, int] = {}
    reread = []
    for symbol in dict.fromkeys(symbols[t] for t in ticks):
        prev, bucket = prev_micros.get(symbol), buckets[first[symbol]]
        seen = _bar_volume.get(symbol)
        if prev is None or prev - prev % _MINUTE < bucket:
            start[symbol] = 0
        elif seen is not None and seen[0] == prev and seen[1] == bucket:
            start[symbol] = seen[2]
        else:
            reread.append((symbol, bucket))
    if reread:
        cursor.execute(
            _BAR_VOLUME_SQL,
            {
                **params,
                "symbols": _texts([k[0] for k in reread]),
                "micros": _numbers(k[1] for k in reread),
            },
        )
        stored = {reread[k - 1][0]: volume for k, volume in cursor.fetchall()}
        batch = defaultdict(int)  # the stored bar already holds this batch's ticks
        for t, symbol in enumerate(symbols):
            if buckets[t] == buckets[first[symbol]]:
                batch[symbol] += sizes[t]
        for symbol, _ in reread:
            start[symbol] = stored.get(symbol, 0) - batch[symbol]

    per_tick = np.full(len(symbols), np.nan)
    running: dict[str, tuple[int, int]] = {}  # symbol -> (bucket, volume so far)
    for t, symbol in enumerate(symbols):
        if symbol not in start:
            continue
        bucket, volume = running.get(symbol, (buckets[first[symbol]], start[symbol]))
        if buckets[t] != bucket:
            bucket, volume = buckets[t], 0
        volume += sizes[t]
        running[symbol] = (bucket, volume)
        average = _average_volume.get((symbol, bucket))
        if average:
            per_tick[t] = volume / average
        _bar_volume[symbol] = (int(tick_micros[t]), bucket, volume)
    ratio = np.full(len(pair_tick), np.nan)
    ratio[mask] = per_tick[pair_tick[mask]]
    return ratio


class _FiredTable:
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
            rule_ids = set(index.ids[index.every_symbol].tolist())
            for symbol in unknown:
                rule_ids.update(index.ids[index.by_symbol.get(symbol, [])].tolist())
            cursor.execute(
                _LAST_FIRED_SQL, {"symbols": _texts(unknown), "rules": _numbers(rule_ids)}
            )
            found = defaultdict(list)
            for symbol, rule_id, micros in cursor.fetchall():
                found[symbol].append((rule_id, micros))
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


def _fire(cursor, client, index, fired, result, symbols, tick_micros, prices, ticks, rules,
          fired_values):  # fmt: skip
    """Apply each candidate rule's frequency in tick order; store what fires."""
    rule_ids = index.ids[rules]
    keys_ = fired.key([symbols[t] for t in ticks.tolist()], rule_ids)
    last = fired.last(keys_)
    now = tick_micros[ticks]
    frequency = index.frequencies[rules]
    if len(np.unique(keys_)) == len(keys_):  # each (rule, symbol) once: all at once
        go = (
            (last < 0)
            | (last == now)  # the replay of a batch that fired and then failed
            | (frequency == _ONCE)
            | ((frequency == _ONCE_PER_BAR) & (last // _MINUTE != now // _MINUTE))
            | ((frequency == _EVERY_TIME) & (now - last >= index.cooldowns[rules]))
        )
        once = np.flatnonzero(go & (frequency == _ONCE))
        if len(once):  # a rule for every symbol fires once, on the first of them
            _, first = np.unique(rules[once], return_index=True)
            go[np.setdiff1d(once, once[first])] = False
        chosen = np.flatnonzero(go)
    else:  # a symbol with several ticks: one at a time, in tick order
        chosen, latest, done_once = [], {}, set()
        for p, (key, r) in enumerate(zip(keys_.tolist(), rules.tolist(), strict=True)):
            t_now, before = int(now[p]), latest.get(key, int(last[p]))
            f = frequency[p]
            if f == _ONCE:
                if r in done_once:
                    continue
                done_once.add(r)
            elif before >= 0 and before != t_now:
                if f == _ONCE_PER_BAR and before // _MINUTE == t_now // _MINUTE:
                    continue
                if f == _EVERY_TIME and t_now - before < index.cooldowns[r]:
                    continue
            latest[key] = t_now
            chosen.append(p)
        chosen = np.array(chosen, np.int64)
    if not len(chosen):
        if fired.dirty:
            execute_packed(client, [fired.command()])
        return

    condition_names = list(c.CONDITIONS)
    ch_ticks = ticks[chosen].tolist()
    ch_rules = rules[chosen].tolist()
    ids = rule_ids[chosen].tolist()
    owners = index.owners[rules[chosen]].tolist()
    fired_symbols = [symbols[t] for t in ch_ticks]
    fired_micros = now[chosen].tolist()
    fired_prices = prices[ticks[chosen]].tolist()
    fired_conditions = [condition_names[index.codes[r]] for r in ch_rules]
    values = fired_values[chosen].tolist()
    texts = [
        c.render_message(index.templates[r], symbol=s, price=p, value=v, condition=cond)
        for r, s, p, v, cond in zip(
            ch_rules, fired_symbols, fired_prices, values, fired_conditions, strict=True
        )
    ]
    cursor.execute(
        _INSERT_EVENTS_SQL,
        {
            "rules": _numbers(ids), "owners": _numbers(owners), "symbols": _texts(fired_symbols),
            "micros": _numbers(fired_micros), "conditions": _texts(fired_conditions),
            "prices": _numbers(fired_prices), "values": _numbers(values),
            "messages": _texts(texts),
        },
    )  # fmt: skip
    stored = {(r, s, m): event_id for event_id, r, s, m in cursor.fetchall()}
    cursor.execute(
        _MARK_FIRED_SQL, {"rules": _numbers(ids), "micros": _numbers(fired_micros), "once": c.ONCE}
    )
    # Before the commit: if the batch then fails, its replay fires on the same tick again
    # (a rule is never held back on the tick it fired on).
    by_symbol: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for s, r, m in zip(fired_symbols, ids, fired_micros, strict=True):
        by_symbol[s][0].append(r)
        by_symbol[s][1].append(m)
    for s, (r, m) in by_symbol.items():
        fired.record(s, r, m)
    execute_packed(client, [fired.command()])
    if (frequency[chosen] == _ONCE).any():
        result.after_commit.append([b"SET", keys.ALERT_RULES_VERSION.encode(), new_rules_version()])

    for i in range(len(chosen)):
        event_id = stored.get((ids[i], fired_symbols[i], fired_micros[i]))
        if event_id is None:
            continue  # stored by an earlier run of this batch
        result.events.append(
            {
                "owner": owners[i],
                **messages.alert_event(
                    id=event_id,
                    rule=ids[i],
                    symbol=fired_symbols[i],
                    ts=_datetime(fired_micros[i]),
                    condition=fired_conditions[i],
                    price=fired_prices[i],
                    value=values[i],
                    message=texts[i],
                    acknowledged=False,
                ),
            }
        )
