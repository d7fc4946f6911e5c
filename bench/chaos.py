"""Chaos: the soak's load while one part at a time is killed with SIGKILL, at random every
30-90 s, for 10 minutes (or `--minutes`).

    python bench/chaos.py [--minutes 10] [--seed 1] [--quick]

The parts: web (granian and its workers), one ASGI (Daphne) process, the Celery worker (and
its pool), beat, Redis, PostgreSQL, and the sources process (`run_sources`, idle: no live
source is enabled in the run). They are drawn from a shuffled bag, so each is killed once
before any is killed again. The run's supervisor restarts a dead app process as the
launcher does (after 1 s, doubling while it keeps dying); a killed PostgreSQL or Redis is
started again here at once, on its port (Redis comes back empty: it keeps no data).

Per kill: how long until ticks flowed again (the first slot after the kill stored, seen in
the Tick table) and until `/ready` answered 200 again after its last failure (polled every
0.25 s for at least 20 s: a dead worker shows there only once its report is 10 s stale);
the readers it cut off and how long until each had ticks again; the slots missing from
the stored record near it. Only slots during which no worker or no database could run
(worker, beat, Redis, PostgreSQL kills) may be missing, up to 15 s after the part came
back (docs/operations.md#outages-of-redis-and-postgresql); a slot missing anywhere else
breaks the invariant. Then the soak's end checks. Writes bench/results/chaos.json and
bench/results/chaos_*.png (kills marked).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import http_ok, machine_info, print_table, write_results
from bench.support.load import (
    SETTLE_S,
    TICK_INTERVAL,
    LoadConfig,
    LoadRun,
    charts,
    invariants,
    micros_text,
    trend_rows,
    trends,
)

TARGETS = ["web", "asgi", "worker", "beat", "redis", "postgres", "sources"]
# Parts without which no slot can be stored: their outages may lose slots.
MAY_LOSE_SLOTS = {"worker", "beat", "redis", "postgres"}
GAP = (30.0, 90.0)  # s between kills
OBSERVE_MIN = 20.0  # s a kill is watched at least
OBSERVE_MAX = 90.0  # s at most


def newest_slot(db_url: str) -> float | None:
    """The newest stored tick of the first symbol (epoch s), or None while unreachable."""
    import psycopg

    try:
        with psycopg.connect(db_url, connect_timeout=1) as conn:
            value = conn.execute(
                "SELECT extract(epoch FROM max(ts))::float8 FROM market_tick "
                "WHERE symbol_id = 'AAPL'"
            ).fetchone()[0]
            return value
    except psycopg.Error:
        return None


def kill_and_watch(run: LoadRun, target: str, rng: random.Random) -> dict:
    """Kill one part, bring back what the supervisor does not, and watch it recover."""
    at = time.time()
    name = target
    if target in ("redis", "postgres"):
        pid = run.servers.kill(target)
        run.servers.restart(target)
    else:
        if target == "asgi":
            name = rng.choice([p.name for p in run.app.parts if p.name.startswith("asgi")])
        pid = run.app.kill(name)
    back = time.time()  # a server's restart returns once it answers
    run.event("kill", target=name)
    print(f"  killed {name} (pid {pid}) at t={at - run.t0:.0f} s", flush=True)
    ticks_at = ready_at = None
    ready_failed = False
    url = f"{run.app.web_url}/ready"
    while True:
        now = time.time()
        if ticks_at is None:
            newest = newest_slot(run.db_url)
            if newest is not None and newest > at:
                ticks_at = now
        ready = http_ok(url, timeout=1.0)
        if not ready:
            ready_failed, ready_at = True, None
        elif ready_at is None:
            ready_at = now
        watched = now - at
        if watched > OBSERVE_MAX or (
            watched > OBSERVE_MIN and ticks_at is not None and ready_at is not None
        ):
            break
        time.sleep(0.25)
    result = {
        "target": name,
        "pid": pid,
        "at": at,
        "t": at - run.t0,
        "server_back_s": back - at if target in ("redis", "postgres") else None,
        "ticks_flowing_after_s": None if ticks_at is None else ticks_at - at,
        "ready_failed": ready_failed,
        "ready_200_after_s": (ready_at - at) if ready_failed and ready_at else 0.0,
        "ready_recovered": ready_at is not None,
        "watched_s": time.time() - at,
    }
    ready_text = (
        f"failed, 200 again after {_s(result['ready_200_after_s'])}"
        if ready_failed
        else "never failed"
    )
    print(f"    ticks flowing after {_s(result['ticks_flowing_after_s'])}, /ready {ready_text}",
          flush=True)  # fmt: skip
    return result


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def per_kill(kills: list[dict], checks: dict, readers: list[dict], end: float) -> list[dict]:
    """Attribute missing slots and cut-off readers to kills."""
    missing = [m / 1e6 for m in checks["missing_slots"]]
    for i, k in enumerate(kills):
        recovered = k["at"] + (k["ticks_flowing_after_s"] or k["watched_s"])
        upto = kills[i + 1]["at"] if i + 1 < len(kills) else end
        window = (k["at"] - TICK_INTERVAL, min(upto, recovered + SETTLE_S))
        k["missing_slots"] = [m for m in missing if window[0] <= m <= window[1]]
        k["missing_slots_allowed"] = k["target"].split("-")[0] in MAY_LOSE_SLOTS
        cut, back = 0, []
        for r in readers:
            sessions = r["sessions"]
            for j, s in enumerate(sessions):
                closed = s["closed"]
                if closed is None or s["close"] == "stopped" or not k["at"] <= closed <= upto:
                    continue
                cut += 1
                later = next((x for x in sessions[j + 1 :] if x["first_tick_at"]), None)
                back.append(later["first_tick_at"] - k["at"] if later else None)
                break
        k["readers_cut"] = cut
        k["readers_back"] = sum(1 for b in back if b is not None)
        k["readers_ticks_again_max_s"] = max((b for b in back if b is not None), default=None)
    attributed = {m for k in kills for m in k["missing_slots"]}
    return [m for m in missing if m not in attributed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1, help="the kills' order and timing")
    parser.add_argument("--quick", action="store_true",
                        help="3 minutes, 50 symbols, 20 + 4 readers, 20 requests/s")  # fmt: skip
    args = parser.parse_args()
    config = LoadConfig()
    minutes = args.minutes
    if args.quick:
        minutes = min(minutes, 3.0)
        config = LoadConfig.quick()
    rng = random.Random(args.seed)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine_before = machine_info()
    kills: list[dict] = []
    with LoadRun(config, "chaos") as run:
        run.start()
        deadline = run.t0 + minutes * 60.0
        bag: list[str] = []
        next_at = run.t0 + rng.uniform(*GAP)
        # The last kill leaves time to watch it recover before the load stops.
        while next_at < deadline - OBSERVE_MIN:
            time.sleep(max(0.0, next_at - time.time()))
            if not bag:
                bag = rng.sample(TARGETS, len(TARGETS))
            kills.append(kill_and_watch(run, bag.pop(), rng))
            next_at = max(time.time(), kills[-1]["at"] + rng.uniform(*GAP))
        while time.time() < deadline:
            time.sleep(min(2.0, max(0.0, deadline - time.time())))
        end = time.time()
        outcome = run.finish()
        samples, events = run.samples, run.events
    checks = outcome["checks"]
    unexplained = per_kill(kills, checks, outcome["readers"], end)
    not_allowed = sum(len(k["missing_slots"]) for k in kills if not k["missing_slots_allowed"])
    print(f"\nchaos, {minutes:g} minutes from {started}, {len(kills)} kills (seed {args.seed}); "
          f"load average at the start {machine_before.get('loadavg')}, at the end "
          f"{machine_info().get('loadavg')} (the machine is shared)")  # fmt: skip
    print_table(
        "per kill: recovery, slots missing from the stored record near it, readers cut off",
        ["t s", "killed", "server up s", "ticks again s", "/ready", "missing slots",
         "may lose slots", "readers cut", "readers back", "back within s"],
        [[round(k["t"]), k["target"], "-" if k["server_back_s"] is None
          else k["server_back_s"], _s(k["ticks_flowing_after_s"]),
          f"200 again after {_s(k['ready_200_after_s'])}" if k["ready_failed"]
          else "never failed",
          len(k["missing_slots"]), "yes" if k["missing_slots_allowed"] else "no",
          k["readers_cut"], k["readers_back"], _s(k["readers_ticks_again_max_s"])]
         for k in kills],
    )  # fmt: skip
    for k in kills:
        if k["missing_slots"]:
            first, last = k["missing_slots"][0], k["missing_slots"][-1]
            print(
                f"  {k['target']} at t={k['t']:.0f} s: slots {micros_text(int(first * 1e6))}"
                f" .. {micros_text(int(last * 1e6))} missing ({len(k['missing_slots'])})"
            )
    rows = invariants(checks, allowed_missing_slots=None)
    rows.append(["missing slots outside every allowed outage", len(unexplained) + not_allowed,
                 "met" if not unexplained and not not_allowed else "NOT MET"])  # fmt: skip
    c = checks["clients"]
    rows.append(["readers that reconnected / reconnects that got ticks again",
                 f"{c['clients_reconnected']} / {c['reconnects_resumed']} of {c['reconnects']}",
                 "met" if c["reconnects_resumed"] == c["reconnects"] else "NOT MET"])  # fmt: skip
    print_table("end invariants (against the Tick table)", ["invariant", "count", ""], rows)
    print(f"ticks missed between a reader's connections (no replay on /ws/market): "
          f"{c['missed_between_connections']}; /ws/stocks reconnects whose snapshot history "
          f"covered the gap: {c['stocks_reconnects_gapless']}")  # fmt: skip
    print(f"restarts by the supervisor: {outcome['restarts']}")
    summary = trends(samples, min(10.0, minutes / 3.0))
    print_table("measures over the run (mean of the first and last third, max, slope)",
                ["measure", "unit", "first", "last", "max", "slope per hour"],
                trend_rows(summary))  # fmt: skip
    paths = charts("chaos", samples, events)
    print("charts: " + ", ".join(p.name for p in paths))
    write_results("chaos", {
        "started": started,
        "minutes": minutes,
        "seed": args.seed,
        "machine_at_start": machine_before,
        "setup": config.describe(),
        "quick": args.quick,
        "kills": kills,
        "missing_slots_unexplained": unexplained,
        "invariants": [{"invariant": r[0], "count": r[1], "status": r[2]} for r in rows],
        "checks": {**checks, "missing_slots": len(checks["missing_slots"])},
        "rest": outcome["rest"],
        "restarts": outcome["restarts"],
        "log_errors": outcome["log_errors"],
        "summary": summary,
        "samples": samples,
        "charts": [p.name for p in paths],
    })  # fmt: skip


if __name__ == "__main__":
    main()
