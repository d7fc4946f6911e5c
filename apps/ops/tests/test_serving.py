"""`make run` serves one origin: end to end through the launcher's supervisor, as a user gets
it (docs/operations.md#serving). nginx in front, granian for pages, REST and static files,
two Daphne processes for both WebSocket paths; a session login on a page opens the
WebSockets, a foreign page cannot; each Daphne process sends its clients every tick.
Without nginx, the launcher says so and the pages use a second port.

One stack for the module (a few seconds of ticks is all each test needs), with market data
behind a login (MARKETFLUX_PUBLIC_READ=0), so an accepted socket proves the cookie counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import psycopg
import pytest
import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from apps.ops.processes import free_port
from apps.testing import BASE_DIR
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.worker

TICKERS = {"AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"}
FOREIGN = "http://evil.example"


@dataclass
class Stack:
    proc: subprocess.Popen
    site: str
    var_dir: Path
    log: Path

    @property
    def ws(self) -> str:
        return self.site.replace("http://", "ws://")

    def children(self, program: str) -> list[psutil.Process]:
        """The launcher's children running `program` (`python -m daphne`, `/usr/sbin/nginx`)."""
        family = psutil.Process(self.proc.pid).children()
        return [p for p in family
                if any(a == program or a.endswith(f"/{program}") for a in p.cmdline())]  # fmt: skip

    def database_url(self) -> str:
        lines = (self.var_dir / "launcher.env").read_text().split()
        return dict(line.split("=", 1) for line in lines)["DATABASE_URL"]


def start_stack(tmp: Path, **env: str) -> Stack:
    var_dir, port = tmp / "var", free_port()
    full_env = {k: v for k, v in os.environ.items()
                if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}  # fmt: skip
    full_env.update(MARKETFLUX_VAR_DIR=str(var_dir), PORT=str(port), TICK_INTERVAL="0.5",
                    MARKETFLUX_PROMETHEUS_PORT=str(free_port()), **env)  # fmt: skip
    log = tmp / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.ops.launcher", "run"],
        cwd=BASE_DIR, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    stack = Stack(proc, f"http://127.0.0.1:{port}", var_dir, log)
    wait_for(lambda: proc.poll() is not None or _ok(f"{stack.site}/health"), timeout=120,
             what="/health through the launcher's stack")  # fmt: skip
    assert proc.poll() is None, log.read_text()[-3000:]
    return stack


def stop_stack(stack: Stack) -> None:
    family = psutil.Process(stack.proc.pid).children(recursive=True)
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(60) == 0
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def login(stack: Stack) -> requests.Session:
    """Signs in on the site's login page, as a person would, with the printed admin login."""
    password = (stack.var_dir / "admin-password.txt").read_text().strip()
    session = requests.Session()
    page = session.get(f"{stack.site}/accounts/login/", timeout=10)
    assert page.status_code == 200
    answer = session.post(
        f"{stack.site}/accounts/login/",
        data={"username": "admin", "password": password,
              "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200
    assert "sessionid" in session.cookies
    return session


def cookie_header(session: requests.Session) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in session.cookies)}


# First in the file: it runs its own stack before the module's (started on first use) is up.
def test_without_nginx_the_launcher_says_so_and_the_pages_use_a_second_port(tmp_path):
    """MARKETFLUX_NGINX="" stands for a machine without nginx."""
    ws_port = free_port()
    fallback = start_stack(
        tmp_path,
        MARKETFLUX_NGINX="",
        MARKETFLUX_WS_PORT=str(ws_port),
        MARKETFLUX_PUBLIC_READ="0",
        MARKETFLUX_ASGI_PROCESSES="1",
        MARKETFLUX_WEB_PROCESSES="1",
    )
    try:
        banner = (fallback.var_dir / "banner.txt").read_text()
        assert "WITHOUT a proxy (no nginx" in banner
        assert f"on a second port, {ws_port}, which the pages use" in banner
        assert f"feed    ws://127.0.0.1:{ws_port}/ws/market" in banner
        assert not fallback.children("nginx")

        session = login(fallback)
        home = session.get(f"{fallback.site}/", timeout=10)
        assert home.status_code == 200
        assert "nginx" not in home.headers.get("Server", "")
        meta = re.search(r'<meta name="marketflux-ws-port" content="(\d+)">', home.text)
        assert meta, "the pages name the WebSocket port"
        assert int(meta.group(1)) == ws_port

        async def feed() -> int:
            async with connect(f"ws://127.0.0.1:{ws_port}/ws/market", origin=fallback.site,
                               additional_headers=cookie_header(session),
                               open_timeout=10) as ws:  # fmt: skip
                await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL"]}))
                return len(await first_ticks(ws, {"AAPL"}))

        assert asyncio.run(feed()) == 1  # the page's cookie opened the socket on the other port
    finally:
        stop_stack(fallback)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    running = start_stack(
        tmp_path_factory.mktemp("serving"),
        MARKETFLUX_PUBLIC_READ="0",
        MARKETFLUX_ASGI_PROCESSES="2",
        MARKETFLUX_WEB_PROCESSES="2",
        MARKETFLUX_WEB_THREADS="2",
    )
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def session(stack) -> requests.Session:
    return login(stack)


@pytest.fixture(scope="module")
def token(stack, session) -> str:
    """An API token made from the signed-in session (for programs: the gateway's auth)."""
    answer = session.post(
        f"{stack.site}/api/v1/auth/token",
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{stack.site}/"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def test_make_runs_prometheus_scrapes_the_stack_with_the_repositorys_rules(stack):
    """Prometheus (Debian's; .ci/run installs it) runs under the launcher beside the tiers,
    scrapes /metrics, which sums every process, and loads deploy/prometheus/rules/."""
    banner = (stack.var_dir / "banner.txt").read_text()
    match = re.search(r"Prometheus (http://127\.0\.0\.1:\d+)/", banner)
    assert match, banner
    prometheus = match.group(1)
    assert stack.children("prometheus")

    def query(promql: str) -> list:
        answer = requests.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
        return answer.json()["data"]["result"] if answer.ok else []

    up = wait_for(lambda: query('up{job="marketflux"} == 1'), timeout=90,
                  what="Prometheus's first scrape of the stack")  # fmt: skip
    assert up[0]["metric"]["host"] == "local"
    # The pipeline's batches, counted by the Celery worker and summed by the web tier.
    batches = wait_for(lambda: query("marketflux_pipeline_batches_total > 0"), timeout=60,
                       what="batches in Prometheus")  # fmt: skip
    assert float(batches[0]["value"][1]) > 0
    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert groups, "deploy/prometheus/rules/ loaded"
    assert all(rule["health"] != "err" for g in groups for rule in g["rules"])


def test_pages_rest_static_files_and_health_are_served_on_one_origin(stack, session):
    banner = (stack.var_dir / "banner.txt").read_text()
    assert "serving one origin through nginx" in banner
    assert "granian (2 processes x 2 threads)" in banner
    assert "Daphne (2 processes" in banner
    assert f"feed    {stack.ws}/ws/market" in banner

    home = session.get(f"{stack.site}/", timeout=10)
    assert home.status_code == 200
    assert home.headers["Server"].startswith("nginx")  # through the proxy
    assert 'name="marketflux-ws-port"' not in home.text  # the pages' WebSockets: same origin
    price_url = f"{stack.site}/api/v1/stocks/aapl/price"
    wait_for(lambda: session.get(price_url, timeout=10).json()["price"] is not None,
             timeout=60, what="the first tick of AAPL")  # fmt: skip
    home = session.get(f"{stack.site}/", timeout=10).text
    prices = dict(re.findall(r'data-symbol="([A-Z]+)" data-field="price">([^<]*)<', home))
    assert len(prices) == 5
    assert re.fullmatch(r"[\d,]+\.\d+", prices["AAPL"]), prices
    symbol = session.get(f"{stack.site}/stocks/AAPL/", timeout=10)
    assert symbol.status_code == 200
    assert "AAPL" in symbol.text
    assert session.get(f"{stack.site}/stocks?q=aapl", timeout=10).url.endswith("/stocks/AAPL/")

    script = session.get(f"{stack.site}/static/js/feed.js", timeout=10)  # WhiteNoise
    assert script.status_code == 200
    assert "javascript" in script.headers["Content-Type"]
    assert "export class Feed" in script.text

    price = session.get(price_url, timeout=10)
    assert price.status_code == 200
    assert price.json()["symbol"] == "AAPL"
    assert price.json()["price"] > 0
    anonymous = requests.get(f"{stack.site}/api/v1/stocks/AAPL/price", timeout=10)
    assert anonymous.status_code == 401  # MARKETFLUX_PUBLIC_READ=0: the login counted above
    assert requests.get(f"{stack.site}/health", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{stack.site}/ready", timeout=10)
    assert ready.status_code == 200, ready.text  # database, Redis, broker, worker, ticks
    # nginx gives each request its own id, whatever the client sent, and the app answers it.
    traced = requests.get(f"{stack.site}/health", headers={"X-Request-ID": "client-made"},
                          timeout=10)  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{32}", traced.headers["X-Request-ID"])


async def first_ticks(ws: ClientConnection, symbols: set[str]) -> set[str]:
    """Reads /ws/market frames until a tick of each symbol has come (30 s at most); the
    symbols seen."""
    seen: set[str] = set()
    async with asyncio.timeout(30):
        while not symbols <= seen:
            for message in json.loads(await ws.recv()):
                if message["type"] == "tick":
                    seen.add(message["symbol"])
    return seen


async def test_a_session_login_on_a_page_opens_both_websocket_paths(stack, session, token):
    own_page = {"origin": stack.site, "additional_headers": cookie_header(session)}
    async with connect(f"{stack.ws}/ws/market", **own_page, open_timeout=10) as ws:
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["AAPL", "TSLA"]}))
        assert await first_ticks(ws, {"AAPL", "TSLA"}) >= {"AAPL", "TSLA"}
    async with connect(f"{stack.ws}/ws/stocks/MSFT", **own_page, open_timeout=10) as ws:
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert snapshot["type"] == "snapshot"
        assert snapshot["symbol"] == "MSFT"

    # The same page without the cookie: the socket opens and is closed as unauthorised.
    async with connect(f"{stack.ws}/ws/market", origin=stack.site, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd.code == 4401

    # The gateway's /stocks (a WebSocket on a path the dashboard also serves as a page)
    # through the same origin, with a token the session made.
    async with connect(f"{stack.ws}/stocks", origin=stack.site, open_timeout=10) as ws:
        assert json.loads(await ws.recv())[0]["status"] == "connected"
        await ws.send(json.dumps({"action": "auth", "params": token}))
        assert json.loads(await ws.recv())[0]["status"] == "auth_success"
        await ws.send(json.dumps({"action": "subscribe", "params": "T.AAPL"}))
        events: list[dict] = []
        async with asyncio.timeout(30):
            while not any(e.get("ev") == "T" for e in events):
                events += json.loads(await ws.recv())
        trade = next(e for e in events if e.get("ev") == "T")
        assert trade["sym"] == "AAPL"
        assert trade["p"] > 0


@pytest.mark.parametrize("path", ["/ws/market", "/stocks"])
async def test_a_foreign_page_cannot_open_a_websocket_even_with_the_cookie(stack, session, path):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{stack.ws}{path}", origin=FOREIGN, open_timeout=10,
                           additional_headers=cookie_header(session)):  # fmt: skip
            pass
    assert refused.value.response.status_code == 403


def asgi_listening_port(stack: Stack) -> int:
    daphnes = stack.children("daphne")
    ports = {c.laddr.port for p in daphnes for c in p.net_connections("inet")
             if c.status == psutil.CONN_LISTEN}  # fmt: skip
    assert len(ports) == 1, ports  # one socket, shared by every Daphne process
    return ports.pop()


def owner(stack: Stack, ws: ClientConnection) -> int:
    """The pid of the Daphne process holding this client's connection."""
    local = ws.local_address[1]
    for process in stack.children("daphne"):
        if any(c.raddr and c.raddr.port == local for c in process.net_connections("inet")):
            return process.pid
    raise AssertionError(f"no Daphne holds the connection from port {local}")


async def test_each_of_two_asgi_processes_sends_its_clients_every_tick(stack, token):
    """Clients straight on the ASGI tier's shared socket until both Daphne processes hold
    some; then every tick stored over four seconds reaches every client."""
    daphnes = {p.pid for p in stack.children("daphne")}
    assert len(daphnes) == 2
    url = f"ws://127.0.0.1:{asgi_listening_port(stack)}/ws/market?token={token}"
    clients: dict[ClientConnection, int] = {}
    try:
        for _ in range(24):
            ws = await connect(url, open_timeout=10)
            clients[ws] = owner(stack, ws)
            if set(clients.values()) == daphnes:
                break
        assert set(clients.values()) == daphnes, "the kernel gave every client to one process"
        received = {ws: set() for ws in clients}

        async def read(ws: ClientConnection) -> None:
            await ws.send(json.dumps({"action": "subscribe", "symbols": "*"}))
            while True:
                for message in json.loads(await ws.recv()):
                    if message["type"] == "tick":
                        ts = datetime.fromisoformat(message["ts"])
                        received[ws].add((message["symbol"], ts))

        readers = [asyncio.create_task(read(ws)) for ws in clients]
        await asyncio.sleep(2)  # subscribed, and the first ticks in
        window_start = time.time()
        await asyncio.sleep(4)
        window_end = time.time()
        wait_until = time.monotonic() + 30  # every client past the window, or a failure below

        def caught_up() -> bool:
            return all(any(ts.timestamp() > window_end + 1 for _, ts in got)
                       for got in received.values())  # fmt: skip

        while not caught_up() and time.monotonic() < wait_until:  # noqa: ASYNC110 (polling readers)
            await asyncio.sleep(0.2)
        for task in readers:
            task.cancel()
    finally:
        for ws in clients:
            await ws.close()

    with psycopg.connect(stack.database_url(), connect_timeout=5) as conn:
        stored = set(conn.execute(
            "SELECT symbol_id, ts FROM market_tick WHERE ts >= to_timestamp(%s) "
            "AND ts <= to_timestamp(%s)", (window_start, window_end),
        ).fetchall())  # fmt: skip
    assert {symbol for symbol, _ in stored} == TICKERS  # four seconds of every symbol
    for ws, pid in clients.items():
        missing = stored - received[ws]
        assert not missing, f"a client of Daphne {pid} missed {len(missing)} ticks"
