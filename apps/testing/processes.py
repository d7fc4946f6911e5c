"""Real processes a test starts (Celery worker, beat, Daphne) on the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from apps.ops.processes import free_port, stop_process
from apps.testing import BASE_DIR
from apps.testing.waiting import wait_for


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

    def celery_worker(
        self, name: str = "worker", *, node: str | None = None, **env: str
    ) -> subprocess.Popen:
        """A worker (solo pool); `node` sets its node name (-n), unique on a shared broker."""
        return self.start(
            name,
            ["-m", "celery", "-A", "marketflux_site", "worker", "--pool", "solo",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
             *(["-n", node] if node else [])],
            **env,
        )  # fmt: skip

    def celery_beat(self, name: str = "beat", **env: str) -> subprocess.Popen:
        return self.start(
            name,
            ["-m", "celery", "-A", "marketflux_site", "beat", "--loglevel", "INFO",
             "--schedule", str(self.tmp_path / "celerybeat-schedule")],
            **env,
        )  # fmt: skip

    def daphne(self, name: str = "web", options: Sequence[str] = (), **env: str) -> str:
        """A real Daphne on a free loopback port (and Daphne's `options`); returns its base
        URL once it answers."""
        import requests

        port = free_port()
        self.start(
            name,
            ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *options,
             "marketflux_site.asgi:application"],
            **env,
        )  # fmt: skip
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
        """SIGKILL, as a crash would: the process gets no chance to clean up."""
        proc = self.procs[name]
        proc.kill()
        proc.wait(10)

    def stop(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.pop(name)
        stop_process(proc, timeout=timeout)
        proc.log_file.close()  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
