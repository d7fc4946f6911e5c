"""How MarketFlux serves HTTP and WebSockets (docs/operations.md#serving): the process counts
of the two tiers, and the WSGI tier's command.

Plain HTTP (pages, REST, admin, static files through WhiteNoise) runs on granian's WSGI
server: several processes, each with threads and its own database pool. WebSockets stay on
Daphne, the ASGI tier, in several processes of their own. A reverse proxy (nginx) joins the
two on one origin. `make run` (apps/ops/launcher.py) and Docker Compose (docker-compose.yml)
both take their process counts from here, so the defaults are the same in both.

    python -m marketflux_site.serving web [--host 0.0.0.0] [--port 8000]

runs the WSGI tier in the foreground (it replaces itself with granian), as the compose
service and the launcher do. This module reads only the environment: no Django settings.
"""

from __future__ import annotations

import argparse
import os
import sys

from marketflux_site.env import env_int

WSGI_APP = "marketflux_site.wsgi:application"
ASGI_APP = "marketflux_site.asgi:application"
# Threads per WSGI process: requests wait on Redis and PostgreSQL about as long as they
# compute, so a few threads keep a process's core busy; more only queue on the GIL.
DEFAULT_WEB_THREADS = 4


def cores() -> int:
    """The CPUs this process may run on (a container's or taskset's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def web_processes() -> int:
    """MARKETFLUX_WEB_PROCESSES: WSGI processes; one per core by default."""
    return env_int("MARKETFLUX_WEB_PROCESSES", cores(), minimum=1)


def web_threads() -> int:
    """MARKETFLUX_WEB_THREADS: request threads in each WSGI process."""
    return env_int("MARKETFLUX_WEB_THREADS", DEFAULT_WEB_THREADS, minimum=1)


def asgi_processes() -> int:
    """MARKETFLUX_ASGI_PROCESSES: Daphne processes; one per core by default (each runs its
    sockets on one event loop, so fan-out to many sockets scales with them)."""
    return env_int("MARKETFLUX_ASGI_PROCESSES", cores(), minimum=1)


def web_command(host: str, port: int) -> list[str]:
    """granian's WSGI server on host:port, with the configured processes and threads.

    granian rather than gunicorn: in every run of bench/api.py on this project's 2-core
    machine, the same app with the same processes and threads served more /price requests
    on granian than on gunicorn's gthread workers (docs/benchmarks.md#api); granian parses
    HTTP and keeps connections alive in Rust. A worker that dies is started again by
    granian itself.
    """
    return [
        sys.executable, "-m", "granian", "--interface", "wsgi",
        "--host", host, "--port", str(port),
        "--workers", str(web_processes()), "--blocking-threads", str(web_threads()),
        "--respawn-failed-workers", "--no-access-log", "--log-level", "warning",
        WSGI_APP,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run the WSGI tier in place of this process (the pid stays, for supervisors)."""
    parser = argparse.ArgumentParser(prog="python -m marketflux_site.serving")
    parser.add_argument("tier", choices=["web"])
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a container's interface)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    command = web_command(args.host, args.port)
    os.execv(command[0], command)  # noqa: S606 (our own fixed argv)


if __name__ == "__main__":
    main()
