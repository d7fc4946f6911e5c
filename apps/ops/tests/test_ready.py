"""`/ready` on a live stack (Celery worker, beat and Daphne) whose Redis, the channel layer
and the broker, is a server of the test's own: ready while ticks flow; 503 naming `redis`
while that server is dead, and `ticks` alone while beat is stopped past the freshness
window; ready again once each is back (docs/contracts.md#other-http-paths)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import requests

from apps.ops.embedded import EmbeddedRedis
from apps.testing.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FRESH = 3.0  # s: MARKETFLUX_READY_TICK_AGE here


def readiness(url: str) -> tuple[int, dict]:
    answer = requests.get(f"{url}/ready", timeout=10)
    return answer.status_code, answer.json()


def until(url: str, code: int, what: str, failing: list[str] | None = None) -> dict:
    def check() -> dict | None:
        status, body = readiness(url)
        if status != code:
            return None
        if failing is not None and body.get("failing") != failing:
            return None
        return body

    return wait_for(check, timeout=60, interval=0.5, what=what)


def test_ready_names_what_is_down_and_recovers(market, processes, tmp_path: Path):
    rd = EmbeddedRedis(tmp_path / "redis", durable=False)
    try:
        redis_url = rd.start()
        env = {"REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url, "TICK_INTERVAL": "0.5",
               "MARKETFLUX_READY_TICK_AGE": str(FRESH)}  # fmt: skip
        processes.celery_worker(**env)
        processes.celery_beat(**env)
        url = processes.daphne(**env)

        ready = until(url, 200, "ready with the stack up")
        assert ready["status"] == "ready"
        assert set(ready["checks"]) == {"database", "redis", "broker", "workers", "ticks"}
        assert all(check["ok"] for check in ready["checks"].values())

        rd.proc.send_signal(signal.SIGKILL)
        rd.proc.wait(10)
        down = until(url, 503, "503 with Redis dead")
        assert down["status"] == "not ready"
        assert {"redis", "broker"} <= set(down["failing"])
        assert "database" not in down["failing"]
        assert down["checks"]["redis"]["error"]
        rd.start()  # on its port again
        until(url, 200, "ready again with Redis back")

        processes.stop("beat")
        stale = until(url, 503, "503 with beat stopped", failing=["ticks"])
        assert "tick run" in stale["checks"]["ticks"]["error"]
        processes.celery_beat(**env)
        until(url, 200, "ready again with beat back")
    finally:
        processes.stop_all()
        rd.stop()
