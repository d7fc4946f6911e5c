"""Soak: the full load for an hour (or `--minutes`), sampled every 10 s, then the stored
record checked against what the clients received.

    python bench/soak.py [--minutes 60] [--quick]

The load is `bench/support/load.py`'s: the processes of `make run` (granian, two Daphne
processes on one socket, the Celery worker and beat, the idle sources process) on an
embedded PostgreSQL (durable) and Redis of the run's own, 500 symbols ticking every 0.5 s,
2,000 alert rules on one user, 200 `/ws/market` readers (10 symbols each) and 20
`/ws/stocks/{symbol}` readers, REST at 100 requests/s (open loop) across the endpoints.

Every 10 s: ingest lag p99 (slot -> worker start) and batch p99 (from the pipeline's batch
stats), how far the newest batch's slot is behind the clock, tick-to-client p99 (receive
time - tick ts, every tick every reader got), REST p50/p99 and errors by endpoint, RSS of
every process tree (PostgreSQL as PSS), CPU, database size, Redis memory, open connections
(PostgreSQL, Redis, readers), `/ready`. At the end: each measure's first and last 10
minutes (a third of the run when it is shorter than 30 minutes) and the slope of a straight
line through all of it; the invariants (no tick lost, duplicated or invented for a reader
that stayed connected; bars equal their ticks; every tick has its snapshot; indicators equal
TA-Lib on 10 symbols). Writes bench/results/soak.json and bench/results/soak_*.png.

Loopback only; every process started here is stopped on every way out; the run is bounded
by `--minutes` plus a few minutes of start and checks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_info, print_table, write_results
from bench.support.load import (
    LoadConfig,
    LoadRun,
    charts,
    invariants,
    micros_text,
    trend_rows,
    trends,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true",
                        help="2 minutes, 50 symbols, 20 + 4 readers, 20 requests/s")  # fmt: skip
    args = parser.parse_args()
    config = LoadConfig()
    minutes = args.minutes
    if args.quick:
        minutes = min(minutes, 2.0)
        config = LoadConfig.quick()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine_before = machine_info()
    with LoadRun(config, "soak") as run:
        run.start()
        deadline = run.t0 + minutes * 60.0
        while time.time() < deadline:
            time.sleep(min(2.0, max(0.0, deadline - time.time())))
        outcome = run.finish()
        samples = run.samples
    window = min(10.0, minutes / 3.0)
    summary = trends(samples, window)
    print(f"\nsoak, {minutes:g} minutes from {started}; load average at the start "
          f"{machine_before.get('loadavg')}, at the end {machine_info().get('loadavg')} "
          "(the machine is shared: other work counts in every figure)")  # fmt: skip
    print_table(
        f"each measure, sampled every {config.sample_every:g} s: mean of the first and the "
        f"last {window:g} minutes, the most, and the slope of a fitted line",
        ["measure", "unit", f"first {window:g} min", f"last {window:g} min", "max",
         "slope per hour"],
        trend_rows(summary),
    )  # fmt: skip
    checks = outcome["checks"]
    rows = invariants(checks, allowed_missing_slots=0)
    print_table("end invariants (against the Tick table)", ["invariant", "count", ""], rows)
    if checks["missing_slots"]:
        shown = ", ".join(micros_text(m) for m in checks["missing_slots"][:20])
        expired = samples[-1].get("ticks_expired") if samples else None
        print(f"missing slots (UTC): {shown}; tick runs dropped as too late "
              f"(mf:stats:ticks_expired): {expired}")  # fmt: skip
    rest = outcome["rest"] or {}
    errors: dict[str, int] = {}
    for s in samples:
        for k, v in s.get("rest_errors_by", {}).items():
            errors[k] = errors.get(k, 0) + v
    print(f"REST: {rest.get('sent')} requests sent; errors by endpoint {errors or 'none'}")
    print(f"restarts of app processes (none expected): {outcome['restarts']}")
    if outcome["log_errors"]:
        print(f"exceptions the processes logged: {outcome['log_errors']}")
    paths = charts("soak", samples, [])
    print("charts: " + ", ".join(p.name for p in paths))
    write_results("soak", {
        "started": started,
        "minutes": minutes,
        "machine_at_start": machine_before,
        "setup": config.describe(),
        "quick": args.quick,
        "summary_window_minutes": window,
        "summary": summary,
        "invariants": [{"invariant": r[0], "count": r[1], "status": r[2]} for r in rows],
        "checks": {**checks, "missing_slots": len(checks["missing_slots"]),
                   "missing_slot_times": [micros_text(m) for m in checks["missing_slots"][:500]]},
        "rest": {**rest, "errors_by_endpoint": errors},
        "restarts": outcome["restarts"],
        "log_errors": outcome["log_errors"],
        "samples": samples,
        "charts": [p.name for p in paths],
    })  # fmt: skip


if __name__ == "__main__":
    main()
