"""A live feed at full rate for bench/sources.py: the loopback Alpaca server
(apps/testing/alpaca.py) pushing trades of thousands of symbols, in a process of its own,
to either a plain WebSocket client that only reads and counts (the server's own send rate,
the anchor) or the real connector (apps/sources/live) storing ticks through the pipeline.

The sender is this file run as a script (`python bench/support/live_feed.py serve ...`):
it starts `AlpacaServer` on 127.0.0.1, prints its ports as a JSON line and then, for each
`send` line on its stdin, waits for a client subscribed to every symbol and pushes trades
with `AlpacaServer.send_trades` for so many seconds (or trades): chunks of `CHUNK` symbols
in turn, one trade each, stamped with the time the chunk is built, as fast as the server
goes (or at a set rate). It answers with a JSON line: trades sent, seconds, its CPU time,
and the distinct (symbol, 0.5 s slot) pairs it sent, which is how many ticks the connector
must store.

Not a benchmark itself (`make bench` runs every bench/*.py but common.py, hence this
folder).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

CHUNK = 500  # trades a `send_trades` call: one each for 500 symbols in turn
SUBSCRIBE_CHUNK = 400  # symbols a subscribe message names (as AlpacaFeed does)
KEY, SECRET = "AKBENCHKEY", "benchsecret"  # the loopback server's, nobody's credentials


def tickers(count: int) -> list[str]:
    """The bench's symbols: LV0000, LV0001, ..."""
    return [f"LV{i:04d}" for i in range(count)]


# --- The sender (its own process) ---------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Run the server; answer each `send SECONDS RATE MAX_TRADES` line on stdin."""
    from apps.testing.alpaca import AlpacaServer

    names = tickers(args.symbols)
    rng = np.random.default_rng(17)
    prices = np.round(rng.uniform(10, 500, len(names)), 2)
    sizes = rng.integers(1, 500, len(names))
    templates = [
        {"S": name, "x": "V", "p": float(price), "s": int(size), "c": ["@"], "z": "C"}
        for name, price, size in zip(names, prices, sizes, strict=True)
    ]
    with AlpacaServer(key=KEY, secret=SECRET, batch_size=args.batch_size) as server:
        _answer({"port": server.port, "rest_port": server.rest_port})
        next_id = 1
        for line in sys.stdin:
            command, *params = line.split()
            if command != "send":
                break
            seconds, rate, most = float(params[0]), float(params[1]), int(params[2])
            server.wait_subscribed(trades=names, timeout=60)
            result = _send(server, templates, seconds, rate, most, next_id, args.interval)
            next_id += result["trades"]
            _answer(result)


def _send(server: Any, templates: list[dict], seconds: float, rate: float, most: int,
          first_id: int, interval: float) -> dict:  # fmt: skip
    """Chunks of trades until `seconds` have passed or `most` were sent; at `rate`
    trades/s, or as fast as the server takes them (0)."""
    count = len(templates)
    interval_ns = round(interval * 1e9)
    covered: dict[int, np.ndarray] = {}  # slot -> each symbol's trades in it
    sent = delivered = shares = 0
    trade_id, at = first_id, 0
    cpu0, began = time.process_time(), time.perf_counter()
    deadline = began + seconds
    while sent < most and time.perf_counter() < deadline:
        if rate:
            pause = began + sent / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        ns = time.time_ns()
        chunk = templates[at : at + CHUNK]
        trades = [{**t, "i": trade_id + k, "t": ns} for k, t in enumerate(chunk)]
        delivered += server.send_trades(trades)
        slot = ns // interval_ns
        if slot not in covered:
            covered[slot] = np.zeros(count, dtype=np.int32)
        covered[slot][at : at + len(chunk)] += 1
        shares += sum(t["s"] for t in chunk)
        sent += len(trades)
        trade_id += len(trades)
        at = (at + CHUNK) % count
    seconds_taken = time.perf_counter() - began
    return {
        "trades": sent, "delivered": delivered, "shares": shares, "seconds": seconds_taken,
        "cpu_s": time.process_time() - cpu0,
        "pairs": int(sum(int((c > 0).sum()) for c in covered.values())),
        "slots": len(covered),
        "counts": {str(slot): c.tolist() for slot, c in covered.items()},
    }  # fmt: skip


def _answer(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


class Sender:
    """The sender process, seen from the bench: `start_sending()`, then `result()`."""

    def __init__(self, symbols: int, *, batch_size: int, interval: float) -> None:
        from apps.ops.processes import die_with_parent

        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", "--symbols", str(symbols),
             "--batch-size", str(batch_size), "--interval", str(interval)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        ports = self._read()
        self.url = f"ws://127.0.0.1:{ports['port']}/v2/iex"
        self.rest_url = f"http://127.0.0.1:{ports['rest_port']}"

    def start_sending(self, seconds: float, *, rate: float = 0.0, most: int = 10**9) -> None:
        """Ask for a push (it begins once a client has subscribed to every symbol)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"send {seconds} {rate} {most}\n")
        self.proc.stdin.flush()

    def result(self) -> dict:
        """The push's answer (blocks until it is done)."""
        return self._read()

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the sender exited (code {self.proc.wait(5)})")
        return json.loads(line)

    def close(self) -> None:
        from apps.ops.processes import stop_process

        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # EOF: it stops its server and exits
        stop_process(self.proc, timeout=15)


# --- The anchor: a client that only reads and counts ---------------------------------------


def _array_length(frame: bytes) -> int:
    """Messages in a msgpack frame, from the array's header alone."""
    head = frame[0]
    if 0x90 <= head <= 0x9F:
        return head & 0x0F
    if head == 0xDC:
        return int.from_bytes(frame[1:3], "big")
    if head == 0xDD:
        return int.from_bytes(frame[1:5], "big")
    raise ValueError(f"not a msgpack array: {frame[:8]!r}")


async def read_and_count(sender: Sender, symbols: list[str], seconds: float, most: int) -> dict:
    """Subscribe to every symbol's trades as the connector does, ask the sender to push,
    and count what arrives (no decoding): the rate the server sends at, when the reader
    is not what limits it (its CPU is reported beside the sender's)."""
    import msgpack
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    async with connect(
        sender.url, additional_headers={"Content-Type": "application/msgpack"},
        max_size=16 * 2**20, compression=None,
    ) as ws:  # fmt: skip
        await ws.recv()  # connected
        await ws.send(msgpack.packb({"action": "auth", "key": KEY, "secret": SECRET}))
        await ws.recv()  # authenticated
        steps = range(0, len(symbols), SUBSCRIBE_CHUNK)
        for i in steps:
            await ws.send(msgpack.packb({"action": "subscribe",
                                         "trades": symbols[i : i + SUBSCRIBE_CHUNK]}))  # fmt: skip
        for _ in steps:
            await ws.recv()  # each subscribe's answer: the subscription so far
        reader = {"reader": threading.get_native_id()}
        before = schedstat(sender.proc.pid, {}), schedstat(os.getpid(), reader)
        machine0, load = machine_busy(), os.getloadavg()[0]
        began = time.perf_counter()
        sender.start_sending(seconds, most=most)
        answer = loop.run_in_executor(None, sender.result)
        count = frames = size = 0
        first = last = 0.0
        quiet = 0  # seconds without a frame since the sender finished
        while not (answer.done() and count >= answer.result()["delivered"]) and quiet < 3:
            try:
                frame = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                quiet += answer.done()
                continue
            last = time.perf_counter()
            first = first or last
            count += _array_length(frame)
            frames += 1
            size += len(frame)
        wall = time.perf_counter() - began
        after = schedstat(sender.proc.pid, {}), schedstat(os.getpid(), reader)
        machine = busy_pct(machine0, machine_busy(), wall)
        sent = await answer
        sent.pop("counts")
    return {
        "sender": sent, "received": count, "frames": frames, "bytes": size,
        "seconds": last - first, "trades_per_s": sent["trades"] / sent["seconds"],
        "threads": {
            "sender": sched_since(before[0], after[0], wall)["rest"],
            "reader": sched_since(before[1], after[1], wall)["reader"],
        },
        "machine_busy_pct": machine, "loadavg_before": load,
    }  # fmt: skip


# --- The connector, measured ----------------------------------------------------------------


class ConnectorMeter:
    """Times a running Connector's parts without changing them: its feed's `parse`, its
    `_take` (trades into the conflator), the conflator's `close`, and every `ingest` and
    `late.fold` it calls (the names it looks up are wrapped for the run). Frame receipts
    and stored slots are kept, for the trade-to-tick lag.

    The loop's parts are timed in the loop thread's CPU time (`time.thread_time`), so the
    database thread holding the GIL does not count against them."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self.interval_ns = connector.interval_ns
        self.cpu: dict[str, float] = defaultdict(float)  # part -> CPU s
        self.calls: dict[str, int] = defaultdict(int)
        self.ingest_wall_s = 0.0
        self.stages: dict[str, float] = defaultdict(float)
        self.rebuilt = 0  # symbols whose indicator state a live ingest rebuilt
        self.receipts: list[tuple[float, int, int, int]] = []  # (at, slot, trades, sent ns)
        self.stored: dict[int, list[float]] = defaultdict(list)  # slot -> when stored
        self.slot_ticks: dict[int, int] = defaultdict(int)
        self.busy = 0  # store calls under way
        self.letting_out = 0  # `_let_out` calls under way: slots out of the conflator, not
        # yet stored (a stop then would lose them: `flush` lets out only what is held)
        self._saved: list[tuple[Any, str, bool, Any]] = []

    def __enter__(self) -> ConnectorMeter:
        from apps.ingest import late
        from apps.sources.live import connector as module

        c = self.connector
        self._wrap(c.feed, "parse", self._timed("parse", c.feed.parse))
        self._wrap(c, "_take", self._taking(c._take))
        self._wrap(c, "_let_out", self._letting_out(c._let_out))
        self._wrap(c.conflator, "close", self._timed("close", c.conflator.close))
        self._wrap(module, "ingest", self._storing("ingest", module.ingest))
        self._wrap(late, "fold", self._storing("fold", late.fold))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, had, value in reversed(self._saved):
            if had:
                setattr(owner, name, value)
            else:
                delattr(owner, name)  # the class's method shows through again

    def _wrap(self, owner: Any, name: str, wrapper: Callable) -> None:
        had = name in vars(owner)
        self._saved.append((owner, name, had, vars(owner).get(name)))
        setattr(owner, name, wrapper)

    def _timed(self, part: str, fn: Callable) -> Callable:
        def timed(*args: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*args)
            finally:
                self.cpu[part] += time.thread_time() - t0
                self.calls[part] += 1

        return timed

    def _letting_out(self, fn: Callable) -> Callable:
        async def let_out(until_ns: int) -> None:
            self.letting_out += 1
            try:
                await fn(until_ns)
            finally:
                self.letting_out -= 1

        return let_out

    def settled(self) -> bool:
        """Nothing held by the conflator and nothing on its way to the database."""
        return not (self.connector.conflator.held or self.letting_out or self.busy)

    def _taking(self, fn: Callable) -> Callable:
        interval_ns = self.interval_ns

        def take(parsed: Any) -> None:
            t0 = time.thread_time()
            fn(parsed)
            self.cpu["take"] += time.thread_time() - t0
            trades = parsed.trades
            if not trades:
                return
            at = time.time()
            first, last = trades[0].ns // interval_ns, trades[-1].ns // interval_ns
            if first == last:
                self.receipts.append((at, first, len(trades), trades[0].ns))
            else:
                for t in trades:
                    self.receipts.append((at, t.ns // interval_ns, 1, t.ns))

        return take

    def _storing(self, part: str, fn: Callable) -> Callable:
        interval_ns = self.interval_ns

        def store(batch: Any, **kwargs: Any) -> Any:
            self.busy += 1
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                result = fn(batch, **kwargs)
            finally:
                self.busy -= 1
            self.cpu[f"{part} (db thread)"] += time.thread_time() - c0
            self.calls[part] += 1
            if part == "ingest":
                self.ingest_wall_s += time.perf_counter() - t0
                self.rebuilt += len(result.rebuilt)
                for stage, ms in result.stage_ms.items():
                    self.stages[stage] += ms / 1000
            at = time.time()
            for ts in set(batch.ts):
                slot = int(ts.timestamp() * 1e6) * 1000 // interval_ns
                self.stored[slot].append(at)
            if part == "ingest":
                for ts in batch.ts:
                    self.slot_ticks[int(ts.timestamp() * 1e6) * 1000 // interval_ns] += 1
            return result

        return store

    def lags(self) -> dict[str, dict[str, float] | None]:
        """Per trade (its frame's receipt): receipt to the first store of its slot after it,
        and its time (when the sender built it) to its receipt; per slot: the slot's end
        to its ticks' first store."""
        stored = {slot: sorted(times) for slot, times in self.stored.items()}
        to_stored, weights = [], []
        for at, slot, count, _ in self.receipts:
            times = stored.get(slot, [])
            i = bisect_left(times, at)
            if i < len(times):
                to_stored.append(1000 * (times[i] - at))
                weights.append(count)
        in_transit = [1000 * (at - ns / 1e9) for at, _, _, ns in self.receipts]
        slot_end = [
            1000 * (t[0] - (slot + 1) * self.interval_ns / 1e9) for slot, t in stored.items()
        ]
        return {
            "receipt_to_stored_ms": weighted_summary(to_stored, weights),
            "sent_to_receipt_ms": weighted_summary(in_transit, [r[2] for r in self.receipts]),
            "slot_end_to_stored_ms": weighted_summary(slot_end, [1] * len(slot_end)),
        }


def weighted_summary(values: list[float], weights: list[int]) -> dict[str, float] | None:
    """p50, p99 and max of values each counted `weight` times."""
    if not values:
        return None
    ordered = np.argsort(values)
    sorted_values = np.asarray(values)[ordered]
    cumulative = np.cumsum(np.asarray(weights)[ordered])

    def at(q: float) -> float:
        return float(sorted_values[np.searchsorted(cumulative, q * cumulative[-1])])

    return {"p50": at(0.5), "p99": at(0.99), "max": float(sorted_values[-1])}


def schedstat(pid: int, names: dict[str, int | None]) -> dict[str, list[float]]:
    """Seconds on a CPU and seconds runnable but waiting for one (the run queue), of the
    named threads (native ids) of process `pid` and of all its other threads summed
    (`rest`), from /proc/<pid>/task/<tid>/schedstat."""
    by_id = {tid: name for name, tid in names.items() if tid is not None}
    found = {name: [0.0, 0.0] for name in [*names, "rest"]}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            on_cpu, waiting, _ = (Path(task, "schedstat").read_text()).split()
            entry = found[by_id.get(int(task.name), "rest")]
            entry[0] += int(on_cpu) / 1e9
            entry[1] += int(waiting) / 1e9
    return found


def machine_busy() -> tuple[float, float]:
    """Seconds all CPUs were busy (not idle, not waiting for I/O), and the CPUs."""
    import psutil

    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0), float(os.cpu_count() or 1)


def busy_pct(before: tuple[float, float], after: tuple[float, float], wall: float) -> float:
    """The machine's busy share of `wall` seconds, in percent of all its CPUs."""
    return 100 * (after[0] - before[0]) / wall / after[1]


def sched_since(before: dict[str, list[float]], after: dict[str, list[float]],
                wall: float) -> dict[str, dict[str, float]]:  # fmt: skip
    """Each thread's share of `wall` seconds: on a CPU, waiting for one, and the rest
    (blocked: on the GIL, on a socket or a database answer, or idle)."""
    out = {}
    for name, (cpu, waiting) in after.items():
        cpu -= before[name][0]
        waiting -= before[name][1]
        out[name] = {"cpu_s": cpu, "run_queue_s": waiting, "wall_s": wall}
    return out


def named_thread(prefix: str) -> int | None:
    """The native id of a live thread whose name starts with `prefix`."""
    for thread in threading.enumerate():
        if thread.name.startswith(prefix):
            return thread.native_id
    return None


def run_connector(sender: Sender, source: Any, symbols: list[str], seconds: float, *,
                  rate: float = 0.0, most: int = 10**9, interval: float,
                  late_after: float) -> dict:  # fmt: skip
    """The real connector (`RunningConnector`: its own event loop thread and the Store's
    database thread, PostgreSQL and Redis) against the sender for one push: what it
    received, stored and dropped, how fast, and where its CPU went."""
    from apps.ops.processes import wait_until
    from apps.testing.sources import RunningConnector

    running = RunningConnector(source, symbols, interval=interval, late_after=late_after)
    with ConnectorMeter(running.connector) as meter, running:
        wait_until(lambda: running.state.connected, timeout=30, what="the connector connected")
        threads = {"loop": running.thread.native_id, "db": named_thread("sources-db")}
        snapshots = [(time.perf_counter(), schedstat(sender.proc.pid, {}),
                      schedstat(os.getpid(), threads))]  # fmt: skip
        machine0, load = machine_busy(), os.getloadavg()[0]
        sender.start_sending(seconds, rate=rate, most=most)
        sent = sender.result()
        wait_until(lambda: running.state.trades >= sent["delivered"], timeout=120,
                   what="every trade at the connector", interval=0.05)  # fmt: skip
        snapshots.append((time.perf_counter(), schedstat(sender.proc.pid, {}),
                          schedstat(os.getpid(), threads)))  # fmt: skip
        machine = busy_pct(machine0, machine_busy(), snapshots[1][0] - snapshots[0][0])
        loop_cpu = {k: meter.cpu[k] for k in ("parse", "take", "close")}  # the same window
        calls = -1

        def quiet() -> bool:  # every slot stored, and nothing since the last look
            nonlocal calls
            now = meter.calls["ingest"] + meter.calls["fold"]
            done = meter.settled() and now == calls
            calls = now
            return done

        wait_until(quiet, timeout=60, what="every slot stored", interval=0.5)
        snapshots.append((time.perf_counter(), schedstat(sender.proc.pid, {}),
                          schedstat(os.getpid(), threads)))  # fmt: skip
        report = running.report()
    (t0, sender0, bench0), (t1, sender1, bench1), (t2, _, bench2) = snapshots
    receiving = sched_since(bench0, bench1, t1 - t0)
    to_the_end = sched_since(bench0, bench2, t2 - t0)
    received = [at for at, *_ in meter.receipts]
    last_stored = max(max(times) for times in meter.stored.values())
    receiving_s = received[-1] - received[0]
    through_s = last_stored - received[0]
    stored = stored_totals(symbols)
    stored["check"] = tick_check(symbols, sent.pop("counts"), meter.interval_ns)
    ticks = stored["ticks"]  # those of late trades in slots without one too
    return {
        "sender": sent, "rate_asked": rate, "state": report,
        "trades": report["trades"], "ticks": ticks, "receiving_s": receiving_s,
        "ticks_live": sum(meter.slot_ticks.values()),
        "trades_per_s": report["trades"] / receiving_s,
        "through_s": through_s, "trades_per_s_through": report["trades"] / through_s,
        "ticks_per_s": ticks / receiving_s, "ticks_per_s_through": ticks / through_s,
        "lag": meter.lags(),
        "loop_cpu_s": loop_cpu, "calls": dict(meter.calls),
        "db_cpu_s": {k: v for k, v in meter.cpu.items() if k not in loop_cpu},
        "ingest_wall_s": meter.ingest_wall_s, "ingest_stage_s": dict(meter.stages),
        "states_rebuilt": meter.rebuilt,
        "threads_receiving": {"sender": sched_since(sender0, sender1, t1 - t0)["rest"],
                              "loop": receiving["loop"], "db": receiving["db"],
                              "rest": receiving["rest"]},
        "threads_to_the_end": to_the_end, "stored": stored,
        "machine_busy_pct": machine, "loadavg_before": load,
    }  # fmt: skip


def tick_check(symbols: list[str], counts: dict[str, list[int]],
               interval_ns: int) -> dict[str, int]:  # fmt: skip
    """Each stored tick against the trades sent in its symbol's slot (`counts`: per slot,
    each symbol's trades): ticks missing or extra, and ticks holding fewer or more trades
    than were sent, with the trades short or over."""
    from django.db import connection

    index = {symbol: i for i, symbol in enumerate(symbols)}
    expected = {(i, int(slot)): n for slot, row in counts.items() for i, n in enumerate(row) if n}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT symbol_id, (extract(epoch FROM ts) * 1000000)::bigint, coalesce(trades, 1)"
            " FROM market_tick WHERE symbol_id = ANY(%s)",
            [symbols],
        )
        got = {(index[s], micros * 1000 // interval_ns): n for s, micros, n in cursor.fetchall()}
    short = [expected[k] - n for k, n in got.items() if k in expected and n < expected[k]]
    over = [n - expected[k] for k, n in got.items() if k in expected and n > expected[k]]
    return {
        "ticks_missing": len(expected.keys() - got.keys()),
        "ticks_extra": len(got.keys() - expected.keys()),
        "ticks_short": len(short), "trades_short": sum(short),
        "ticks_over": len(over), "trades_over": sum(over),
    }  # fmt: skip


def stored_totals(symbols: list[str]) -> dict[str, int]:
    """What the database holds for the symbols: ticks, the trades and shares in them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(coalesce(trades, 1)), 0), coalesce(sum(size), 0)"
            " FROM market_tick WHERE symbol_id = ANY(%s)",
            [symbols],
        )
        ticks, trades, shares = cursor.fetchone()
    return {"ticks": ticks, "trades": trades, "shares": shares}


KEY_ENV, SECRET_ENV = "MF_BENCH_ALPACA_KEY", "MF_BENCH_ALPACA_SECRET"


def run_live(*, symbols: int, seconds: float, paced_rate: float, most: int, batch_size: int,
             interval: float, late_after: float, reset: Callable[[], None]) -> dict:  # fmt: skip
    """One Alpaca source of `symbols` symbols and the sender: the anchor (a reader that
    counts), the connector as fast as the server sends, and the connector at `paced_rate`
    trades/s; `reset` empties the tables after each connector run."""
    from apps.market.models import Source, Symbol

    names = tickers(symbols)
    sender = Sender(symbols, batch_size=batch_size, interval=interval)
    try:
        os.environ[KEY_ENV], os.environ[SECRET_ENV] = KEY, SECRET
        source = Source.objects.create(
            name="bench-alpaca", kind=Source.ALPACA, url=sender.url, rest_url=sender.rest_url,
            key_env=KEY_ENV, secret_env=SECRET_ENV,
        )  # fmt: skip
        Symbol.objects.bulk_create(
            [Symbol(ticker=n, name=n, exchange="IEX", source=source, start_price=100.0)
             for n in names]
        )  # fmt: skip
        anchor = asyncio.run(read_and_count(sender, names, seconds, most))
        print(f"live: anchor {anchor['trades_per_s']:,.0f} trades/s", flush=True)
        runs = []
        for rate in (0.0, paced_rate):
            runs.append(run_connector(sender, source, names, seconds, rate=rate, most=most,
                                      interval=interval, late_after=late_after))  # fmt: skip
            print(f"live: connector at {rate or 'full'} trades/s: "
                  f"{runs[-1]['trades_per_s']:,.0f} trades/s", flush=True)  # fmt: skip
            reset()
    finally:
        sender.close()
    return {
        "symbols": symbols, "seconds": seconds, "most": most, "batch_size": batch_size,
        "chunk": CHUNK, "interval_s": interval, "late_after_s": late_after,
        "anchor": anchor, "flood": runs[0], "paced": runs[1],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--symbols", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
