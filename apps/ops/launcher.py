"""The local launcher behind `make run` and `make test`.

    python -m apps.ops.launcher run             the whole stack until Ctrl-C
    python -m apps.ops.launcher test [ARGS]     pytest ARGS against real services
    python -m apps.ops.launcher bench [NAMES]   the benchmarks under bench/ (or those named)
    python -m apps.ops.launcher manage ARGS     manage.py ARGS against the running stack

With DATABASE_URL / REDIS_URL unset it starts embedded PostgreSQL and Redis (apps.ops.embedded)
and stops them again on every way out: normal exit, Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from apps.ops.embedded import EmbeddedPostgres, EmbeddedRedis
from apps.ops.processes import die_with_parent, free_port, stop_process
from marketflux_site import serving

BASE_DIR = Path(__file__).resolve().parents[2]
# Where embedded services keep their data (a test points a second stack elsewhere).
VAR_DIR = Path(os.environ.get("MARKETFLUX_VAR_DIR") or BASE_DIR / "var").resolve()
RUN_ENV_FILE = VAR_DIR / "launcher.env"  # URLs of the running stack, for `manage`
RUN_LOCK_FILE = VAR_DIR / "launcher.lock"  # held by the `make run` that owns VAR_DIR
BANNER_FILE = VAR_DIR / "banner.txt"  # the start-up banner, to read again
ADMIN_PASSWORD_FILE = VAR_DIR / "admin-password.txt"  # written by ensure_dev_admin
PYTHON = sys.executable
ASGI_APP = serving.ASGI_APP
NGINX_DIR = VAR_DIR / "nginx"  # the proxy's generated configuration and pid file
NGINX_TEMPLATE = BASE_DIR / "deploy" / "nginx" / "marketflux.conf.template"
PROMETHEUS_DIR = VAR_DIR / "prometheus"  # its generated configuration and its data
PROMETHEUS_CONFIG = BASE_DIR / "deploy" / "prometheus" / "prometheus.yml"
CELERY = [PYTHON, "-m", "celery", "-A", "marketflux_site"]
BEAT_FILE = str(VAR_DIR / "celerybeat-schedule")

log = logging.getLogger("launcher")


class _Stop(Exception):
    """Raised by the signal handler so every `finally` runs on SIGTERM as on Ctrl-C."""


def _raise_stop(signum, frame) -> None:
    raise _Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def services(data_root: Path, *, durable: bool) -> Iterator[dict[str, str]]:
    """Make sure DATABASE_URL and REDIS_URL point at running servers, for the block."""
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    env: dict[str, str] = {}
    try:
        if not os.environ.get("DATABASE_URL"):
            database = "marketflux" if durable else "marketflux_test"
            pg = EmbeddedPostgres(data_root / "postgres", durable=durable, database=database)
            log.info("starting embedded PostgreSQL in %s", pg.data_dir)
            started.append(pg)
            env["DATABASE_URL"] = pg.start()
        if not os.environ.get("REDIS_URL"):
            rd = EmbeddedRedis(data_root / "redis", durable=durable)
            log.info("starting embedded Redis in %s", rd.data_dir)
            started.append(rd)
            env["REDIS_URL"] = rd.start()
        os.environ.update(env)
        yield env
    finally:
        _ignore_stop_signals()
        for server in reversed(started):
            log.info("stopping embedded %s", type(server).__name__.removeprefix("Embedded"))
            server.stop()


def _manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=BASE_DIR, check=True)


@dataclass
class Child:
    """A supervised process of the stack; `service` names its docker-compose.yml service
    (several children may run one service, as the ASGI processes do)."""

    name: str
    args: list[str]
    service: str = ""
    pass_fds: tuple[int, ...] = ()  # open files it inherits (the ASGI tier's socket)
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args,
            cwd=BASE_DIR,
            pass_fds=self.pass_fds,
            preexec_fn=die_with_parent,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops children in order
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("started %s (pid %s)", self.name, self.proc.pid)

    def __post_init__(self) -> None:
        self.service = self.service or self.name

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        stop_process(
            self.proc,
            timeout=timeout,
            on_kill=lambda: log.warning(
                "%s did not stop in %.0f s; killing it", self.name, timeout
            ),
        )


def supervise(children: list[Child], *, poll: float = 0.5) -> None:
    """Keep every child running, restarting a dead one with exponential backoff."""
    for child in children:
        child.start()
    while True:
        now = time.monotonic()
        for child in children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                continue
            code = child.proc.poll() if child.proc else None
            if code is None:
                continue
            # A child that ran a while counts as healthy again: back off from scratch.
            child.failures = 1 if now - child.started_at > 60 else child.failures + 1
            delay = min(30.0, 2.0 ** (child.failures - 1))
            child.restart_at = now + delay
            log.warning(
                "%s exited with code %s; restarting in %.0f s (failure %d in a row)",
                child.name,
                code,
                delay,
                child.failures,
            )
        time.sleep(poll)


class AlreadyRunning(Exception):
    """Another `make run` holds this VAR_DIR (its data, its embedded servers)."""


@contextlib.contextmanager
def own_var_dir(url: str) -> Iterator[None]:
    """Hold VAR_DIR for this run, or raise AlreadyRunning naming the run that holds it.

    An flock, not a pid file: the kernel releases it when its holder dies, however it
    dies, so a crashed run never leaves a stale claim behind.
    """
    VAR_DIR.mkdir(exist_ok=True)
    with RUN_LOCK_FILE.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise AlreadyRunning(lock.read().strip() or "another process") from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}, serving {url}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether Daphne could listen on host:port (a TIME_WAIT left by a stopped run is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Serving:
    """How `make run` serves the site on 127.0.0.1:`port` (docs/operations.md#serving).

    With nginx: one origin. nginx listens on `port` and routes WebSocket handshakes to the
    ASGI tier (Daphne on `asgi_port`) and everything else to the WSGI tier (granian on
    `wsgi_port`), both on loopback ports of their own. Without nginx: granian serves `port`
    itself and Daphne a second port, `asgi_port`, which the pages open their WebSockets on
    (MARKETFLUX_WS_PORT); a session cookie is per host, not per port, so logins carry over.
    """

    port: int
    nginx: str | None
    wsgi_port: int
    asgi_port: int
    asgi_processes: int
    web_processes: int
    web_threads: int
    prometheus: str | None = None  # Prometheus, scraping the stack (docs/operations.md#metrics)
    prometheus_port: int = 0

    @property
    def ws_port(self) -> int:
        """The port browsers and programs open WebSockets on."""
        return self.port if self.nginx else self.asgi_port

    def describe(self) -> str:
        tiers = (
            f"HTTP on granian ({self.web_processes} processes x {self.web_threads} threads), "
            f"WebSockets on Daphne ({self.asgi_processes} processes"
        )
        if self.nginx:
            return f"one origin through nginx: {tiers}, port {self.asgi_port})"
        return (
            f"WITHOUT a proxy (no nginx: apt-get install nginx, or set MARKETFLUX_NGINX): "
            f"{tiers}) on a second port, {self.asgi_port}, which the pages use"
        )


def _find_program(setting: str, name: str, debian: str) -> str | None:
    """The `setting` if set (a path, or empty for none), else `name` on PATH or Debian's."""
    wanted = os.environ.get(setting)
    if wanted is not None:
        return wanted if wanted and os.access(wanted, os.X_OK) else None
    found = shutil.which(name) or debian
    return found if os.access(found, os.X_OK) else None


def find_nginx() -> str | None:
    """MARKETFLUX_NGINX, or the nginx on PATH, or Debian's."""
    return _find_program("MARKETFLUX_NGINX", "nginx", "/usr/sbin/nginx")


def find_prometheus() -> str | None:
    """MARKETFLUX_PROMETHEUS, or the prometheus on PATH, or Debian's."""
    return _find_program("MARKETFLUX_PROMETHEUS", "prometheus", "/usr/bin/prometheus")


def plan_serving(port: int, nginx: str | None, prometheus: str | None = None) -> Serving:
    """The ports and process counts of a run; the loopback ports behind nginx are free ones.
    Prometheus takes MARKETFLUX_PROMETHEUS_PORT (9090), or a free port when that is taken
    (Debian's own prometheus service listens on 9090)."""
    counts = {
        "asgi_processes": serving.asgi_processes(),
        "web_processes": serving.web_processes(),
        "web_threads": serving.web_threads(),
        "prometheus": prometheus,
        "prometheus_port": 0,
    }
    if prometheus:
        wanted = int(os.environ.get("MARKETFLUX_PROMETHEUS_PORT") or 9090)
        counts["prometheus_port"] = wanted if port_is_free(wanted) else free_port()
    if nginx:
        return Serving(port, nginx, wsgi_port=free_port(), asgi_port=free_port(), **counts)
    ws_port = int(os.environ.get("MARKETFLUX_WS_PORT") or port + 1)
    return Serving(port, None, wsgi_port=port, asgi_port=ws_port, **counts)


def listen_socket(port: int, host: str = "127.0.0.1") -> socket.socket:
    """The ASGI tier's listening socket, opened here and inherited by every Daphne process
    (`daphne --fd`): the kernel hands each new connection to one of them, and a Daphne that
    is restarted finds connections waiting instead of refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def write_nginx_config(plan: Serving, directory: Path | None = None) -> Path:
    """nginx.conf for `make run` in var/nginx/ (or `directory`): the shared template
    (deploy/nginx/, also Docker Compose's) with loopback upstreams, in the foreground,
    logging to stderr, with every path it writes under that directory (it runs as the user
    of `make run`)."""
    from string import Template

    directory = directory or NGINX_DIR
    tmp = directory / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    routes = Template(NGINX_TEMPLATE.read_text()).safe_substitute(
        MF_RESOLVER="",
        MF_LISTEN=f"127.0.0.1:{plan.port}",
        MF_WSGI_SERVERS=f"server 127.0.0.1:{plan.wsgi_port};",
        MF_ASGI_SERVERS=f"server 127.0.0.1:{plan.asgi_port};",
    )
    (directory / "marketflux.conf").write_text(routes)
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        "# Written by apps/ops/launcher.py at every `make run`; edit the template instead:\n"
        f"# {NGINX_TEMPLATE.relative_to(BASE_DIR)}\n"
        "daemon off;\nworker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\nerror_log stderr warn;\n"
        "events {\n    worker_connections 4096;\n}\n"
        "http {\n    access_log off;\n"
        f"{temp_paths}"
        f"    include {directory / 'marketflux.conf'};\n}}\n"
    )
    return conf


def write_prometheus_config(plan: Serving, directory: Path | None = None) -> Path:
    """prometheus.yml for `make run` in var/prometheus/ (or `directory`): Docker Compose's
    (deploy/prometheus/), its rules included, scraping this stack's WSGI tier on loopback."""
    import yaml

    directory = directory or PROMETHEUS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    targets = {
        "marketflux": f"127.0.0.1:{plan.wsgi_port}",
        "prometheus": f"127.0.0.1:{plan.prometheus_port}",
    }
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [targets[job["job_name"]]]
            if "labels" in static:  # compose names its host; this one is the local machine
                static["labels"]["host"] = "local"
    path = directory / "prometheus.yml"
    path.write_text(
        "# Written by apps/ops/launcher.py at every `make run`; edit the original instead:\n"
        f"# {PROMETHEUS_CONFIG.relative_to(BASE_DIR)}\n" + yaml.safe_dump(config, sort_keys=False)
    )
    return path


def banner(port: str, embedded: str, plan: Serving | None = None) -> str:
    site = f"http://127.0.0.1:{port}"
    ws_port = plan.ws_port if plan else port
    password = ADMIN_PASSWORD_FILE.read_text().strip() if ADMIN_PASSWORD_FILE.exists() else None
    login = (
        f"admin / {password}  (from {ADMIN_PASSWORD_FILE})"
        if password
        else "your superuser (`make superuser` makes one)"
    )
    return (
        f"\nMarketFlux is running:\n"
        f"  site    {site}/\n  admin   {site}/admin/   login: {login}\n"
        f"  api     {site}/api/v1/  (docs {site}/docs)\n"
        f"  feed    ws://127.0.0.1:{ws_port}/ws/market\n  health  {site}/health\n"
        + (f"  serving {plan.describe()}\n" if plan else "")
        + (f"  metrics {site}/metrics; {_prometheus_line(plan)}\n" if plan else "")
        + f"  embedded services: {embedded}; data in {VAR_DIR}\n"
        f"  Press Enter to show this again (it is also in {BANNER_FILE}). Ctrl-C stops "
        f"everything.\n"
    )


def _prometheus_line(plan: Serving) -> str:
    if plan.prometheus:
        return f"Prometheus http://127.0.0.1:{plan.prometheus_port}/ (deploy/prometheus/)"
    return "no Prometheus (apt-get install prometheus, or set MARKETFLUX_PROMETHEUS)"


def _show_banner_on_enter(text: str) -> None:
    """Print the banner again whenever the user presses Enter (logs scroll it away)."""
    if not sys.stdin or not sys.stdin.isatty():
        return

    def listen() -> None:
        for _ in sys.stdin:
            print(text, flush=True)

    threading.Thread(target=listen, name="banner", daemon=True).start()


def run() -> int:
    """`make run`: services, migrations, seed, then both HTTP tiers (behind nginx when it is
    installed), a Celery worker, beat and the live sources."""
    port = int(os.environ.get("PORT", "8000"))
    site = f"http://127.0.0.1:{port}"
    try:
        with own_var_dir(site):
            plan = plan_serving(port, find_nginx(), find_prometheus())
            for needed in sorted({port, plan.ws_port}):
                if not port_is_free(needed):
                    setting, example = (
                        ("PORT", 8001) if needed == port else ("MARKETFLUX_WS_PORT", 8011)
                    )
                    print(
                        f"marketflux: port {needed} is in use by another program; "
                        f"set {setting} to a free one ({setting}={example} make run).",
                        file=sys.stderr,
                    )
                    return 1
            return _run_stack(plan)
    except AlreadyRunning as running:
        print(
            f"marketflux: another MarketFlux is running on {VAR_DIR} ({running}); "
            f"stop it first, or give this one its own MARKETFLUX_VAR_DIR.",
            file=sys.stderr,
        )
        return 1


def stack_children(plan: Serving, asgi_fd: int) -> list[Child]:
    """The processes of `make run` (docker-compose.yml has a service for each `service`)."""
    daphne = [PYTHON, "-m", "daphne", "--fd", str(asgi_fd), ASGI_APP]
    children = [Child("web", serving.web_command("127.0.0.1", plan.wsgi_port))]
    children += [
        Child(f"asgi-{n}", daphne, service="asgi", pass_fds=(asgi_fd,))
        for n in range(1, plan.asgi_processes + 1)
    ]
    if plan.nginx:
        conf = NGINX_DIR / "nginx.conf"
        children.append(
            Child("proxy", [plan.nginx, "-e", "stderr", "-p", str(NGINX_DIR), "-c", str(conf)])
        )
    if plan.prometheus:
        children.append(
            Child("prometheus", [
                plan.prometheus, f"--config.file={PROMETHEUS_DIR / 'prometheus.yml'}",
                f"--storage.tsdb.path={PROMETHEUS_DIR / 'data'}",
                f"--web.listen-address=127.0.0.1:{plan.prometheus_port}",
                "--storage.tsdb.retention.time=15d", "--log.level=warn",
            ])
        )  # fmt: skip
    return [
        *children,
        Child("worker", [*CELERY, "worker", "--loglevel", "INFO", "--concurrency", "2"]),
        Child("beat", [*CELERY, "beat", "--loglevel", "INFO", "--schedule", BEAT_FILE]),
        # The live vendor feeds (docs/sources.md#live-feeds); idle while no source is enabled.
        Child("sources", [PYTHON, "manage.py", "run_sources"]),
    ]


def _metrics_env() -> Path:
    """Every child keeps its Prometheus values under one directory, emptied first so that
    a previous run's are not summed into this one's (docs/operations.md#metrics)."""
    from apps.ops import metrics

    directory = Path(os.environ.get(metrics.MULTIPROC_ENV) or VAR_DIR / "metrics")
    metrics.reset_dir(directory)
    os.environ[metrics.MULTIPROC_ENV] = str(directory)
    return directory


def _serving_env(plan: Serving) -> None:
    """What the children read about the serving: behind nginx, the API throttle trusts its
    X-Forwarded-For (NUM_PROXIES, unless set) and pages open WebSockets on their own
    origin; without it, on the second port."""
    if plan.nginx:
        os.environ.setdefault("NUM_PROXIES", "1")
        os.environ["MARKETFLUX_WS_PORT"] = ""
    else:
        os.environ["MARKETFLUX_WS_PORT"] = str(plan.asgi_port)


def _run_stack(plan: Serving) -> int:
    asgi_socket = listen_socket(plan.asgi_port)
    children = stack_children(plan, asgi_socket.fileno())
    try:
        with services(VAR_DIR, durable=True) as started:
            try:
                RUN_ENV_FILE.write_text(
                    "".join(f"{k}={os.environ[k]}\n" for k in ("DATABASE_URL", "REDIS_URL"))
                )
                _manage("migrate", "--noinput")
                _manage("seed_symbols")
                _manage("ensure_dev_admin")
                if plan.nginx:
                    write_nginx_config(plan)
                if plan.prometheus:
                    write_prometheus_config(plan)
                _serving_env(plan)
                _metrics_env()
                embedded = ", ".join(sorted(started)) or "none (using the URLs you set)"
                text = banner(str(plan.port), embedded, plan)
                BANNER_FILE.write_text(text.lstrip())
                print(text, flush=True)
                _show_banner_on_enter(text)
                supervise(children)
            finally:
                # The app stops before the databases it talks to; a second Ctrl-C must not
                # cut this short and leave processes behind.
                _ignore_stop_signals()
                for child in reversed(children):
                    child.stop()
                RUN_ENV_FILE.unlink(missing_ok=True)
    except (_Stop, KeyboardInterrupt) as why:
        log.info("stopped (%s)", why or "SIGINT")
    finally:
        asgi_socket.close()
    return 0


def _ignore_stop_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def test(pytest_args: list[str]) -> int:
    """`make test`: pytest against real PostgreSQL and Redis (embedded unless URLs are set)."""
    VAR_DIR.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="test-", dir=VAR_DIR))
    if os.environ.get("REDIS_URL"):
        # A Redis you gave us may hold your data: the tests flush their own database only.
        os.environ["REDIS_URL"] = _with_redis_db(os.environ["REDIS_URL"], TEST_REDIS_DB)
    try:
        with services(scratch, durable=False):
            command = [PYTHON, "-m", "pytest", *_test_workers(pytest_args), *pytest_args]
            proc = subprocess.Popen(command, cwd=BASE_DIR)
            try:
                return proc.wait()
            except (_Stop, KeyboardInterrupt):
                stop_process(proc, timeout=30)
                return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


LONG_BENCHES = frozenset({"soak", "chaos"})  # bench/soak.py, bench/chaos.py


def bench(names: list[str]) -> int:
    """`make bench`: every benchmark under bench/ (or those named) against real services.
    The soak (an hour) and the chaos run (10 minutes, killing servers) run only when named."""
    scripts = sorted(
        p for p in (BASE_DIR / "bench").glob("*.py") if p.stem not in {"common", "__init__"}
    )
    if names:
        scripts = [p for p in scripts if p.stem in names]
    else:
        scripts = [p for p in scripts if p.stem not in LONG_BENCHES]
    VAR_DIR.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=VAR_DIR))
    failed = 0
    try:
        # Durable, as a deployment runs (fsync, synchronous commit): the figures are the
        # ones a user would get, not those of the test suite's throwaway settings.
        with services(scratch, durable=True):
            for script in scripts:
                log.info("benchmark %s", script.name)
                failed += subprocess.call([PYTHON, str(script)], cwd=BASE_DIR) != 0
    except (_Stop, KeyboardInterrupt):
        return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


TEST_REDIS_DB = 15


def _test_workers(pytest_args: list[str]) -> list[str]:
    """pytest-xdist's options, unless the arguments choose: one worker more than the cores,
    since most long tests wait on the processes they start (the suite: 20 min in one process
    on 2 cores, 8 min in three); a file's tests stay on one worker, sharing its module
    fixtures. At most 8: each worker takes two Redis databases (apps/testing/xdist_redis.py)."""
    chosen = ("-n", "--numprocesses", "--dist")
    if any(a.startswith(chosen) or a == "no:xdist" for a in pytest_args):
        return []
    workers = os.environ.get("MARKETFLUX_TEST_WORKERS") or str(min(8, (os.cpu_count() or 1) + 1))
    return ["-n", workers, "--dist", "loadfile"]


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def manage(args: list[str]) -> int:
    """manage.py against the stack `make run` started (its embedded URLs), or the env's."""
    if RUN_ENV_FILE.exists():
        for line in RUN_ENV_FILE.read_text().splitlines():
            key, _, value = line.partition("=")
            os.environ.setdefault(key, value)
    return subprocess.call([PYTHON, "manage.py", *args], cwd=BASE_DIR)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s launcher: %(message)s")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then
    # never turns Ctrl-C into KeyboardInterrupt.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    if not argv or argv[0] not in {"run", "test", "bench", "manage"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run()
    if command == "test":
        return test(rest)
    if command == "bench":
        return bench(rest)
    return manage(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
