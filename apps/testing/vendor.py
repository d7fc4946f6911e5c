"""A second MarketFlux, started by a test to be another one's vendor: its own database and
Redis database, migrated and seeded, with a Celery worker, beat (the simulator ticking) and
Daphne serving its Polygon-compatible gateway (docs/polygon.md). The test's own MarketFlux
connects to it as to Polygon/Massive (docs/sources.md#polygonmassive)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import requests
from django.conf import settings

from apps.testing import BASE_DIR
from apps.testing.processes import Processes, database_url_of_test_db
from apps.testing.waiting import wait_for


@dataclass
class Vendor:
    """The second instance: `url` of its Daphne, and its database for checks."""

    url: str
    database_url: str
    redis_url: str
    processes: Processes

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


@contextlib.contextmanager
def vendor_instance(tmp_path: Path, *, tick_interval: str = "0.5") -> Iterator[Vendor]:
    """Start the second instance (about 10 s); stopped and its database dropped after."""
    ours = database_url_of_test_db()
    name = urlsplit(ours).path.lstrip("/") + "_vendor"
    admin = _with_path(ours, "/postgres")
    database_url = _with_path(ours, f"/{name}")
    db = int(urlsplit(settings.REDIS_URL).path.lstrip("/") or 0)
    redis_url = _with_path(settings.REDIS_URL, f"/{(db - 1) % 16}")  # apps/testing/xdist_redis.py
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "TICK_INTERVAL": tick_interval}
    processes = Processes(tmp_path / "vendor")
    processes.tmp_path.mkdir(parents=True, exist_ok=True)
    try:
        for command in (["migrate", "--noinput", "-v0"], ["seed_symbols"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=BASE_DIR, check=True,
                           env=processes.env(**env), capture_output=True, timeout=120)  # fmt: skip
        redis.Redis.from_url(redis_url).flushdb()
        processes.celery_worker(**env)
        processes.celery_beat(**env)
        url = processes.daphne(**env)

        def ticking() -> bool:
            stocks = requests.get(f"{url}/api/v1/stocks", timeout=10).json()["results"]
            return all(s["price"] is not None for s in stocks)

        wait_for(ticking, timeout=60, what="the vendor instance's first ticks")
        yield Vendor(url, database_url, redis_url, processes)
    finally:
        processes.stop_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
