"""Firing: each candidate rule's frequency in tick order, then its events stored."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from apps.alerts import conditions as c
from apps.alerts import messages
from apps.alerts.evaluation import sql
from apps.alerts.evaluation.batch import Candidates, Evaluation, Ticks
from apps.alerts.evaluation.fired import FiredTable
from apps.alerts.evaluation.history import MINUTE
from apps.alerts.evaluation.index import FREQ_CODES, RuleIndex, new_rules_version
from apps.market import keys
from apps.ops.redis_client import execute_packed
from apps.ops.timestamps import UNIX_EPOCH

_ONCE, _ONCE_PER_BAR, _EVERY_TIME = (FREQ_CODES[f] for f in (c.ONCE, c.ONCE_PER_BAR, c.EVERY_TIME))
_CONDITION_NAMES = list(c.CONDITIONS)


def _datetime(micros: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=micros)


def fire(
    cursor,
    client,
    *,
    index: RuleIndex,
    fired: FiredTable,
    ticks: Ticks,
    candidates: Candidates,
    result: Evaluation,
) -> None:
    """Apply each candidate rule's frequency in tick order; store what fires in `result`."""
    chosen = _choose(index, fired, ticks, candidates)
    if not len(chosen):
        if fired.dirty:
            execute_packed(client, [fired.command()])
        return
    firings = _Firings.of(index, ticks, candidates, chosen)
    stored = _store(cursor, firings)
    # Before the commit: if the batch then fails, its replay fires on the same tick again
    # (a rule is never held back on the tick it fired on).
    _remember(client, fired, firings)
    if firings.once:
        result.after_commit.append([b"SET", keys.ALERT_RULES_VERSION.encode(), new_rules_version()])
    result.events += _event_messages(firings, stored)


def _choose(
    index: RuleIndex, fired: FiredTable, ticks: Ticks, candidates: Candidates
) -> np.ndarray:
    """The positions of the candidates their rule's frequency lets fire."""
    rules = candidates.rule
    keys_ = fired.key([ticks.symbols[t] for t in candidates.tick.tolist()], index.ids[rules])
    last = fired.last(keys_)
    now = ticks.tick_micros[candidates.tick]
    frequency = index.frequencies[rules]
    if len(np.unique(keys_)) == len(keys_):  # each (rule, symbol) once: all at once
        return _choose_at_once(
            rules=rules, last=last, now=now, frequency=frequency, cooldowns=index.cooldowns
        )
    # a symbol with several ticks: one at a time, in tick order
    return _choose_in_order(
        keys_, rules=rules, last=last, now=now, frequency=frequency, cooldowns=index.cooldowns
    )


def _choose_at_once(
    *,
    rules: np.ndarray,
    last: np.ndarray,
    now: np.ndarray,
    frequency: np.ndarray,
    cooldowns: np.ndarray,
) -> np.ndarray:
    """`_choose` for candidates of distinct (rule, symbol), vectorised."""
    go = (
        (last < 0)
        | (last == now)  # the replay of a batch that fired and then failed
        | (frequency == _ONCE)
        | ((frequency == _ONCE_PER_BAR) & (last // MINUTE != now // MINUTE))
        | ((frequency == _EVERY_TIME) & (now - last >= cooldowns[rules]))
    )
    once = np.flatnonzero(go & (frequency == _ONCE))
    if len(once):  # a rule for every symbol fires once, on the first of them
        _, first = np.unique(rules[once], return_index=True)
        go[np.setdiff1d(once, once[first])] = False
    return np.flatnonzero(go)


def _choose_in_order(
    keys_: np.ndarray,
    *,
    rules: np.ndarray,
    last: np.ndarray,
    now: np.ndarray,
    frequency: np.ndarray,
    cooldowns: np.ndarray,
) -> np.ndarray:
    """`_choose` one candidate at a time, each seeing what the ones before it fired."""
    chosen, latest, done_once = [], {}, set()
    for p, (key, r) in enumerate(zip(keys_.tolist(), rules.tolist(), strict=True)):
        t_now, before = int(now[p]), latest.get(key, int(last[p]))
        f = frequency[p]
        if f == _ONCE:
            if r in done_once:
                continue
            done_once.add(r)
        elif before >= 0 and before != t_now:
            if f == _ONCE_PER_BAR and before // MINUTE == t_now // MINUTE:
                continue
            if f == _EVERY_TIME and t_now - before < cooldowns[r]:
                continue
        latest[key] = t_now
        chosen.append(p)
    return np.array(chosen, np.int64)


@dataclass(frozen=True)
class _Firings:
    """The chosen pairs, as the columns of their events."""

    rule_ids: list[int]
    owners: list[int]
    symbols: list[str]
    micros: list[int]
    conditions: list[str]
    prices: list[float]
    values: list[float]
    texts: list[str]
    once: bool  # a rule that fires only once is among them

    @classmethod
    def of(
        cls, index: RuleIndex, ticks: Ticks, candidates: Candidates, chosen: np.ndarray
    ) -> _Firings:
        rules = candidates.rule[chosen]
        at = candidates.tick[chosen]
        ch_rules = rules.tolist()
        symbols = [ticks.symbols[t] for t in at.tolist()]
        prices = ticks.prices[at].tolist()
        values = candidates.value[chosen].tolist()
        conditions = [_CONDITION_NAMES[index.codes[r]] for r in ch_rules]
        texts = [
            c.render_message(index.templates[r], symbol=s, price=p, value=v, condition=cond)
            for r, s, p, v, cond in zip(ch_rules, symbols, prices, values, conditions, strict=True)
        ]
        return cls(
            rule_ids=index.ids[rules].tolist(),
            owners=index.owners[rules].tolist(),
            symbols=symbols,
            micros=ticks.tick_micros[at].tolist(),
            conditions=conditions,
            prices=prices,
            values=values,
            texts=texts,
            once=bool((index.frequencies[rules] == _ONCE).any()),
        )


def _store(cursor, firings: _Firings) -> dict[tuple[int, str, int], int]:
    """Insert the events (those a run of this batch stored already are skipped) and mark
    their rules fired; answers the new events' ids by (rule, symbol, tick time)."""
    cursor.execute(
        sql.INSERT_EVENTS,
        {
            "rules": sql.numbers(firings.rule_ids), "owners": sql.numbers(firings.owners),
            "symbols": sql.texts(firings.symbols), "micros": sql.numbers(firings.micros),
            "conditions": sql.texts(firings.conditions), "prices": sql.numbers(firings.prices),
            "values": sql.numbers(firings.values), "messages": sql.texts(firings.texts),
        },
    )  # fmt: skip
    stored = {(r, s, m): event_id for event_id, r, s, m in cursor.fetchall()}
    cursor.execute(
        sql.MARK_FIRED,
        {
            "rules": sql.numbers(firings.rule_ids),
            "micros": sql.numbers(firings.micros),
            "once": c.ONCE,
        },
    )
    return stored


def _remember(client, fired: FiredTable, firings: _Firings) -> None:
    """Record when each rule fired per symbol, and write the table back to Redis."""
    by_symbol: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for s, r, m in zip(firings.symbols, firings.rule_ids, firings.micros, strict=True):
        by_symbol[s][0].append(r)
        by_symbol[s][1].append(m)
    for s, (r, m) in by_symbol.items():
        fired.record(s, r, m)
    execute_packed(client, [fired.command()])


def _event_messages(firings: _Firings, stored: dict[tuple[int, str, int], int]) -> list[dict]:
    """The message of each event this run stored, with its owner."""
    ids, symbols, micros = firings.rule_ids, firings.symbols, firings.micros
    events = []
    for i, key in enumerate(zip(ids, symbols, micros, strict=True)):
        event_id = stored.get(key)
        if event_id is None:
            continue  # stored by an earlier run of this batch
        events.append(
            {
                "owner": firings.owners[i],
                **messages.alert_event(
                    id=event_id,
                    rule=ids[i],
                    symbol=symbols[i],
                    ts=_datetime(micros[i]),
                    condition=firings.conditions[i],
                    price=firings.prices[i],
                    value=firings.values[i],
                    message=firings.texts[i],
                    acknowledged=False,
                ),
            }
        )
    return events
