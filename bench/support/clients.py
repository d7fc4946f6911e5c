"""The soak's and chaos run's client processes: WebSocket readers that reconnect, and REST
load at a fixed arrival rate. No Django here: each runs in a process of its own, driven
over a pipe, and reports every `report_every` seconds.

Readers keep what they received per connection (a *session*) and per symbol, as epoch
microseconds of each tick's `ts`, so the parent can hold every session against the Tick
table at the end. A reader whose connection drops connects again (after 0.25 s, doubling to
at most 4 s) and subscribes again; `/ws/stocks/{symbol}` readers also keep the snapshot's
history, which is how such a client resumes: a history that reaches back to the last tick
it had before the drop means it missed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from array import array
from collections import Counter
from datetime import datetime

import orjson

from apps.ops.timestamps import epoch_micros
from bench.api import HttpConnection
from bench.common import raise_open_files_limit

CONNECT_CONCURRENCY = 25  # handshakes in flight per process
RECONNECT_FIRST = 0.25  # s before the first reconnect attempt; doubles up to RECONNECT_MAX
RECONNECT_MAX = 4.0
REST_POOL = 48  # keep-alive connections of the REST load
REST_TIMEOUT = 10.0  # s from a request's scheduled send; later counts as an error


class _Clock:
    """Parses a tick's `ts` once per process: every reader gets the same few strings."""

    def __init__(self) -> None:
        self.cache: dict[str, int] = {}

    def micros(self, ts: str) -> int:
        known = self.cache.get(ts)
        if known is None:
            known = self.cache[ts] = epoch_micros(datetime.fromisoformat(ts))
            if len(self.cache) > 50_000:
                self.cache.clear()
        return known


class _Period:
    """What the readers of one process saw since the last report."""

    def __init__(self) -> None:
        self.latencies = array("f")  # s, receive time - tick ts, every tick
        self.ticks = 0
        self.frames = 0
        self.errors: Counter[str] = Counter()
        self.drops = 0
        self.reconnects = 0


class Reader:
    """One WebSocket client: `/ws/market` subscribed to `symbols`, or `/ws/stocks/{symbol}`."""

    def __init__(self, index: int, kind: str, url: str, symbols: list[str], clock: _Clock,
                 period: _Period):  # fmt: skip
        self.index, self.kind, self.url, self.symbols = index, kind, url, symbols
        self.clock, self.period = clock, period
        self.sessions: list[dict] = []
        self.connected = False
        self.reconnects = 0
        self.errors: Counter[str] = Counter()
        self.duplicates = 0
        self.out_of_order = 0
        self._seen: dict[str, int] = {}  # newest tick ts (µs) per symbol, over all sessions

    def _new_session(self) -> dict:
        session = {"opened": time.time(), "closed": None, "close": None,
                   "first_tick_at": None, "ticks": {s: array("q") for s in self.symbols},
                   "history": {}}  # fmt: skip
        self.sessions.append(session)
        return session

    def _tick(self, session: dict, m: dict, now: float) -> None:
        symbol = m["symbol"]
        micros = self.clock.micros(m["ts"])
        last = self._seen.get(symbol, -1)
        if micros == last or micros in session["history"].get(symbol, ()):
            self.duplicates += 1
        elif micros < last:
            self.out_of_order += 1
        self._seen[symbol] = max(micros, last)
        got = session["ticks"].get(symbol)
        if got is None:
            got = session["ticks"][symbol] = array("q")
        got.append(micros)
        if session["first_tick_at"] is None:
            session["first_tick_at"] = now
        self.period.latencies.append(now - micros / 1e6)
        self.period.ticks += 1

    def _handle(self, session: dict, raw: str | bytes) -> None:
        now = time.time()
        self.period.frames += 1
        data = orjson.loads(raw)
        for m in data if isinstance(data, list) else [data]:
            kind = m.get("type")
            if kind == "tick":
                self._tick(session, m, now)
            elif kind == "snapshot":
                history = {self.clock.micros(h["ts"]) for h in m.get("history", [])}
                session["history"][m["symbol"]] = history
                if history:
                    self._seen[m["symbol"]] = max(self._seen.get(m["symbol"], -1), max(history))
            elif kind == "error":
                self.errors[f"error message: {m.get('message', '')[:60]}"] += 1

    async def run(self, stop: asyncio.Event, gate: asyncio.Semaphore) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        backoff = RECONNECT_FIRST
        subscribe = orjson.dumps({"action": "subscribe", "symbols": self.symbols}).decode()
        while not stop.is_set():
            try:
                async with gate:
                    ws = await connect(self.url, compression=None, proxy=None, open_timeout=10,
                                       close_timeout=2, max_size=2**23,
                                       user_agent_header="marketflux-bench")  # fmt: skip
            except Exception as exc:  # counted; the reader tries again
                self.errors[f"connect: {type(exc).__name__}"] += 1
                self.period.errors[f"connect {type(exc).__name__}"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(RECONNECT_MAX, backoff * 2)
                continue
            if self.sessions:
                self.reconnects += 1
                self.period.reconnects += 1
            backoff = RECONNECT_FIRST
            session = self._new_session()
            self.connected = True
            try:
                if self.kind == "market":
                    await ws.send(subscribe)
                reading = asyncio.ensure_future(self._read(ws, session))
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not reading.done():
                    reading.cancel()
                    session["close"] = "stopped"
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), 2)
                else:
                    session["close"] = reading.result()
                    self.period.drops += 1
            except ConnectionClosed as exc:
                session["close"] = f"closed {exc.rcvd.code if exc.rcvd else 1006}"
                self.period.drops += 1
            finally:
                ws.transport.abort()
                session["closed"] = time.time()
                self.connected = False

    async def _read(self, ws, session: dict) -> str:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in ws:
                self._handle(session, raw)
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else 1006}"
        except Exception as exc:  # counted and reported
            self.errors[f"read: {type(exc).__name__}"] += 1
            return f"error {type(exc).__name__}"
        return f"closed {ws.close_code}"

    def result(self) -> dict:
        return {
            "index": self.index,
            "kind": self.kind,
            "symbols": self.symbols,
            "reconnects": self.reconnects,
            "errors": dict(self.errors),
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "sessions": [
                {**s, "ticks": {k: v.tobytes() for k, v in s["ticks"].items() if len(v)},
                 "history": {k: sorted(v) for k, v in s["history"].items()}}
                for s in self.sessions
            ],
        }  # fmt: skip


async def _readers_main(pipe, specs: list[tuple[int, str, str, list[str]]],
                        report_every: float) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    clock, period = _Clock(), _Period()
    readers = [Reader(i, kind, url, symbols, clock, period) for i, kind, url, symbols in specs]
    stop = asyncio.Event()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks = [asyncio.create_task(r.run(stop, gate)) for r in readers]
    command = loop.run_in_executor(None, pipe.recv)
    while True:
        done, _ = await asyncio.wait({command}, timeout=report_every)
        p = period
        period = _Period()
        for r in readers:
            r.period = period
        pipe.send(("report", {
            "at": time.time(), "latencies": p.latencies.tobytes(), "ticks": p.ticks,
            "frames": p.frames, "errors": dict(p.errors), "drops": p.drops,
            "reconnects": p.reconnects, "connected": sum(r.connected for r in readers),
        }))  # fmt: skip
        if done:
            break
    stop.set()
    await asyncio.wait(tasks, timeout=15)
    pipe.send(("results", [r.result() for r in readers]))


def readers_process(pipe, specs: list, report_every: float) -> None:
    """Entry point of a reader process: the readers in `specs` until the parent says stop."""
    import gc

    raise_open_files_limit()
    # Received ticks pile up as arrays, not objects: nothing here needs the collector's full
    # passes, which would stall this loop and be charged to the server's latency.
    gc.freeze()
    asyncio.run(_readers_main(pipe, specs, report_every))


# --- REST load ---------------------------------------------------------------------------------


class _RestPeriod:
    def __init__(self) -> None:
        self.latencies: dict[str, array] = {}  # ms, 2xx answers, by endpoint
        self.errors: Counter[str] = Counter()  # "endpoint: what"
        self.sent = 0


def _request(host: str, port: int, path: str, token: str | None) -> bytes:
    auth = f"Authorization: Token {token}\r\n" if token else ""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
            f"{auth}User-Agent: marketflux-bench\r\n\r\n").encode()  # fmt: skip


async def _rest_main(pipe, host: str, port: int, rate: float, endpoints: list,
                     symbols: list[str], token: str, report_every: float) -> None:  # fmt: skip
    """Open loop: request i goes out at t0 + i / rate whatever the answers do; its latency
    counts from that scheduled time, so a stall shows instead of slowing the load."""
    loop = asyncio.get_running_loop()
    rng = random.Random(5)
    names = [e[0] for e in endpoints]
    weights = [e[2] for e in endpoints]
    pool: asyncio.Queue[HttpConnection] = asyncio.Queue()
    conns = [HttpConnection(host, port) for _ in range(REST_POOL)]
    for conn in conns:
        pool.put_nowait(conn)
    pages = max(1, len(symbols) // 50)  # the stocks list's pages at page_size=50
    period = _RestPeriod()
    totals: Counter[str] = Counter()
    stop = False

    async def fire(name: str, path: str, auth: bool, scheduled: float) -> None:
        deadline = scheduled + REST_TIMEOUT
        try:
            conn = await asyncio.wait_for(pool.get(), max(0.001, deadline - loop.time()))
        except TimeoutError:
            period.errors[f"{name}: no free connection"] += 1
            return
        try:
            status, _ = await asyncio.wait_for(
                conn.get(_request(host, port, path, token if auth else None)),
                max(0.001, deadline - loop.time()),
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:  # fmt: skip
            conn.close()
            period.errors[f"{name}: {type(exc).__name__}"] += 1
            return
        finally:
            pool.put_nowait(conn)
        if 200 <= status < 300:
            period.latencies.setdefault(name, array("f")).append((loop.time() - scheduled) * 1000.0)
        else:
            period.errors[f"{name}: http {status}"] += 1

    async def reporter() -> None:
        nonlocal period
        while not stop:
            await asyncio.sleep(report_every)
            p, period = period, _RestPeriod()
            totals.update({"sent": p.sent})
            pipe.send(("report", {
                "at": time.time(), "sent": p.sent, "errors": dict(p.errors),
                "latencies": {k: v.tobytes() for k, v in p.latencies.items()},
            }))  # fmt: skip

    command = loop.run_in_executor(None, pipe.recv)
    reporting = asyncio.create_task(reporter())
    tasks: set[asyncio.Task] = set()
    t0 = loop.time() + 0.05
    i = 0
    while not command.done():
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        i += 1
        name = rng.choices(names, weights)[0]
        _, template, _, auth = endpoints[names.index(name)]
        path = template.format(symbol=rng.choice(symbols), page=rng.randint(1, pages))
        period.sent += 1
        task = asyncio.create_task(fire(name, path, auth, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    stop = True
    if tasks:
        await asyncio.wait(tasks, timeout=REST_TIMEOUT + 2)
    reporting.cancel()
    for conn in conns:
        conn.close()
    pipe.send(("results", {"sent": i, "send_lag_ms": (loop.time() - (t0 + i / rate)) * 1000}))


def rest_process(pipe, host: str, port: int, rate: float, endpoints: list, symbols: list[str],
                 token: str, report_every: float) -> None:  # fmt: skip
    """Entry point of the REST load's process."""
    raise_open_files_limit()
    asyncio.run(_rest_main(pipe, host, port, rate, endpoints, symbols, token, report_every))
