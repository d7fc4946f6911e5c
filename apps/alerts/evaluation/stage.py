"""`evaluate`, stage 5 itself: the (tick, rule) pairs, their conditions, then firing."""

from __future__ import annotations

import time

import numpy as np

from apps.alerts import conditions as c
from apps.alerts import metrics
from apps.alerts.evaluation import history
from apps.alerts.evaluation.batch import Candidates, Evaluation, Pairs, Ticks
from apps.alerts.evaluation.fired import FiredTable
from apps.alerts.evaluation.firing import fire
from apps.alerts.evaluation.index import CODES, RuleIndex, rule_index
from apps.market import keys
from apps.ops.redis_client import execute_packed

_CROSSINGS = {CODES[k] for k in (c.CROSSES_ABOVE, c.CROSSES_BELOW, c.SMA_CROSSES_ABOVE_EMA,
                                  c.SMA_CROSSES_BELOW_EMA)}  # fmt: skip
_WINDOWED = {CODES[c.CHANGE_UP], CODES[c.CHANGE_DOWN]}
_VOLUME = CODES[c.VOLUME_SPIKE]


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
    began = time.perf_counter()
    result = Evaluation()
    pairs = _evaluate(cursor, client, result, symbols=symbols, micros=micros, prices=prices,
                      values=values, sizes=sizes, prev_micros=prev_micros)  # fmt: skip
    metrics.evaluated(pairs, len(result.events), time.perf_counter() - began)
    return result


def _evaluate(
    cursor,
    client,
    result: Evaluation,
    *,
    symbols: list[str],
    micros: list[int],
    prices: np.ndarray,
    values: dict[str, np.ndarray],
    sizes: list[int],
    prev_micros: dict[str, int | None],
) -> int:
    """`evaluate` into `result`; answers the (tick, rule) pairs evaluated."""
    index = rule_index(client)
    if not len(index.ids):
        return 0

    # The (tick, rule) pairs to evaluate.
    tick_rows = [index.rows_for(s) for s in symbols]
    counts = np.fromiter(map(len, tick_rows), np.int64, len(tick_rows))
    if not counts.sum():
        return 0
    ticks = Ticks(
        symbols=symbols,
        micros=micros,
        tick_micros=np.array(micros, np.int64),
        prices=prices,
        values=values,
        sizes=sizes,
        prev_micros=prev_micros,
    )
    pairs = _pairs(index, ticks, tick_rows, counts)
    crossing = pairs.live & np.isin(pairs.codes, list(_CROSSINGS))
    any_crossing = bool(crossing.any())

    ruled = list(dict.fromkeys(s for s, k in zip(symbols, counts.tolist(), strict=True) if k))
    fired_blobs, previous = _remembered(client, ruled, crossings=any_crossing)

    verdicts = _Verdicts(ticks, pairs)
    verdicts.levels()
    if any_crossing:
        verdicts.crossings(cursor, previous, crossing=crossing)
        result.after_commit.append(history.previous_command(ticks))
    verdicts.windowed(cursor, index)
    verdicts.volume(cursor)

    candidates = verdicts.candidates()
    if len(candidates.rule):
        fired = FiredTable(cursor, index, ruled, fired_blobs)
        fire(
            cursor,
            client,
            index=index,
            fired=fired,
            ticks=ticks,
            candidates=candidates,
            result=result,
        )
    return int(np.count_nonzero(pairs.live))  # a rule past its expiry is not evaluated


def _pairs(
    index: RuleIndex, ticks: Ticks, tick_rows: list[np.ndarray], counts: np.ndarray
) -> Pairs:
    """Each tick with each of `tick_rows` (its symbol's rules), `counts` of them."""
    pair_tick = np.repeat(np.arange(len(ticks.symbols)), counts)
    pair_rule = np.concatenate(tick_rows)
    return Pairs(
        tick=pair_tick,
        rule=pair_rule,
        codes=index.codes[pair_rule],
        thresholds=index.thresholds[pair_rule],
        live=ticks.tick_micros[pair_tick] < index.expires[pair_rule],
    )


def _remembered(
    client, ruled: list[str], *, crossings: bool
) -> tuple[list[bytes | None], dict[str, bytes | None]]:
    """What Redis remembers of the batch's symbols, in one round trip: per symbol, when its
    rules last fired (`keys.ALERT_FIRED`) and, for crossings, its last evaluated tick
    (`keys.ALERT_PREVIOUS`)."""
    names = [s.encode() for s in ruled]
    commands = [[b"HMGET", keys.ALERT_FIRED.encode(), *names]]
    if crossings:
        commands.append([b"HMGET", keys.ALERT_PREVIOUS.encode(), *names])
    replies = execute_packed(client, commands)
    previous = dict(zip(ruled, replies[1], strict=True)) if crossings else {}
    return replies[0], previous


class _Verdicts:
    """Per pair: whether its condition holds (`hold`) and the value its event would keep
    (`fired_value`), each condition's mask vectorised over the pairs."""

    def __init__(self, ticks: Ticks, pairs: Pairs) -> None:
        self.ticks, self.pairs = ticks, pairs
        self.price = ticks.prices[pairs.tick]
        self.fired_value = np.full(len(pairs.rule), np.nan)
        self.hold = np.zeros(len(pairs.rule), bool)

    def where(self, code: str) -> np.ndarray:
        return self.pairs.live & (self.pairs.codes == CODES[code])

    def levels(self) -> None:
        """Price and RSI past a level; anomalies."""
        pair_tick, thresholds, price = self.pairs.tick, self.pairs.thresholds, self.price
        values, hold, fired_value, where = (
            self.ticks.values,
            self.hold,
            self.fired_value,
            self.where,
        )
        m = where(c.PRICE_ABOVE)
        hold |= m & (price > thresholds)
        m2 = where(c.PRICE_BELOW)
        hold |= m2 & (price < thresholds)
        fired_value[m | m2] = price[m | m2]

        m = where(c.RSI_ABOVE)
        m2 = where(c.RSI_BELOW)
        pair_rsi = values["rsi_14"][pair_tick]
        hold |= (m & (pair_rsi > thresholds)) | (m2 & (pair_rsi < thresholds))
        fired_value[m | m2] = pair_rsi[m | m2]

        m = where(c.ANOMALY)
        hold |= m & values["anomaly"][pair_tick].astype(bool)
        fired_value[m] = values["zscore_20"][pair_tick][m]

    def crossings(self, cursor, stored: dict[str, bytes | None], *, crossing: np.ndarray) -> None:
        """The price across a level, or the SMA across the EMA, since the previous tick.

        `stored` holds what Redis has per symbol (`keys.ALERT_PREVIOUS`)."""
        pair_tick, thresholds, price = self.pairs.tick, self.pairs.thresholds, self.price
        hold, fired_value, where = self.hold, self.fired_value, self.where
        sma, ema = self.ticks.values["sma_20"], self.ticks.values["ema_20"]
        prev_price, prev_sma, prev_ema = history.previous(
            cursor, self.ticks, stored, needed=set(pair_tick[crossing].tolist())
        )
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

    def windowed(self, cursor, index: RuleIndex) -> None:
        """Change over the rule's window, up or down."""
        pairs = self.pairs
        windowed = pairs.live & np.isin(pairs.codes, list(_WINDOWED))
        if not windowed.any():
            return
        change = history.window_change(
            cursor,
            self.ticks,
            pair_tick=pairs.tick,
            windows=index.windows[pairs.rule],
            mask=windowed,
        )
        m = self.where(c.CHANGE_UP)
        self.hold |= m & (change >= pairs.thresholds)
        m2 = self.where(c.CHANGE_DOWN)
        self.hold |= m2 & (change <= -pairs.thresholds)
        self.fired_value[windowed] = change[windowed]

    def volume(self, cursor) -> None:
        """The 1-minute bar's volume over the average of the bars before."""
        volume = self.pairs.live & (self.pairs.codes == _VOLUME)
        if not volume.any():
            return
        ratio = history.volume_ratio(cursor, self.ticks, pair_tick=self.pairs.tick, mask=volume)
        self.hold |= volume & (ratio > self.pairs.thresholds)
        self.fired_value[volume] = ratio[volume]

    def candidates(self) -> Candidates:
        """The pairs whose condition holds (a pair whose value is NaN never fires)."""
        self.hold &= ~np.isnan(self.fired_value)
        at = np.flatnonzero(self.hold)
        return Candidates(
            tick=self.pairs.tick[at], rule=self.pairs.rule[at], value=self.fired_value[at]
        )
