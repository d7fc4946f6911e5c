"""docker-compose.yml runs what `make run` runs: Docker does not run here, so this keeps the
two from drifting apart (a process added to the launcher needs its compose service), and
checks what review would: the proxy in front, routing as the launcher's nginx does."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from string import Template

import pytest
import yaml

from apps.ops import launcher
from apps.ops.launcher import NGINX_TEMPLATE, Serving, stack_children
from apps.testing import BASE_DIR
from marketflux_site import serving

# What identifies each service's program in a command line.
PROGRAMS = {
    "web": "granian",
    "asgi": "daphne",
    "proxy": "nginx",
    "worker": "worker",
    "beat": "beat",
    "sources": "run_sources",
    "prometheus": "prometheus",
}
PLAN = Serving(8000, "/usr/sbin/nginx", wsgi_port=8001, asgi_port=8002, asgi_processes=3,
               web_processes=2, web_threads=4, prometheus="/usr/bin/prometheus",
               prometheus_port=9090)  # fmt: skip


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]


def test_every_process_of_make_run_is_a_compose_service_running_the_same_program(services):
    children = stack_children(PLAN, asgi_fd=3)
    assert {child.service for child in children} == set(PROGRAMS)
    for child in children:
        program = PROGRAMS[child.service]
        assert any(program in arg for arg in child.args), child.name
        spec = services[child.service]
        if child.service in ("proxy", "prometheus"):  # the official images of both
            assert spec["image"].startswith(("nginx:", "prom/prometheus:"))
            continue
        command = " ".join(spec["command"])
        if child.service == "web":  # compose runs it through serving.py, which execs granian
            assert "marketflux_site.serving web" in command
            assert child.args == serving.web_command("127.0.0.1", PLAN.wsgi_port)
        else:
            assert program in command, child.name
        # The app's services share one image and environment (the YAML anchor).
        assert spec["image"] == "marketflux:latest"
        assert spec["environment"]["DATABASE_URL"].startswith("postgres://")


def test_the_asgi_tier_runs_as_many_processes_in_both():
    children = stack_children(PLAN, asgi_fd=3)
    daphnes = [c for c in children if c.service == "asgi"]
    assert len(daphnes) == PLAN.asgi_processes
    assert all(c.args[-3:-1] == ["--fd", "3"] and c.pass_fds == (3,) for c in daphnes)


def test_compose_sizes_both_tiers_from_the_same_settings(services):
    assert services["asgi"]["deploy"]["replicas"] == "${MARKETFLUX_ASGI_PROCESSES:-2}"
    web_env = services["web"]["environment"]
    assert web_env["MARKETFLUX_WEB_PROCESSES"] == "${MARKETFLUX_WEB_PROCESSES:-}"
    assert web_env["MARKETFLUX_WEB_THREADS"] == "${MARKETFLUX_WEB_THREADS:-}"
    assert web_env["NUM_PROXIES"] == "${NUM_PROXIES:-1}"  # throttles see the client's address


def test_only_the_proxy_is_published_and_it_waits_for_both_tiers(services):
    published = {name for name, spec in services.items() if spec.get("ports")}
    assert published == {"proxy", "prometheus", "grafana"}
    assert services["proxy"]["ports"] == ["8000:80"]
    # Monitoring is for this machine only (docs/operations.md#metrics).
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    assert set(services["proxy"]["depends_on"]) == {"web", "asgi"}


def _check_url(service: dict) -> str:
    """The URL a service's health check asks for."""
    (url,) = re.findall(r"http://[^'\" ]+", " ".join(service["healthcheck"]["test"]))
    return url


def test_the_proxy_opens_once_web_is_ready_and_asgi_is_alive(services):
    """Health checks (docs/operations.md#health-checks): web's is readiness (/ready), so the
    proxy, which waits for it to be healthy, opens the site when it serves live data;
    asgi's is liveness (/health); the proxy's own goes through nginx to /health."""
    assert _check_url(services["web"]) == "http://127.0.0.1:8000/ready"
    assert _check_url(services["asgi"]) == "http://127.0.0.1:8000/health"
    assert _check_url(services["proxy"]) == "http://127.0.0.1/health"
    for tier in ("web", "asgi"):
        assert services["proxy"]["depends_on"][tier] == {"condition": "service_healthy"}
        check = services[tier]["healthcheck"]
        assert check["start_period"], tier  # the first tick comes after the worker starts
        assert check["retries"] >= 3, tier
    # The worker and beat, whose first tick makes web ready, do not wait for web.
    for name in ("worker", "beat"):
        assert "web" not in services[name]["depends_on"], name


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_app_health_check_command_fails_on_a_503(services, status, healthy):
    """The web and asgi check commands themselves, run against a server answering
    `status` on their path: a 503 from /ready must fail the check, not pass it."""
    handler = type("Answer", (_Answer,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for tier in ("web", "asgi"):
            kind, program, *args = services[tier]["healthcheck"]["test"]
            assert (kind, program) == ("CMD", "python")
            port = server.server_address[1]
            args = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in args]
            done = subprocess.run([sys.executable, *args], capture_output=True, timeout=30)
            assert (done.returncode == 0) is healthy, (tier, done.stderr[-300:])
    finally:
        server.shutdown()
        server.server_close()


def test_compose_mounts_the_template_the_launcher_renders_with_every_name_filled(services):
    proxy = services["proxy"]
    (mount,) = proxy["volumes"]
    source, target, _ = mount.split(":")
    assert (BASE_DIR / source).resolve() == NGINX_TEMPLATE
    assert target == "/etc/nginx/templates/default.conf.template"  # the image renders it
    names = set(Template.pattern.findall(NGINX_TEMPLATE.read_text()))
    placeholders = {braced for _, _, braced, _ in names if braced.startswith("MF_")}
    assert placeholders == {k for k in proxy["environment"] if k.startswith("MF_")}
    assert "server web:8000;" in proxy["environment"]["MF_WSGI_SERVERS"]
    assert "server asgi:8000 resolve;" in proxy["environment"]["MF_ASGI_SERVERS"]


def test_the_launchers_nginx_config_routes_to_its_loopback_tiers(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "NGINX_DIR", tmp_path)
    conf = launcher.write_nginx_config(PLAN)
    routes = (tmp_path / "marketflux.conf").read_text()
    assert "${" not in routes.replace("${MF_*}", "")  # every placeholder filled in
    assert "listen 127.0.0.1:8000;" in routes
    assert "server 127.0.0.1:8001;" in routes  # WSGI
    assert "server 127.0.0.1:8002;" in routes  # ASGI
    main = conf.read_text()
    assert "daemon off;" in main
    assert f"include {tmp_path / 'marketflux.conf'};" in main
    assert all(f"{kind}_temp_path {tmp_path}" in main for kind in ("proxy", "client_body"))


def test_nginx_accepts_the_config_the_launcher_writes(tmp_path, monkeypatch):
    """Debian's nginx (what `make run` starts; .ci/run installs it) checks the file itself."""
    nginx = launcher.find_nginx()
    assert nginx, "nginx is not installed: apt-get install nginx (.ci/run does)"
    monkeypatch.setattr(launcher, "NGINX_DIR", tmp_path)
    conf = launcher.write_nginx_config(PLAN)
    check = subprocess.run(
        [nginx, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "syntax is ok" in check.stderr


def test_promtool_accepts_the_prometheus_config_the_launcher_writes(tmp_path, monkeypatch):
    """`make run`'s Prometheus: compose's configuration and rules, scraping the WSGI tier on
    loopback; Debian's promtool (.ci/run installs it) checks the file and the rules it loads."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: apt-get install prometheus (.ci/run does)"
    config = yaml.safe_load(launcher.write_prometheus_config(PLAN, tmp_path).read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in config["scrape_configs"]}  # fmt: skip
    assert targets == {"marketflux": ["127.0.0.1:8001"], "prometheus": ["127.0.0.1:9090"]}
    check = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "rules found" in check.stdout  # the rules of deploy/prometheus/rules/ loaded


def test_every_app_container_shares_the_metrics_directory_prometheus_scrapes_web(services):
    """Multiprocess metrics (docs/operations.md#metrics): every process of the app's image
    writes one volume, emptied by metrics-init first; Prometheus and Grafana come from the
    repository's files."""
    app = [name for name, spec in services.items() if spec.get("image") == "marketflux:latest"]
    assert {"web", "asgi", "worker", "beat", "sources", "migrate", "metrics-init"} <= set(app)
    for name in app:
        mounts = {m.split(":")[0]: m.split(":")[1] for m in services[name]["volumes"]}
        assert mounts["metrics"] == "/var/lib/marketflux-metrics", name
        if name != "metrics-init":
            env = services[name]["environment"]
            assert env["PROMETHEUS_MULTIPROC_DIR"] == "/var/lib/marketflux-metrics", name
            assert "metrics-init" in services[name]["depends_on"], name
    assert "/var/lib/marketflux-metrics" in " ".join(services["metrics-init"]["command"])

    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    config = yaml.safe_load((BASE_DIR / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] if job["job_name"] == "marketflux"
               for c in job["static_configs"] for t in c["targets"]]  # fmt: skip
    assert targets == ["web:8000"]  # one target: the web service sums the host
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
