"""docker-compose.yml runs what `make run` runs: Docker does not run here, so this keeps the
two from drifting apart (a process added to the launcher needs its compose service)."""

from __future__ import annotations

import yaml

from apps.ops.launcher import stack_children
from apps.testing import BASE_DIR

# What identifies each process's program in a command line.
PROGRAMS = {"web": "daphne", "worker": "worker", "beat": "beat", "sources": "run_sources"}


def test_every_process_of_make_run_is_a_compose_service_running_the_same_program():
    services = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]
    children = stack_children("8000")
    assert {child.name for child in children} == set(PROGRAMS)
    for child in children:
        program = PROGRAMS[child.name]
        assert program in child.args
        assert program in services[child.name]["command"], child.name
        # The app's services share one image and environment (the YAML anchor).
        assert services[child.name]["image"] == "marketflux:latest"
        assert services[child.name]["environment"]["DATABASE_URL"].startswith("postgres://")
