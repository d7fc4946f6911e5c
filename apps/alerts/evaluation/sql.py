"""The statements of alert evaluation, and the array literals they take."""

from __future__ import annotations

from collections.abc import Iterable

# Arrays travel as one text literal each ("{a,b,c}"): psycopg quotes one string far faster
# than it adapts a list element by element. Times travel as epoch microseconds.
_AT = "(TIMESTAMPTZ 'epoch' + {} * INTERVAL '1 microsecond')"

PREVIOUS_SNAPSHOTS = f"""
SELECT s.symbol_id, s.price, s.sma_20, s.ema_20
FROM unnest(%(symbols)s::varchar[], %(micros)s::bigint[]) AS q(symbol, micros)
JOIN indicators_indicatorsnapshot s ON s.symbol_id = q.symbol AND s.ts = {_AT.format("q.micros")}
"""

WINDOW_SPANS = f"""
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

BAR_VOLUME = f"""
SELECT q.k, b.volume
FROM unnest(%(symbols)s::varchar[], %(micros)s::bigint[]) WITH ORDINALITY AS q(symbol, micros, k)
JOIN market_bar b
  ON b.symbol_id = q.symbol AND b.interval = %(interval)s AND b.ts = {_AT.format("q.micros")}
"""

AVERAGE_VOLUME = f"""
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

LAST_FIRED = """
SELECT symbol, rule_id, (extract(epoch FROM max(ts)) * 1000000)::bigint
FROM alerts_alertevent
WHERE symbol = ANY(%(symbols)s::varchar[]) AND rule_id = ANY(%(rules)s::bigint[])
GROUP BY 1, 2
"""

INSERT_EVENTS = f"""
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

MARK_FIRED = f"""
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


def numbers(values: Iterable) -> str:
    """A numeric array literal."""
    return "{" + ",".join(map(repr, values)) + "}"


def texts(values: Iterable[str]) -> str:
    """A text array literal, each element quoted."""
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )
