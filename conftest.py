"""Fixtures shared by every test: real Redis, real Celery processes, the default market."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib

BASE_DIR = Path(__file__).resolve().parent


@pytest.fixture
def redis_client(settings) -> Iterator[redis_lib.Redis]:
    """The real Redis of the test run, emptied before and after the test."""
    from apps.ops.redis_client import redis_client as app_client

    client = app_client()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def market(db) -> list:
    """The default five symbols, as `seed_symbols` creates them."""
    from apps.market.models import Symbol
    from apps.market.services import symbols_seed

    symbols_seed()
    return list(Symbol.objects.order_by("ticker"))


@pytest.fixture
def reset_simulator_cache() -> Iterator[None]:
    """Forget the prices this process remembers, as a restarted worker would."""
    from apps.ingest import services

    services._last_seen.clear()
    yield
    services._last_seen.clear()


@pytest.fixture(scope="module")
def timescale_db(django_db_blocker):
    """Django's connection on a throw-away TimescaleDB (PGlite), migrated and seeded.

    PGlite serves one database over one connection, so the tests that use it point
    Django's default connection at it directly instead of pytest-django's test database.
    """
    from django.core.management import call_command
    from django.db import connection

    from apps.market.services import symbols_seed
    from apps.ops.timescale_server import PgliteTimescale

    with PgliteTimescale() as server, django_db_blocker.unblock():
        saved = dict(connection.settings_dict)
        connection.close()
        connection.settings_dict.update(
            HOST=server.host, PORT=server.port, NAME="postgres", USER="postgres",
            PASSWORD=server.password, OPTIONS={"sslmode": "disable"}, CONN_MAX_AGE=0,
        )  # fmt: skip
        connection._marketflux_timescale = None
        try:
            call_command("migrate", verbosity=0)
            symbols_seed()
            yield server
        finally:
            connection.close()
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)
            connection._marketflux_timescale = None


def wait_for(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, what: str = ""
) -> object:
    """Poll until `predicate` returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def database_url_of_test_db() -> str:
    """DATABASE_URL of the database pytest-django created, for processes we start."""
    from django.db import connection

    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


class Processes:
    """Real processes (Celery worker, beat, Daphne) started by a test, always stopped."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = database_url_of_test_db()
        env["DB_POOL_MAX_SIZE"] = "4"
        env.update(extra)
        return env

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=BASE_DIR,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_file = log  # type: ignore[attr-defined]
        self.procs[name] = proc
        return proc

    def celery_worker(self, name: str = "worker", **env: str) -> subprocess.Popen:
        return self.start(
            name,
            ["-m", "celery", "-A", "marketflux_site", "worker", "--pool", "solo",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            **env,
        )  # fmt: skip

    def celery_beat(self, name: str = "beat", **env: str) -> subprocess.Popen:
        return self.start(
            name,
            ["-m", "celery", "-A", "marketflux_site", "beat", "--loglevel", "INFO",
             "--schedule", str(self.tmp_path / "celerybeat-schedule")],
            **env,
        )  # fmt: skip

    def daphne(self, name: str = "web", **env: str) -> str:
        """A real Daphne on a free loopback port; returns its base URL once it answers."""
        import requests

        from apps.ops.embedded import free_port

        port = free_port()
        self.start(
            name,
            [
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "marketflux_site.asgi:application",
            ],
            **env,
        )
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return requests.get(f"{url}/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(answers, timeout=30, what=f"Daphne on {url}")
        return url

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait(10)

    def stop(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        proc.log_file.close()  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


class TcpProxy:
    """A loopback TCP proxy a test can cut and restore, to take a real server 'down'."""

    def __init__(self, target_host: str, target_port: int):
        import asyncio
        import threading

        from apps.ops.embedded import free_port

        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._server = None
        self._writers: set = set()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.restore()

    def _call(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        import asyncio

        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.update({client_writer, server_writer})
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )
        self._writers.difference_update({client_writer, server_writer})

    async def _start(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a crashed server would."""
        self._call(self._stop())

    def restore(self) -> None:
        self._call(self._start())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """Say plainly when the browser tests did not run: a skip alone is easy to miss."""
    chromium = Path(os.environ.get("MARKETFLUX_CHROMIUM", "/usr/bin/chromium"))
    if chromium.exists():
        return
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "test_browser" in r.nodeid]
    if skipped:
        terminalreporter.write_line(
            f"WARNING: {len(skipped)} browser test(s) skipped: {chromium} is missing "
            "(install it with `apt-get install chromium`)",
            yellow=True,
            bold=True,
        )
