"""Alert evaluation: stage 5 of `pipeline.ingest` (docs/architecture.md#alert-evaluation).

It runs inside the batch's transaction, after the ticks, bars and snapshots, and only over
the rules of the symbols in the batch. Rules are held in memory, indexed by symbol, and
reloaded when the rules' version in Redis changes (every rule change bumps it): `index`.

Conditions are evaluated for every (tick, rule) pair at once with numpy (`stage`); only the
pairs whose condition holds go through the frequency check one by one (`firing`). What a
rule needs to know about the past comes from (`history`, `fired`):
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
The statements are in `sql`.
"""

from apps.alerts.evaluation.batch import Evaluation
from apps.alerts.evaluation.history import forget_process_state
from apps.alerts.evaluation.index import CODES, RuleIndex, new_rules_version, rule_index
from apps.alerts.evaluation.stage import evaluate

__all__ = [
    "CODES",
    "Evaluation",
    "RuleIndex",
    "evaluate",
    "forget_process_state",
    "new_rules_version",
    "rule_index",
]
