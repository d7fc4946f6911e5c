"""Alert evaluation cost per batch: 10,000 active rules over 500 symbols, beside no rules.

    python bench/alerts.py [--quick]        (make bench runs it with real services)

The same 500-symbol batches (one tick per symbol, 0.5 s apart) go through the real
`pipeline.ingest` twice, on two sets of symbols with identical prices: once with no alert
rules, once with 20 rules on each symbol (every condition, thresholds near the price, so
conditions hold and fire as they would in a busy market). Before the measured batches,
25 minutes of history at one batch every 30 s give the volume rules their 20 bars and the
change rules their windows. Reported: the alert stage's time per batch (the issue's figure,
target < 20 ms), the whole batch's time, pairs evaluated and events fired.
Writes bench/results/alerts.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    drop_bench_database,
    print_table,
    setup_django_with_bench_database,
    summary,
    write_results,
)

TARGET_MS = 20.0
SYMBOLS = 500
RULES_PER_SYMBOL = 20
HISTORY_BATCHES = 50  # 25 minutes at one batch every 30 s


def _batches(symbols: list[str], start: datetime, history: int, measured: int):
    import numpy as np

    from apps.ingest.pipeline import TickBatch
    from apps.market import simulator

    params = [simulator.SimulatorParams(s, 0.05, 0.6, 12.0) for s in symbols]
    prices = np.full(len(symbols), 100.0)
    ts = start
    for i in range(history + measured):
        prices, sizes = simulator.step(
            params=params, last_prices=prices, slot=i, seed=7, interval=0.5
        )
        yield TickBatch(symbols=symbols, ts=[ts] * len(symbols), prices=prices, sizes=sizes)
        ts += timedelta(seconds=30 if i < history else 0.5)


def _make_rules(symbols: list[str], owners: list, rng: random.Random) -> int:
    from apps.alerts import conditions as c
    from apps.alerts.models import AlertRule

    def threshold(condition: str) -> float | None:
        kind = c.CONDITIONS[condition].threshold
        return {
            "price": rng.uniform(97.0, 103.0),
            "percent": rng.uniform(0.1, 1.0),
            "rsi": rng.choice([rng.uniform(25, 45), rng.uniform(55, 75)]),
            "multiple": rng.uniform(0.8, 2.0),
            "": None,
        }[kind]

    codes = list(c.CONDITIONS)
    rules = []
    for symbol in symbols:
        for k in range(RULES_PER_SYMBOL):
            condition = codes[k % len(codes)]
            every_time = rng.random() < 0.5
            rules.append(
                AlertRule(
                    owner=rng.choice(owners),
                    symbol_id=symbol,
                    condition=condition,
                    threshold=threshold(condition),
                    window_seconds=rng.choice([60, 300, 900])
                    if c.CONDITIONS[condition].needs_window
                    else None,
                    frequency=c.EVERY_TIME if every_time else c.ONCE_PER_BAR,
                    cooldown_seconds=rng.choice([5, 30, 60]) if every_time else 0,
                )
            )
    AlertRule.objects.bulk_create(rules, batch_size=2000)
    return len(rules)


def run(label: str, prefix: str, *, with_rules: bool, measured: int) -> dict:
    from django.contrib.auth import get_user_model

    from apps.alerts.evaluation import new_rules_version
    from apps.ingest.pipeline import ingest
    from apps.market import keys
    from apps.market.services import symbols_seed
    from apps.ops.redis_client import redis_client

    symbols = [f"{prefix}{i:04d}" for i in range(SYMBOLS)]
    symbols_seed(tickers=symbols)
    rules = 0
    if with_rules:
        users = get_user_model()
        owners = [users.objects.create_user(f"bench{prefix}{i}") for i in range(50)]
        rules = _make_rules(symbols, owners, random.Random(11))
    redis_client().set(keys.ALERT_RULES_VERSION, new_rules_version())  # reload the index
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    alert_ms, batch_ms, fired = [], [], []
    for i, batch in enumerate(_batches(symbols, start, HISTORY_BATCHES, measured)):
        t0 = time.perf_counter()
        result = ingest(batch)
        elapsed = (time.perf_counter() - t0) * 1000.0
        if i >= HISTORY_BATCHES:
            alert_ms.append(result.stage_ms["alerts"])
            batch_ms.append(elapsed)
            fired.append(result.alerts)
    from apps.alerts.models import AlertEvent

    return {
        "label": label,
        "symbols": SYMBOLS,
        "rules": rules,
        "batches": measured,
        "pairs_per_batch": rules,  # one tick per symbol, each with its symbol's rules
        "alert_stage_ms": summary(alert_ms),
        # Minute rollovers re-fire every once-per-bar rule that holds: an event storm.
        "alert_stage_ms_under_100_events": summary(
            [ms for ms, n in zip(alert_ms, fired, strict=True) if n < 100] or [0.0]
        ),
        "alert_stage_ms_100_events_or_more": summary(
            [ms for ms, n in zip(alert_ms, fired, strict=True) if n >= 100] or [0.0]
        ),
        "batch_ms": summary(batch_ms),
        "events_per_batch": summary([float(x) for x in fired]),
        "batches_with_100_events_or_more": sum(n >= 100 for n in fired),
        "events_total": AlertEvent.objects.count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer batches")
    args = parser.parse_args()
    measured = 60 if args.quick else 240

    name = setup_django_with_bench_database()
    try:
        baseline = run("no rules", "N", with_rules=False, measured=measured)
        loaded = run(f"{SYMBOLS * RULES_PER_SYMBOL:,} rules", "R", with_rules=True,
                     measured=measured)  # fmt: skip
    finally:
        drop_bench_database(name)

    rows = []
    for r in (baseline, loaded):
        a, b = r["alert_stage_ms"], r["batch_ms"]
        rows.append(
            [r["label"], r["pairs_per_batch"], a["p50"], a["p99"], a["max"], b["p50"], b["p99"],
             r["events_per_batch"]["mean"], f"< {TARGET_MS:g}"]
        )  # fmt: skip
    print_table(
        f"alert evaluation per batch of {SYMBOLS} ticks (pipeline stage 5), "
        f"{measured} batches each",
        ["run", "pairs", "alerts p50 ms", "p99 ms", "max ms", "batch p50 ms", "batch p99 ms",
         "events/batch", "target"],
        rows,
    )  # fmt: skip
    quiet, storm = (loaded[k] for k in ("alert_stage_ms_under_100_events",
                                        "alert_stage_ms_100_events_or_more"))  # fmt: skip
    print_table(
        "the same stage by the events a batch fired (minute rollovers re-fire once-per-bar rules)",
        ["batches", "count", "alerts p50 ms", "p99 ms", "max ms"],
        [
            ["< 100 events", measured - loaded["batches_with_100_events_or_more"],
             quiet["p50"], quiet["p99"], quiet["max"]],
            [">= 100 events", loaded["batches_with_100_events_or_more"],
             storm["p50"], storm["p99"], storm["max"]],
        ],
    )  # fmt: skip
    write_results(
        "alerts",
        {"baseline": baseline, "with_rules": loaded, "target_alert_stage_ms": TARGET_MS},
    )


if __name__ == "__main__":
    main()
