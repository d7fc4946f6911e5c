"""A pytest plugin (pyproject's addopts) that gives each pytest-xdist worker its own Redis
database, as pytest-django gives each its own test database (`test_<name>_gw<n>`).

It works at import, before pytest-django imports the settings that read REDIS_URL: worker
`gw<n>` takes the database two below the previous worker's (15, 13, 11, ...), so the one under
each (14, 12, ...) is free for a second instance of the worker's tests (apps/testing/vendor.py).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw"):
    _url = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    _db = (int(_url.path.lstrip("/") or 0) - 2 * int(_worker[2:])) % 16
    os.environ["REDIS_URL"] = urlunsplit(_url._replace(path=f"/{_db}"))
    if os.environ.get("CELERY_BROKER_URL", "").startswith("redis"):
        del os.environ["CELERY_BROKER_URL"]  # a Redis broker follows REDIS_URL (settings.py)
