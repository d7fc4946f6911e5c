"""WebSocket fan-out of /ws/market against a live Daphne with the real pipeline running,
beside the `websockets` library's broadcast server relaying the same batches.

    python bench/ws_fanout.py [--quick] [--clients 1000,5000] [--duration 45]
                              [--slow-duration 300] [--client-procs 2] [--no-anchor]
    (make bench runs it with real services: DATABASE_URL and REDIS_URL)

The stack is the real one, on a fresh bench database (`<database>_bench`) with the default
five symbols: a Celery worker (`--pool solo`) and beat ticking every 0.5 s (the default
TICK_INTERVAL), and Daphne (DEBUG=0) serving /ws/market: one process, or with
--asgi-processes N as `make run` starts the ASGI tier, N processes sharing one listening
socket (the clients' spread over them is reported).

Fan-out, for 1,000 and then 5,000 concurrent clients (bare asyncio protocols speaking RFC
6455, `_Client`, split over two client processes unless --client-procs says otherwise), each
subscribed to "*":

* delivered tick messages/s and frames/s (every frame is a JSON array; ticks of one
  pipeline batch share a frame, the overview comes about once a second);
* publish-to-receive latency: receive time minus each tick's `ts` (its scheduled wall-clock
  time), over every tick every client received, p50/p99/max. Beside it the latency of the
  *first* client to get each tick (what the pipeline and the publish cost before fan-out)
  and the per-tick spread from first to last client (what the fan-out to N sockets costs);
  with the pipeline's own timings for the window (lag from the slot to the worker starting
  it, and ingest time) read from its batch stats in Redis;
* a gap check per client: every tick stored in the database for the window (ts in
  [t0, t1)) must reach every client, once and in order. After the window the clients read
  on until each has a later tick of every symbol (at most 60 s; the time it took says how
  far behind the server was), so a tick still missing then was lost, not late: the server
  coalesced it away or the connection died;
* Daphne RSS per connection: (RSS once N clients are connected and subscribed - RSS just
  before they connected) / N; and the most RSS seen during the window (a backlog shows);
* CPU of Daphne, the worker and the client process(es) over the window.

The anchor: at each client count, right after MarketFlux's phase, the same clients connect
to a server written with the `websockets` library (`anchor_server`, a process of its own):
it joins the pipeline's `market` group once through the same channel layer, answers the
subscribe, and writes each batch to every client with `websockets.broadcast` (one JSON
encode per batch, the library's framing and writes). The same measures, the same gap check
against the Tick table; the report gives MarketFlux's latency divided by the anchor's.

Slow readers: 10 clients that subscribe to "*" and then never read (raw sockets doing the
WebSocket handshake with a 4 KiB SO_RCVBUF), beside 10 clients that read normally, for
5 minutes (--slow-duration; 30 s with --quick): Daphne RSS every 10 s (first, last, max,
growth), what became of the slow sockets (their TCP state, bytes queued on both sides, the
frames they finally hold when drained at the end: close frames, resets), the server's
count of coalesced ticks (Redis WS_TICKS_DROPPED, counted when a socket disconnects), and
whether the readers beside them still got every tick in time.

Everything shares one 2-core machine: the clients, Daphne, the worker, beat, PostgreSQL and
Redis, so the client process competes with the server it measures. Loopback only; every
phase is bounded in time; every process started here is stopped on every way out.
Writes bench/results/ws_fanout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import gc
import json
import multiprocessing
import os
import shutil
import socket
import struct
import sys
import tempfile
import termios
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from apps.ops.timestamps import epoch_micros
from bench.common import (
    CpuMeter,
    Stack,
    clear_app_redis_keys,
    drop_bench_database,
    http_json,
    machine_info,
    percentile,
    print_table,
    process_rss,
    raise_open_files_limit,
    setup_django_with_bench_database,
    stack_env,
    wait_until,
    write_results,
)

TICK_INTERVAL = 0.5
SUBSCRIBE = orjson.dumps({"action": "subscribe", "symbols": ["*"]})
CONNECT_CONCURRENCY = 50  # handshakes in flight per client process (Daphne's backlog is 50)
CONNECT_TIMEOUT = 180.0  # for all clients of a phase
# After the window, clients read on until each has a tick from after it for every symbol
# (so every tick of the window has reached it or never will), for at most this long.
MAX_CATCH_UP = 60.0
RESULTS_TIMEOUT = 180.0
SLOW_RCVBUF = 4096
SAMPLE_EVERY = 10.0  # s between RSS samples in the slow-reader phase
TARGET_P99_MS = {1000: 100.0, 5000: 250.0}  # the targets, by client count
TARGET_RSS_GROWTH_PCT = 10.0


# --- Client processes (no Django here) ---------------------------------------------------------


class _Window:
    def __init__(self) -> None:
        self.t0 = self.t1 = float("inf")  # no window until the parent says so
        self.symbols: set[str] = set()
        self.ts_cache: dict[str, tuple[float, int]] = {}
        self.latencies: list[float] = []
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}

    def parse(self, ts: str) -> tuple[float, int]:
        """(epoch seconds, epoch microseconds) of a tick's ts, cached: every client gets the
        same few strings."""
        known = self.ts_cache.get(ts)
        if known is None:
            moment = datetime.fromisoformat(ts)
            micros = epoch_micros(moment)
            known = self.ts_cache[ts] = (micros / 1e6, micros)
            if len(self.ts_cache) > 10_000:
                self.ts_cache.clear()
        return known


class _Client(asyncio.Protocol):
    """One /ws/market client on a bare asyncio protocol: the handshake, the subscribe, and
    the server's frames parsed here (RFC 6455: unmasked server frames, pings answered).

    Why not the `websockets` client: 5,000 of them in two processes spent most of their CPU
    in the library's per-message machinery (a reader task, a queue, a frame object and a
    wake-up per message), and the last socket of each batch was read hundreds of ms after
    the first on this 2-core machine, by the clients' loops, not the server's. The receive
    time is taken once per `data_received`, when the kernel's bytes reach the protocol.
    """

    def __init__(self, index: int, window: _Window):
        self.index = index
        self.window = window
        self.transport: asyncio.Transport | None = None
        self.connected = False
        self.error: str | None = None
        self.close_code: int | None = None
        self.frames = 0
        self.frames_in_window = 0
        self.ticks_in_window = 0  # by receive time, for rates
        self.ticks = 0
        self.overviews = 0
        self.other: dict[str, int] = {}
        self.got: list[tuple[str, int]] = []  # (symbol, micros) of ticks with ts in window
        self.out_of_order = 0
        self._last_ts: dict[str, int] = {}
        self.after_window: set[str] = set()  # symbols with a tick from after the window
        self.done = False  # the connection ended
        self._buffer = bytearray()
        self._upgraded = False
        self._subscribed: asyncio.Future | None = None
        self._fragments: list[bytes] = []

    async def connect(self, url: str, gate: asyncio.Semaphore) -> None:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        async with gate:
            for attempt in range(3):
                self._subscribed = loop.create_future()
                self._buffer.clear()
                self._upgraded, self.done = False, False
                try:
                    async with asyncio.timeout(30):
                        await loop.create_connection(lambda: self, parts.hostname, parts.port)
                        key = base64.b64encode(os.urandom(16)).decode()
                        self.transport.write(
                            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                            f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                            f"User-Agent: marketflux-bench\r\n\r\n".encode()
                        )  # fmt: skip
                        await self._subscribed
                    self.connected, self.error = True, None
                    return
                except Exception as exc:  # counted and reported
                    self.error = f"{type(exc).__name__}: {exc}"[:200]
                    if self.transport is not None:
                        self.transport.abort()
                        self.transport = None
                    await asyncio.sleep(0.5 * (attempt + 1))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        if self.close_code is None and self.connected:
            self.close_code = 1006
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_exception(ConnectionError("closed before subscribed"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._subscribed.set_exception(ConnectionError(bytes(buffer[:80]).decode()))
                self.transport.abort()
                return
            del buffer[: end + 4]
            self._upgraded = True
            self.transport.write(ws_frame(SUBSCRIBE))
        at = 0
        while len(buffer) - at >= 2:
            opcode, length = buffer[at] & 0x0F, buffer[at + 1] & 0x7F
            head = 2
            if length == 126:
                if len(buffer) - at < 4:
                    break
                length, head = struct.unpack_from("!H", buffer, at + 2)[0], 4
            elif length == 127:
                if len(buffer) - at < 10:
                    break
                length, head = struct.unpack_from("!Q", buffer, at + 2)[0], 10
            if len(buffer) - at < head + length:
                break
            payload = bytes(buffer[at + head : at + head + length])
            fin = buffer[at] & 0x80
            at += head + length
            self._frame(opcode, fin, payload, now)
        del buffer[:at]

    def _frame(self, opcode: int, fin: int, payload: bytes, now: float) -> None:
        if opcode in (0x0, 0x1):  # text, or a continuation of it
            self._fragments.append(payload)
            if fin:
                text, self._fragments = b"".join(self._fragments), []
                messages = self._handle(text, now)
                if not self._subscribed.done() and any(
                    m.get("type") == "subscribed" for m in messages
                ):
                    self._subscribed.set_result(None)
        elif opcode == 0x9:  # ping
            self.transport.write(ws_frame(payload, opcode=0xA))
        elif opcode == 0x8:  # close
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.transport.write(ws_frame(payload[:2], opcode=0x8))
            self.transport.close()

    async def close(self) -> None:
        """A clean close: the close frame, then the connection."""
        if self.transport is not None and not self.done:
            self.transport.write(ws_frame(struct.pack("!H", 1000), opcode=0x8))
            self.transport.close()

    def _handle(self, raw: bytes, now: float) -> list[dict]:
        window = self.window
        self.frames += 1
        in_window = window.t0 <= now < window.t1
        self.frames_in_window += in_window
        messages = orjson.loads(raw)
        for m in messages:
            kind = m.get("type")
            if kind == "tick":
                self.ticks += 1
                self.ticks_in_window += in_window
                symbol = m["symbol"]
                epoch, micros = window.parse(m["ts"])
                if micros <= self._last_ts.get(symbol, -1):
                    self.out_of_order += 1
                self._last_ts[symbol] = micros
                if epoch >= window.t1:
                    self.after_window.add(symbol)
                elif window.t0 <= epoch:
                    latency = now - epoch
                    window.latencies.append(latency)
                    key = (symbol, micros)
                    self.got.append(key)
                    first = window.first.get(key)
                    if first is None or latency < first:
                        window.first[key] = latency
                    if latency > window.last.get(key, -1.0):
                        window.last[key] = latency
            elif kind == "overview":
                self.overviews += 1
            else:
                self.other[kind] = self.other.get(kind, 0) + 1
        return messages

    @property
    def caught_up(self) -> bool:
        return self.done or self.after_window >= self.window.symbols

    def result(self) -> dict:
        return {
            "index": self.index,
            "connected": self.connected,
            "error": self.error,
            "close_code": self.close_code,
            "frames": self.frames,
            "frames_in_window": self.frames_in_window,
            "ticks": self.ticks,
            "ticks_in_window": self.ticks_in_window,
            "overviews": self.overviews,
            "other": self.other,
            "got": sorted(set(self.got)),
            "duplicates": len(self.got) - len(set(self.got)),
            "out_of_order": self.out_of_order,
        }


async def _client_main(pipe, url: str, count: int, first_index: int) -> None:
    loop = asyncio.get_running_loop()
    window = _Window()
    clients = [_Client(first_index + i, window) for i in range(count)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await asyncio.gather(*(c.connect(url, gate) for c in clients))
    errors: dict[str, int] = {}
    for c in clients:
        if not c.connected:
            errors[c.error or "timeout"] = errors.get(c.error or "timeout", 0) + 1
    pipe.send(("connected", sum(c.connected for c in clients), errors))
    # The window's bookkeeping keeps millions of small objects (a tick key and a latency per
    # tick and client): the collector's full passes over them stalled this process's loop
    # for hundreds of ms, which the figures then charged to the server. Nothing here makes
    # reference cycles that need collecting before the process exits.
    gc.freeze()
    gc.disable()
    command = await loop.run_in_executor(None, pipe.recv)
    catch_up = None
    if command[0] == "window":
        _, window.t0, window.t1, symbols, max_catch_up = command
        window.symbols = set(symbols)
        await asyncio.sleep(max(0.0, window.t1 - time.time()))
        live = [c for c in clients if c.connected]
        while time.time() < window.t1 + max_catch_up:
            if all(c.caught_up for c in live):
                catch_up = time.time() - window.t1
                break
            await asyncio.sleep(0.1)
    for c in clients:
        await c.close()
    await asyncio.sleep(1.0)  # the close frames go out
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    first = {f"{k[0]} {k[1]}": (v, window.last[k]) for k, v in window.first.items()}
    pipe.send(("results", [c.result() for c in clients], window.latencies, first, catch_up))


def client_process(pipe, url: str, count: int, first_index: int) -> None:
    """Entry point of a client process: `count` /ws/market clients, driven over `pipe`."""
    raise_open_files_limit()
    asyncio.run(_client_main(pipe, url, count, first_index))


class ClientFleet:
    """N clients split over client processes: connect, then one measured window."""

    def __init__(self, url: str, count: int, procs: int):
        ctx = multiprocessing.get_context("spawn")
        self.children = []
        per = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
        first = 0
        for n in per:
            if n == 0:
                continue
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_process, args=(child, url, n, first), daemon=True)
            proc.start()
            self.children.append((proc, parent))
            first += n

    @property
    def pids(self) -> dict[str, int]:
        return {f"clients{i}": p.pid for i, (p, _) in enumerate(self.children)}

    def _recv(self, pipe, timeout: float, what: str):
        if not pipe.poll(timeout):
            raise RuntimeError(f"client process: no {what} after {timeout:g} s")
        return pipe.recv()

    def wait_connected(self) -> tuple[int, dict[str, int]]:
        connected, errors = 0, {}
        for _, pipe in self.children:
            _, n, errs = self._recv(pipe, CONNECT_TIMEOUT + 30, "connections")
            connected += n
            for k, v in errs.items():
                errors[k] = errors.get(k, 0) + v
        return connected, errors

    def start_window(self, t0: float, t1: float, symbols: list[str],
                     max_catch_up: float = MAX_CATCH_UP) -> None:  # fmt: skip
        """Measure ticks with ts in [t0, t1); then read on until caught up (or not)."""
        for _, pipe in self.children:
            pipe.send(("window", t0, t1, symbols, max_catch_up))

    def results(self) -> tuple[list[dict], list[float], dict, float | None]:
        """Per client results, every latency (s), per tick (first, last) latency, and the
        time after t1 until every client had caught up (None: not within the limit)."""
        clients, latencies, first, catch_up = [], [], {}, 0.0
        for _, pipe in self.children:
            _, c, lat, f, up = self._recv(pipe, RESULTS_TIMEOUT + MAX_CATCH_UP, "results")
            clients += c
            latencies += lat
            catch_up = None if up is None or catch_up is None else max(catch_up, up)
            for key, (lo, hi) in f.items():
                old = first.get(key)
                first[key] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        return clients, latencies, first, catch_up

    def stop(self) -> None:
        for _proc, pipe in self.children:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        for proc, pipe in self.children:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            pipe.close()


# --- Raw sockets that never read ---------------------------------------------------------------


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (a client must mask)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class SlowSocket:
    """A /ws/market client that subscribes to "*" and then never reads its socket."""

    def __init__(self, host: str, port: int, rcvbuf: int = SLOW_RCVBUF):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        self.port = self.sock.getsockname()[1]
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws/market HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            data += chunk
        head, _, self.pending = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head[:100]!r}")
        self.sock.sendall(ws_frame(SUBSCRIBE))
        self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def tcp_state(self) -> str:
        """The client side's TCP state: ESTABLISHED, CLOSE_WAIT (server sent FIN), CLOSE..."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return _TCP_STATES.get(info[0], str(info[0]))

    def unread_bytes(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self.sock, termios.FIONREAD, b"\0\0\0\0"))[0]

    def drain(self, *, limit_s: float = 10.0, limit_bytes: int = 64 * 2**20) -> dict:
        """Read what the socket holds now, then parse it: what did the server send?"""
        data, reset, eof = bytearray(self.pending), False, False
        self.sock.settimeout(0.5)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and len(data) < limit_bytes:
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                break
            except ConnectionResetError:
                reset = True
                break
            if not chunk:
                eof = True
                break
            data += chunk
        return {**parse_server_frames(bytes(data)), "bytes": len(data), "reset": reset,
                "eof": eof}  # fmt: skip

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


_TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
               7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 11: "CLOSING"}  # fmt: skip


def parse_server_frames(data: bytes) -> dict:
    """Count the (unmasked) frames a server sent: text frames and their messages, pings,
    the close frame's code."""
    counts = {"frames": 0, "ticks": 0, "overviews": 0, "pings": 0, "close_code": None,
              "truncated": False}  # fmt: skip
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            if i + 2 > len(data):
                break
            (n,) = struct.unpack("!H", data[i : i + 2])
            i += 2
        elif n == 127:
            if i + 8 > len(data):
                break
            (n,) = struct.unpack("!Q", data[i : i + 8])
            i += 8
        if i + n > len(data):
            counts["truncated"] = True
            break
        payload = data[i : i + n]
        i += n
        counts["frames"] += 1
        if opcode == 0x1:
            with contextlib.suppress(ValueError):
                for m in orjson.loads(payload):
                    counts["ticks"] += m.get("type") == "tick"
                    counts["overviews"] += m.get("type") == "overview"
        elif opcode == 0x9:
            counts["pings"] += 1
        elif opcode == 0x8:
            counts["close_code"] = struct.unpack("!H", payload[:2])[0] if n >= 2 else 1005
    return counts


def server_side_queues(server_port: int, client_ports: set[int]) -> dict[int, tuple[str, int]]:
    """From /proc/net/tcp: the server end of each client connection, (state, send queue)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
            if int(local.split(":")[1], 16) != server_port:
                continue
            remote_port = int(remote.split(":")[1], 16)
            if remote_port in client_ports:
                tx = int(queues.split(":")[0], 16)
                out[remote_port] = (_TCP_STATES.get(int(state, 16), state), tx)
    return out


# --- The anchor: the `websockets` library's broadcast server ----------------------------------


def anchor_server(port: int) -> None:
    """`python bench/ws_fanout.py --anchor-server PORT` (the stack's environment): a server
    written with the `websockets` library that relays the pipeline's batches to every client.

    It joins the `market` group once through the same channel layer as Daphne, answers a
    client's first message with `subscribed` to "*", and sends each batch (and each
    overview) as one JSON array with `websockets.broadcast`: one encode per batch, the
    library's framing and writes, no backpressure and no per-client filtering.
    """
    import django

    django.setup()
    raise_open_files_limit()
    asyncio.run(_anchor_main(port))


async def _anchor_main(port: int) -> None:
    from channels.layers import get_channel_layer
    from websockets.asyncio.server import broadcast, serve

    clients: set = set()
    subscribed = orjson.dumps([{"type": "subscribed", "symbols": ["*"]}]).decode()

    async def handler(ws) -> None:
        try:
            await ws.recv()  # the subscribe: everyone gets everything
            await ws.send(subscribed)
            clients.add(ws)
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("market", channel)
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**16,
                     backlog=CONNECT_CONCURRENCY * 4):  # fmt: skip
        print(f"anchor serving on {port}", flush=True)
        while True:
            message = await layer.receive(channel)
            if message["type"] == "market.batch":
                broadcast(clients, orjson.dumps(message["messages"]).decode())
            elif message["type"] == "market.overview":
                broadcast(clients, orjson.dumps([message["overview"]]).decode())


def start_anchor(stack: Stack) -> tuple[str, int]:
    """The anchor server as one of the stack's processes; (its ws:// URL, its pid)."""
    from apps.ops import processes

    port = processes.free_port()
    proc = stack.start("anchor", [__file__, "--anchor-server", str(port)])

    def listening() -> bool:
        stack.check_alive()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        return False

    wait_until(listening, timeout=60, what="the anchor server")
    return f"ws://127.0.0.1:{port}/", proc.pid


# --- The phases --------------------------------------------------------------------------------


def _redis_int(key: str) -> int:
    from apps.ops.redis_client import redis_client

    return int(redis_client().get(key) or 0)


def _rss(pids: list[int]) -> int:
    """The RSS of the server's processes together."""
    return sum(process_rss(pid) for pid in pids)


def _rss_now(pids: list[int], samples: int = 3) -> int:
    values = []
    for _ in range(samples):
        values.append(_rss(pids))
        time.sleep(0.3)
    return sorted(values)[len(values) // 2]


def _connections(pid: int, port: int) -> int:
    """Clients connected to one server process on `port`: how the kernel spread them over
    processes sharing a listening socket."""
    import psutil

    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def _wait_quiet(pids: list[int], *, below_pct: float = 25.0, limit_s: float = 60.0) -> float:
    """Wait (bounded) until the server is done with the last phase's backlog; its CPU %."""
    import psutil

    procs = [psutil.Process(pid) for pid in pids]
    for proc in procs:
        proc.cpu_percent(None)
    deadline = time.monotonic() + limit_s
    while True:
        time.sleep(1.0)
        busy = sum(proc.cpu_percent(None) for proc in procs)
        if busy < below_pct or time.monotonic() > deadline:
            return busy


def _db_ticks(t0: float, t1: float) -> set[tuple[str, int]]:
    from apps.market.models import Tick

    start, end = datetime.fromtimestamp(t0, UTC), datetime.fromtimestamp(t1, UTC)
    rows = Tick.objects.filter(ts__gte=start, ts__lt=end).values_list("symbol_id", "ts")
    return {(symbol, epoch_micros(ts)) for symbol, ts in rows}


def _pipeline_stats(t0: float, t1: float) -> dict:
    from apps.market import keys
    from apps.ops.redis_client import redis_client

    lag, total = [], []
    for raw in redis_client().lrange(keys.BATCH_STATS, 0, -1):
        entry = json.loads(raw)
        at = datetime.fromisoformat(entry["scheduled_at"]).timestamp()
        if t0 <= at < t1:
            lag.append(entry["lag_ms"])
            total.append(entry["total_ms"])
    return {
        "batches": len(lag),
        "lag_ms": _pcts(lag),
        "ingest_ms": _pcts(total),
    }


def _pcts(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values)}


def fanout_phase(ws_url: str, n: int, *, symbols: list[str], duration: float, procs: int,
                 stack: Stack, pids: list[int], server: str = "daphne") -> dict:  # fmt: skip
    """`n` clients of `ws_url` for one window; `pids` are the server's processes measured
    (RSS and CPU, summed under the name `server`: Daphne, or the anchor)."""
    from apps.market import keys

    print(f"\n{n} clients of {server}: connecting", flush=True)
    _wait_quiet(pids)
    rss_idle = _rss_now(pids)
    dropped_before = _redis_int(keys.WS_TICKS_DROPPED)
    fleet = ClientFleet(ws_url, n, procs)
    try:
        began = time.monotonic()
        connected, connect_errors = fleet.wait_connected()
        connect_s = time.monotonic() - began
        print(f"  {connected}/{n} connected in {connect_s:.1f} s; errors {connect_errors}",
              flush=True)  # fmt: skip
        stack.check_alive()
        time.sleep(2.0)
        rss_connected = _rss_now(pids)  # before a backlog (if any) builds up
        port = int(ws_url.split(":")[2].split("/")[0])
        per_process = [_connections(pid, port) for pid in pids]
        t0 = time.time() + 1.0
        t1 = t0 + duration
        fleet.start_window(t0, t1, symbols)
        time.sleep(max(0.0, t0 - time.time()))
        servers = {f"{server}-{k}": pid for k, pid in enumerate(pids, 1)}
        meter = CpuMeter({**servers, "worker": stack.procs["worker"].pid,
                          **fleet.pids}).start()  # fmt: skip
        rss_samples = []
        while time.time() < t1:
            rss_samples.append(_rss(pids))
            time.sleep(min(1.0, max(0.0, t1 - time.time())))
        cpu = meter.stop()
        cpu[server] = sum(cpu.pop(name) for name in servers)
        print(f"  window of {duration:g} s done; waiting for clients to catch up", flush=True)
        clients, latencies, first, catch_up = fleet.results()
    finally:
        fleet.stop()
    time.sleep(3.0)  # disconnects land, and with them the server's dropped-tick counts
    dropped = _redis_int(keys.WS_TICKS_DROPPED) - dropped_before
    expected = _db_ticks(t0, t1)
    slots = round(duration / TICK_INTERVAL)

    ok = [c for c in clients if c.get("connected")]
    missing_per_client = [len(expected - set(map(tuple, c["got"]))) for c in ok]
    extra = sum(len(set(map(tuple, c["got"])) - expected) for c in ok)
    gaps = [m for m in missing_per_client if m]
    first_lat = [lo * 1000.0 for lo, _ in first.values()]
    spread = [(hi - lo) * 1000.0 for lo, hi in first.values()]
    lat_ms = [x * 1000.0 for x in latencies]
    closed = {}
    for c in ok:
        if c["close_code"] is not None or c["error"]:
            label = f"close {c['close_code']}" if c["close_code"] else c["error"]
            closed[label] = closed.get(label, 0) + 1
    result = {
        "server": server,
        "clients": n,
        "connected": connected,
        "connect_seconds": connect_s,
        "connect_errors": connect_errors,
        "client_processes": len(fleet.children),
        "server_processes": len(pids),
        "connections_per_server_process": per_process,
        "window_seconds": duration,
        "db_ticks_in_window": len(expected),
        "slots_in_window": slots * len(symbols),
        "ticks_per_s_delivered": sum(c["ticks_in_window"] for c in ok) / duration,  # received
        "frames_per_s_delivered": sum(c["frames_in_window"] for c in ok) / duration,
        "overviews": sum(c["overviews"] for c in ok),
        "latency_ms": _pcts(lat_ms),
        "deliveries": len(lat_ms),
        "first_receiver_latency_ms": _pcts(first_lat),
        "fanout_spread_ms": _pcts(spread),
        "slowest_client_ms_by_5s": _trend(first, t0, duration),
        "catch_up_after_window_s": catch_up,
        "clients_with_gaps": len(gaps),
        "missing_ticks": sum(missing_per_client),
        "max_missing_one_client": max(missing_per_client, default=0),
        "ticks_not_in_db": extra,
        "duplicates": sum(c["duplicates"] for c in ok),
        "out_of_order": sum(c["out_of_order"] for c in ok),
        "closed_during_run": closed,
        "server_ticks_dropped": dropped,
        "rss_idle_mb": rss_idle / 2**20,
        "rss_with_clients_mb": rss_connected / 2**20,
        "rss_window_max_mb": max(rss_samples, default=rss_connected) / 2**20,
        "rss_per_connection_kb": (rss_connected - rss_idle) / max(connected, 1) / 1024,
        "cpu_pct": cpu,
        "pipeline": _pipeline_stats(t0, t1),
    }
    lat = result["latency_ms"]
    print(
        f"  {result['ticks_per_s_delivered']:.0f} ticks/s delivered, latency p50 "
        f"{lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms, {len(gaps)} clients with gaps, "
        f"{server} {cpu[server]:.0f}% cpu, caught up {_secs(catch_up)} after the window",
        flush=True,
    )
    return result


def _x(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "-"


def _secs(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else f"not within {MAX_CATCH_UP:g} s"


def _trend(first: dict, t0: float, duration: float, step: float = 5.0) -> list[float | None]:
    """The slowest client's latency (ms) by `step` seconds of tick ts: does a backlog grow?"""
    buckets: list[float | None] = [None] * max(1, round(duration / step))
    for key, (_, hi) in first.items():
        ts = int(key.split()[1]) / 1e6
        i = min(len(buckets) - 1, int((ts - t0) // step))
        if i >= 0:
            buckets[i] = max(buckets[i] or 0.0, hi * 1000.0)
    return [round(b, 1) if b is not None else None for b in buckets]


def slow_phase(host: str, port: int, ws_url: str, *, symbols: list[str], slow: int,
               control: int, duration: float, stack: Stack, pids: list[int]) -> dict:  # fmt: skip
    from apps.market import keys

    print(
        f"\nslow readers: {slow} clients that never read beside {control} that do, "
        f"for {duration:g} s",
        flush=True,
    )
    _wait_quiet(pids)
    rss_idle = _rss_now(pids)
    dropped_before = _redis_int(keys.WS_TICKS_DROPPED)
    fleet = ClientFleet(ws_url, control, 1) if control else None
    sockets: list[SlowSocket] = []
    try:
        if fleet:
            fleet.wait_connected()
        sockets = [SlowSocket(host, port) for _ in range(slow)]
        ports = {s.port for s in sockets}
        rcvbuf = sockets[0].rcvbuf if sockets else None
        time.sleep(1.0)
        t0 = time.time()
        t1 = t0 + duration
        if fleet:
            fleet.start_window(t0, t1, symbols)
        samples = []
        while True:
            stack.check_alive()
            now = time.time()
            server = server_side_queues(port, ports)
            states = {}
            for s in sockets:
                state = s.tcp_state()
                states[state] = states.get(state, 0) + 1
            sample = {
                "t": now - t0,
                "rss_mb": _rss(pids) / 2**20,
                "client_states": states,
                "client_unread_bytes": sum(s.unread_bytes() for s in sockets),
                "server_established": sum(1 for st, _ in server.values() if st == "ESTABLISHED"),
                "server_send_queue_bytes": sum(tx for _, tx in server.values()),
            }
            samples.append(sample)
            print(
                f"  t={sample['t']:5.0f} s  rss {sample['rss_mb']:.1f} MB  slow sockets "
                f"{states}  server-side open {sample['server_established']}  queued "
                f"server {sample['server_send_queue_bytes']:,} B / client "
                f"{sample['client_unread_bytes']:,} B",
                flush=True,
            )
            if now >= t1:
                break
            time.sleep(max(0.0, min(SAMPLE_EVERY, t1 - time.time())))
        dropped_while_open = _redis_int(keys.WS_TICKS_DROPPED) - dropped_before
        drained = [s.drain() for s in sockets]
        for s in sockets:
            s.close()
        sockets = []
        control_result = None
        if fleet:
            clients, latencies, _, _ = fleet.results()
            expected = _db_ticks(t0, t1)
            ok = [c for c in clients if c.get("connected")]
            missing = [len(expected - set(map(tuple, c["got"]))) for c in ok]
            control_result = {
                "clients": control,
                "connected": len(ok),
                "latency_ms": _pcts([x * 1000.0 for x in latencies]),
                "clients_with_gaps": sum(1 for m in missing if m),
                "missing_ticks": sum(missing),
                "db_ticks_in_window": len(expected),
            }
    finally:
        for s in sockets:
            s.close()
        if fleet:
            fleet.stop()
    time.sleep(3.0)
    dropped_total = _redis_int(keys.WS_TICKS_DROPPED) - dropped_before
    rss = [s["rss_mb"] for s in samples]
    fate: dict[str, int] = {}
    for d in drained:
        if d["close_code"] is not None:
            label = f"close frame {d['close_code']}"
        elif d["reset"]:
            label = "reset by server (no close frame)"
        elif d["eof"]:
            label = "closed by server (FIN, no close frame)"
        else:
            label = "still open"
        fate[label] = fate.get(label, 0) + 1
    closed_at = next((s["t"] for s in samples if s["server_established"] < len(drained)), None)
    return {
        "slow_clients": slow,
        "duration_seconds": duration,
        "rcvbuf_bytes": rcvbuf,
        "rss_idle_before_mb": rss_idle / 2**20,
        "rss_first_mb": rss[0],
        "rss_last_mb": rss[-1],
        "rss_max_mb": max(rss),
        "rss_growth_pct": 100.0 * (rss[-1] - rss[0]) / rss[0],
        "rss_max_growth_pct": 100.0 * (max(rss) - rss[0]) / rss[0],
        "samples": samples,
        "slow_socket_fate": fate,
        "first_server_close_seen_at_s": closed_at,
        "slow_sockets_drained": drained,
        "server_ticks_dropped_while_open": dropped_while_open,
        "server_ticks_dropped_total": dropped_total,
        "control": control_result,
    }


# --- Main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--clients", default=None, help="comma-separated (default 1000,5000)")
    parser.add_argument("--duration", type=float, default=None, help="s per fan-out window")
    parser.add_argument(
        "--slow-duration", type=float, default=None,
        help="s of the slow-reader phase (default 300; 30 with --quick)",
    )  # fmt: skip
    parser.add_argument("--slow-clients", type=int, default=10)
    parser.add_argument("--control-clients", type=int, default=10,
                        help="reading clients beside the slow ones")  # fmt: skip
    parser.add_argument("--client-procs", type=int, default=2,
                        help="processes the fan-out clients are split over")  # fmt: skip
    parser.add_argument("--asgi-processes", type=int, default=1,
                        help="Daphne processes sharing one listening socket, as make run "
                        "starts them (default 1)")  # fmt: skip
    parser.add_argument("--no-anchor", action="store_true",
                        help="skip the websockets broadcast server's phases")  # fmt: skip
    parser.add_argument("--anchor-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.anchor_server:  # the anchor's own process (see `start_anchor`)
        anchor_server(args.anchor_server)
        return
    counts = [
        int(x) for x in (args.clients or ("50,200" if args.quick else "1000,5000")).split(",")
    ]
    duration = args.duration or (10.0 if args.quick else 45.0)
    slow_duration = args.slow_duration or (30.0 if args.quick else 300.0)
    raise_open_files_limit()

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine_before = machine_info()
    name = setup_django_with_bench_database()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    keep_logs = True
    try:
        from django.core.management import call_command

        call_command("seed_symbols", verbosity=0)
        from apps.market.models import Symbol

        symbols = sorted(Symbol.objects.filter(active=True).values_list("ticker", flat=True))
        clear_app_redis_keys()
        env = stack_env(TICK_INTERVAL=str(TICK_INTERVAL), DEBUG="0")
        with Stack(env, log_dir) as stack:
            stack.worker()
            stack.beat()
            url, daphnes = stack.daphnes(args.asgi_processes)
            pids = [proc.pid for proc in daphnes]
            host, port = url.removeprefix("http://").split(":")
            ws_url = f"ws://{host}:{port}/ws/market"
            anchor_url, anchor_pid = start_anchor(stack) if not args.no_anchor else (None, None)
            print(f"stack up: Daphne {url} (pids {pids}), worker, beat, anchor "
                  f"{anchor_url} (pid {anchor_pid}); symbols {symbols}")  # fmt: skip
            wait_until(
                lambda: stack.check_alive() or _all_priced(url, symbols),
                timeout=90,
                what="the first live ticks of every symbol",
            )
            time.sleep(2.0)
            phases = []
            for n in counts:  # MarketFlux, then the anchor at the same count
                phases.append(fanout_phase(
                    ws_url, n, symbols=symbols, duration=duration, procs=args.client_procs,
                    stack=stack, pids=pids,
                ))  # fmt: skip
                if anchor_url:
                    phases.append(fanout_phase(
                        anchor_url, n, symbols=symbols, duration=duration,
                        procs=args.client_procs, stack=stack, pids=[anchor_pid],
                        server="anchor",
                    ))  # fmt: skip
            slow = slow_phase(
                host, int(port), ws_url, symbols=symbols, slow=args.slow_clients,
                control=args.control_clients,
                duration=slow_duration, stack=stack, pids=pids,
            )  # fmt: skip
            stack.check_alive()
            server_errors: dict[str, int] = {}
            for name in [name for name in stack.procs if name.startswith("daphne")]:
                for error, count in stack.log_errors(name).items():
                    server_errors[error] = server_errors.get(error, 0) + count
        keep_logs = False
    finally:
        drop_bench_database(name)
        if keep_logs:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)

    report(phases, slow, symbols)
    if server_errors:
        print(f"exceptions Daphne logged (outermost of each chain): {server_errors}")
    write_results(
        "ws_fanout",
        {
            "started": started,
            "machine_at_start": machine_before,
            "setup": {
                "server": f"{args.asgi_processes} Daphne process(es) sharing one listening "
                "socket, DEBUG=0, default ping interval/timeout (20/30 s)",
                "tick_interval": TICK_INTERVAL,
                "symbols": symbols,
                "worker": "celery worker --pool solo, celery beat",
                "client": f"bare asyncio WebSocket protocols (_Client), {args.client_procs} "
                "client processes sharing the fan-out clients; raw sockets for slow readers",
                "quick": args.quick,
            },
            "targets": {
                "latency_p99_ms": TARGET_P99_MS,
                "no_loss_for_clients_that_keep_up": True,
                "rss_flat_within_pct": TARGET_RSS_GROWTH_PCT,
            },
            "fanout": phases,
            "anchor": "websockets 17 broadcast server, one process, relaying the market group",
            "against_anchor": anchor_ratios(phases),
            "slow_readers": slow,
            "server_errors_logged": server_errors,
        },
    )


def _all_priced(url: str, symbols: list[str]) -> bool:
    try:
        data = http_json(f"{url}/api/v1/market/overview")
    except OSError:
        return False
    priced = {s["symbol"] for s in data.get("symbols", []) if s.get("price") is not None}
    return set(symbols) <= priced


def anchor_ratios(phases: list[dict]) -> list[dict]:
    """Per client count: MarketFlux's latency p50 and p99 divided by the anchor's."""
    out = []
    for ours in phases:
        if ours.get("server", "daphne") != "daphne":
            continue
        anchor = next((p for p in phases if p.get("server") == "anchor"
                       and p["clients"] == ours["clients"]), None)  # fmt: skip
        if anchor is None:
            continue
        ratio = {}
        for q in ("p50", "p99"):
            a, b = ours["latency_ms"][q], anchor["latency_ms"][q]
            ratio[q] = a / b if a is not None and b else None
        out.append({"clients": ours["clients"], "latency_ratio": ratio})
    return out


def report(phases: list[dict], slow: dict, symbols: list[str]) -> None:
    cores = os.cpu_count()
    ours = [p for p in phases if p.get("server") == "daphne"]
    spread = [p["connections_per_server_process"] for p in ours]
    print(
        f"\nsetup: {ours[0]['server_processes'] if ours else 1} Daphne process(es) (DEBUG=0; "
        f"clients per process {spread}), Celery worker --pool solo + beat at "
        f"TICK_INTERVAL={TICK_INTERVAL} s, {len(symbols)} symbols; every client subscribed "
        f'to "*". Clients, server, worker, PostgreSQL and Redis share {cores} cores '
        f"(load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())}: other work "
        f"on the machine counts too)."
    )
    rows = []
    for p in phases:
        lat, first, spread = p["latency_ms"], p["first_receiver_latency_ms"], p["fanout_spread_ms"]
        target = "-"
        server = p.get("server", "daphne")
        goal = TARGET_P99_MS.get(p["clients"])
        if goal and server == "daphne":
            good = (lat["p99"] or 1e9) < goal and p["missing_ticks"] == 0
            target = f"p99 < {goal:g} ms, no loss: {'met' if good else 'MISSED'}"
        rows.append([
            server, p["clients"], p["connected"], p["ticks_per_s_delivered"],
            p["frames_per_s_delivered"],
            lat["p50"], lat["p99"], lat["max"], first["p50"], first["p99"], spread["p99"],
            f"{p['clients_with_gaps']}/{p['missing_ticks']}", p["server_ticks_dropped"],
            p["rss_per_connection_kb"], p["cpu_pct"][server],
            sum(v for k, v in p["cpu_pct"].items() if k.startswith("clients")), target,
        ])  # fmt: skip
    print_table(
        "fan-out on /ws/market and on the anchor (latency = receive time - tick ts, every "
        "tick of every client)",
        ["server", "clients", "conn", "ticks/s", "frames/s", "p50 ms", "p99 ms", "max ms",
         "1st p50", "1st p99", "spread p99", "gaps cl/ticks", "srv dropped", "KiB/conn",
         "server %cpu", "client %cpu", "target"],
        rows,
    )  # fmt: skip
    for r in anchor_ratios(phases):
        q = r["latency_ratio"]
        print(f"{r['clients']} clients: /ws/market latency / anchor's: p50 "
              f"{_x(q['p50'])}, p99 {_x(q['p99'])}")  # fmt: skip
    rows = []
    for p in phases:
        pl = p["pipeline"]
        rows.append([
            p.get("server", "daphne"), p["clients"], p["db_ticks_in_window"],
            p["slots_in_window"], pl["batches"],
            pl["lag_ms"]["p50"], pl["lag_ms"]["p99"], pl["ingest_ms"]["p50"],
            pl["ingest_ms"]["p99"], p["cpu_pct"]["worker"], p["cpu_pct"]["machine"],
            p["rss_idle_mb"], p["rss_with_clients_mb"], p["rss_window_max_mb"], p["duplicates"],
            p["out_of_order"],
        ])  # fmt: skip
    print_table(
        "the same windows: pipeline (slot -> worker start lag, ingest time), machine, memory",
        ["server", "clients", "db ticks", "slots", "batches", "lag p50", "lag p99", "ingest p50",
         "ingest p99", "worker %cpu", "machine %cpu", "rss idle MB", "rss conn. MB",
         "rss max MB", "dupes", "out of order"],
        rows,
    )  # fmt: skip
    for p in phases:
        print(
            f"{p.get('server', 'daphne')}, {p['clients']} clients: the slowest client's "
            f"latency by 5 s of the window "
            f"{p['slowest_client_ms_by_5s']} ms; every client had every tick of the window "
            f"{_secs(p['catch_up_after_window_s'])} after it ended"
        )
    growth_ok = abs(slow["rss_max_growth_pct"]) <= TARGET_RSS_GROWTH_PCT
    ctrl = slow["control"] or {}
    print_table(
        f"slow readers: {slow['slow_clients']} sockets that never read, "
        f"{slow['duration_seconds']:g} s (Daphne RSS sampled every {SAMPLE_EVERY:g} s)",
        ["rss first MB", "rss last MB", "rss max MB", "growth %", "max growth %",
         "target", "readers beside: p99 ms", "gaps cl/ticks"],
        [[
            slow["rss_first_mb"], slow["rss_last_mb"], slow["rss_max_mb"],
            f"{slow['rss_growth_pct']:+.1f}", f"{slow['rss_max_growth_pct']:+.1f}",
            f"within {TARGET_RSS_GROWTH_PCT:g} %: {'met' if growth_ok else 'MISSED'}",
            (ctrl.get("latency_ms") or {}).get("p99"),
            f"{ctrl.get('clients_with_gaps')}/{ctrl.get('missing_ticks')}",
        ]],
    )  # fmt: skip
    print(
        f"\nwhat the server did to the slow sockets: {slow['slow_socket_fate']}; first seen "
        f"closed server-side at t={slow['first_server_close_seen_at_s']} s; ticks coalesced "
        f"away (Redis WS_TICKS_DROPPED): {slow['server_ticks_dropped_while_open']} while they "
        f"were open, {slow['server_ticks_dropped_total']} after they closed"
    )
    d = slow["slow_sockets_drained"]
    if d:
        print(
            f"drained at the end, per socket: {d[0]['bytes']:,} bytes, {d[0]['frames']} frames, "
            f"{d[0]['ticks']} ticks, {d[0]['overviews']} overviews, {d[0]['pings']} pings "
            f"(socket 1 of {len(d)})"
        )


if __name__ == "__main__":
    main()
