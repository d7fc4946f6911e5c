"""`make test` runs the suite in several pytest-xdist processes (apps/ops/launcher.py): each
must have a database and a Redis database of its own, or two tests that flush Redis or count
rows would see each other's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from apps.testing import BASE_DIR

PROBE = """
import json, os
from django.conf import settings
from django.db import connection

def test_{n}(db):
    out = os.path.join(os.environ["PROBE_DIR"], os.environ["PYTEST_XDIST_WORKER"] + ".json")
    with open(out, "w") as f:
        json.dump({{"redis": settings.REDIS_URL, "broker": settings.CELERY_BROKER_URL,
                   "database": connection.settings_dict["NAME"]}}, f)
"""


def test_each_parallel_test_process_has_its_own_database_and_redis(tmp_path: Path) -> None:
    tests = tmp_path / "probe"
    tests.mkdir()
    for n in range(2):
        (tests / f"test_probe_{n}.py").write_text(PROBE.format(n=n))
    # The probe's own databases (test_<name>_probe_gw0, ...), beside this run's, and its own
    # temporary directory: a pytest session makes /tmp/pytest-of-<user> private again as it
    # starts, which would shut the embedded servers of this run's other tests out of theirs.
    ours = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mf"))
    probe_db = urlunsplit(ours._replace(path=ours.path.rstrip("/") + "_probe"))
    env = {**os.environ, "PROBE_DIR": str(tmp_path), "DATABASE_URL": probe_db,
           "REDIS_URL": "redis://127.0.0.1:6379/15"}  # fmt: skip
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("CELERY_BROKER_URL", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-q",
         "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp"),
         "-c", str(BASE_DIR / "pyproject.toml"), str(tests)],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seen = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("gw*.json")}
    assert set(seen) == {"gw0", "gw1"}
    assert seen["gw0"]["redis"] == "redis://127.0.0.1:6379/15"
    assert seen["gw1"]["redis"] == "redis://127.0.0.1:6379/13"
    assert seen["gw1"]["broker"] == seen["gw1"]["redis"]  # Celery's tasks too
    assert seen["gw0"]["database"] != seen["gw1"]["database"]
    assert seen["gw0"]["database"].endswith("_probe_gw0")
    assert all(s["database"].startswith("test_") for s in seen.values())
