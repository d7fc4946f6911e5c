"""`make run` end to end: embedded services, the whole stack, a clean stop, a second run."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import requests

from apps.ops.processes import free_port
from apps.testing import BASE_DIR
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.worker


def start_stack(var_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL",
                                                          "CELERY_BROKER_URL"}}  # fmt: skip
    env.update(MARKETFLUX_VAR_DIR=str(var_dir), PORT=str(port), TICK_INTERVAL="0.5",
               MARKETFLUX_PROMETHEUS_PORT=str(free_port()))  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "apps.ops.launcher", "run"],
        cwd=BASE_DIR,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )


def tick_counts(var_dir: Path) -> dict[str, int]:
    env_file = var_dir / "launcher.env"
    if not env_file.exists():
        return {}
    url = dict(line.split("=", 1) for line in env_file.read_text().split())["DATABASE_URL"]
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            rows = conn.execute("SELECT symbol_id, count(*) FROM market_tick GROUP BY 1").fetchall()
    except psycopg.Error:
        return {}
    return dict(rows)


def stop_and_check_nothing_is_left(stack: subprocess.Popen, sig: int) -> None:
    family = psutil.Process(stack.pid).children(recursive=True)
    # postgres, redis, daphne, worker, beat, sources (and their own children)
    assert len(family) >= 6
    assert any("run_sources" in p.cmdline() for p in family)
    stack.send_signal(sig)
    assert stack.wait(60) == 0
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []


def test_make_run_serves_ticks_and_stops_cleanly_then_continues(tmp_path):
    var_dir = tmp_path / "var"
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    log = tmp_path / "run1.log"
    stack = start_stack(var_dir, port, log)
    try:
        wait_until_serving(stack, site, log)
        assert requests.get(f"{site}/health", timeout=5).json() == {"status": "ok"}

        # A second `make run` on the same var/ refuses in one line, naming the first.
        second = run_launcher(var_dir, free_port())
        assert second.returncode == 1
        assert f"another MarketFlux is running on {var_dir.resolve()}" in second.stderr
        assert f"pid {stack.pid}, serving {site}" in second.stderr
        assert "Traceback" not in second.stdout + second.stderr
        assert requests.get(f"{site}/health", timeout=5).status_code == 200  # unharmed

        # The admin login the launcher printed works.
        password = wait_for(
            lambda: re.search(r"superuser 'admin' with password (\S+)", log.read_text()),
            timeout=10,
        ).group(1)
        session = requests.Session()
        login = session.get(f"{site}/admin/login/", timeout=5)
        assert login.status_code == 200
        answer = session.post(
            f"{site}/admin/login/?next=/admin/",
            data={"username": "admin", "password": password,
                  "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{site}/admin/login/"},
            timeout=5,
        )  # fmt: skip
        assert answer.status_code == 200
        assert "Site administration" in answer.text

        # Ticks for all five symbols accumulate at one per symbol per interval.
        wait_for(lambda: len(tick_counts(var_dir)) == 5, timeout=60, what="ticks of 5 symbols")
        before, started = tick_counts(var_dir), time.monotonic()
        time.sleep(4.0)
        after, elapsed = tick_counts(var_dir), time.monotonic() - started
        for symbol, count in after.items():
            assert (count - before[symbol]) == pytest.approx(elapsed / 0.5, abs=2)
        # A child that dies is restarted, and the market carries on.
        worker = next(p for p in psutil.Process(stack.pid).children() if "worker" in p.cmdline())
        worker.kill()
        wait_for(lambda: "worker exited with code" in log.read_text(), timeout=10)
        assert "restarting in" in log.read_text()
        restarted = wait_for(
            lambda: [p for p in psutil.Process(stack.pid).children() if "worker" in p.cmdline()],
            timeout=30,
            what="a new worker",
        )
        assert restarted[0].pid != worker.pid
        counted = sum(tick_counts(var_dir).values())
        wait_for(lambda: sum(tick_counts(var_dir).values()) > counted + 10, timeout=60,
                 what="ticks from the restarted worker")  # fmt: skip
        home = requests.get(f"{site}/", timeout=5).text
        # Five rows of the market table, each with a price (the row template has no symbol).
        prices = re.findall(r'data-symbol="[A-Z]+" data-field="price">([^<]*)<', home)
        assert len(prices) == 5
        assert all(re.fullmatch(r"[\d,]+\.\d+", p) for p in prices), prices
        assert "no tick yet" not in home

        # The banner can be read again, with the admin login, and the per-task lines of
        # Celery (hundreds a minute at INFO) do not bury it.
        again = (var_dir / "banner.txt").read_text()
        assert f"site    {site}/" in again
        assert f"login: admin / {password}" in again
        output = log.read_text()
        assert "Task market.tick" not in output
        assert "Sending due task" not in output
    finally:
        if stack.poll() is None:
            stop_and_check_nothing_is_left(stack, signal.SIGINT)
    stored = sum(after.values())

    # A second run keeps the data of the first and carries on.
    stack = start_stack(var_dir, port, tmp_path / "run2.log")
    try:
        wait_until_serving(stack, site, tmp_path / "run2.log")
        wait_for(lambda: sum(tick_counts(var_dir).values()) > stored + 10, timeout=60,
                 what="new ticks after the restart")  # fmt: skip
    finally:
        stop_and_check_nothing_is_left(stack, signal.SIGTERM)


def run_launcher(var_dir: Path, port: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(MARKETFLUX_VAR_DIR=str(var_dir), PORT=str(port))
    return subprocess.run(
        [sys.executable, "-m", "apps.ops.launcher", "run"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_busy_port_stops_make_run_before_anything_starts(tmp_path):
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        result = run_launcher(tmp_path / "var", port)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"marketflux: port {port} is in use by another program; "
        "set PORT to a free one (PORT=8001 make run)."
    )
    assert "is starting" not in result.stdout
    assert not (tmp_path / "var" / "postgres").exists()  # no database was started


def wait_until_serving(stack: subprocess.Popen, site: str, log: Path) -> None:
    """Until /health answers; a launcher that exits first fails at once, with its output."""
    wait_for(lambda: stack.poll() is not None or _get(f"{site}/health"), timeout=120,
             what="/health")  # fmt: skip
    assert stack.poll() is None, log.read_text()[-3000:]


def _get(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
