"""Shared plumbing for benchmarks: a throwaway database, timing, the table and the JSON."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from apps.ops import processes

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BASE_DIR = Path(__file__).resolve().parents[1]


def setup_django_with_bench_database() -> str:
    """Point Django at `<database>_bench` (created fresh) so a benchmark never touches data;
    `BENCH_DATABASE` names another (two benchmarks run at once on one server each need
    their own)."""
    import psycopg

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketflux")
    parts = urlsplit(url)
    name = os.environ.get("BENCH_DATABASE") or parts.path.lstrip("/") + "_bench"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketflux_site.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return name


def drop_bench_database(name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    parts = urlsplit(os.environ["DATABASE_URL"])
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def print_table(title: str, headers: list[str], rows: list[list[object]]) -> None:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    return str(value)


def write_results(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path


def machine_info() -> dict:
    """Python, CPUs (and their model), memory and load: what a reader needs to compare runs."""
    info: dict[str, object] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ImportError):
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    with contextlib.suppress(OSError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    info["platform"] = platform.platform()
    return info


# --- A live stack (Daphne, Celery worker, beat) on the bench database -------------------------


# Poll `predicate` until it returns something truthy; a RuntimeError after `timeout` s.
wait_until = functools.partial(processes.wait_until, interval=0.2)


def _child_setup() -> None:
    """Runs in a child before exec: dies with the bench, may hold many sockets."""
    processes.die_with_parent()
    raise_open_files_limit()


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Lift the soft limit on open files towards the hard one (1,000 sockets need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Stack:
    """Daphne, a Celery worker and beat started by a benchmark, always stopped (with `with`).

    Each runs in its own session (process group) with its output in `log_dir`; `stop_all`
    sends SIGTERM to each group, then SIGKILL to what is left. The same idea as
    `apps.testing.processes.Processes`, for scripts that are not tests.
    """

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, object] = {}
        self._sockets: list = []  # listening sockets shared by several servers

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        args: list[str],
        *,
        python: bool = True,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> subprocess.Popen:
        """`python args` (or `args` as they are, with `python=False`) with its output in
        `log_dir/<name>.log`."""
        log = open(self.log_dir / f"{name}.log", "wb")  # closed in stop_all
        self._logs[name] = log
        proc = subprocess.Popen(
            [sys.executable, *args] if python else args,
            cwd=cwd or BASE_DIR,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup,
            pass_fds=pass_fds,
        )
        self.procs[name] = proc
        return proc

    def worker(self) -> subprocess.Popen:
        return self.start(
            "worker",
            ["-m", "celery", "-A", "marketflux_site", "worker", "--pool", "solo",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
        )  # fmt: skip

    def beat(self) -> subprocess.Popen:
        return self.start(
            "beat",
            ["-m", "celery", "-A", "marketflux_site", "beat", "--loglevel", "WARNING",
             "--schedule", str(self.log_dir / "celerybeat-schedule")],
        )  # fmt: skip

    def daphne(self, timeout: float = 60.0) -> tuple[str, subprocess.Popen]:
        """One Daphne process on a free loopback port; its base URL once /health answers."""
        url, procs = self.daphnes(1, timeout)
        return url, procs[0]

    def daphnes(self, count: int, timeout: float = 60.0) -> tuple[str, list[subprocess.Popen]]:
        """`count` Daphne processes on one free loopback port, as `make run` starts the ASGI
        tier: one listening socket opened here and inherited by each (`daphne --fd`), the
        kernel handing each new connection to one of them."""
        from apps.ops.launcher import listen_socket

        port = processes.free_port()
        url = f"http://127.0.0.1:{port}"
        app = "marketflux_site.asgi:application"
        if count == 1:
            procs = [
                self.start("daphne", ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app])
            ]
        else:
            self._sockets.append(sock := listen_socket(port))
            fd = sock.fileno()
            procs = [
                self.start(f"daphne-{n}", ["-m", "daphne", "--fd", str(fd), app], pass_fds=(fd,))
                for n in range(1, count + 1)
            ]
        wait_until(lambda: self.check_alive() or http_ok(f"{url}/health"),
                   timeout=timeout, what=f"Daphne on {url}")  # fmt: skip
        return url, procs

    def check_alive(self) -> None:
        """RuntimeError naming the first process that has exited, with the end of its log."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_errors(self, name: str) -> dict[str, int]:
        """The exceptions a process logged (the last line of each traceback, only the
        outermost of a chain), counted."""
        path = self.log_dir / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        counts: dict[str, int] = {}
        in_traceback, pending = False, None
        for line in lines:
            if line.startswith("Traceback"):
                in_traceback, pending = True, None
            elif in_traceback and line and not line[0].isspace():
                pending, in_traceback = line[:160], False
            elif pending is not None and line.strip():
                chained = "direct cause" in line or "During handling" in line
                if not chained:
                    counts[pending] = counts.get(pending, 0) + 1
                pending = None
        if pending is not None:
            counts[pending] = counts.get(pending, 0) + 1
        return counts

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """Stop one process (and its group), e.g. a server measured in its turn."""
        processes.stop_process(self.procs.pop(name), timeout=timeout, group=True)
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    def stop_all(self, timeout: float = 15.0) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name, timeout)
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()


def http_ok(url: str, timeout: float = 1.0) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (loopback)
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError):
        return False


def http_json(url: str, timeout: float = 5.0) -> object:
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (loopback)
        return json.loads(answer.read())


def stack_env(**extra: str) -> dict[str, str]:
    """The environment for stack processes: this process's (DATABASE_URL is the bench
    database once `setup_django_with_bench_database` ran), quiet logs, and `extra`."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "marketflux_site.settings")
    env["LOG_LEVEL"] = "WARNING"
    env["PYTHONUNBUFFERED"] = "1"
    # Thousands of benchmark clients come from one address, loopback: no per-address cap.
    env.setdefault("MARKETFLUX_WS_MAX_PER_IP", "0")
    env.update(extra)
    return env


def clear_app_redis_keys() -> int:
    """Delete MarketFlux's keys (`mf:*`) and Celery's queue from the bench's Redis database,
    so a run starts with no hot state, engine state or stale locks of an earlier one."""
    from apps.market import keys
    from apps.ops.redis_client import redis_client

    client = redis_client()
    doomed = list(client.scan_iter(match=f"{keys.PREFIX}:*", count=1000))
    doomed += [k for k in (b"celery",) if client.exists(k)]  # stale tick tasks
    for i in range(0, len(doomed), 500):
        client.delete(*doomed[i : i + 500])
    return len(doomed)


def process_rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


class CpuMeter:
    """CPU time of some processes (and the machine) between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]):
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.result: dict[str, float] = {}

    def _times(self) -> dict[str, float]:
        import psutil

        out = {}
        for name, proc in self.procs.items():
            try:
                t = proc.cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                out[name] = float("nan")
        machine = psutil.cpu_times()
        out["_busy"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return out

    def start(self) -> CpuMeter:
        self._t0, self._w0 = self._times(), time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        """Percent of one core per process; `machine` in percent of all cores."""
        t1, wall = self._times(), time.monotonic() - self._w0
        self.result = {name: 100.0 * (t1[name] - self._t0[name]) / wall for name in self.procs}
        self.result["machine"] = (
            100.0 * (t1["_busy"] - self._t0["_busy"]) / wall / (os.cpu_count() or 1)
        )
        return self.result
