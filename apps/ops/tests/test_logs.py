"""Structured logs (docs/operations.md#logs): LOG_FORMAT=json writes one JSON object a
line; a request's id (the proxy's X-Request-ID, or a new one) is on its log lines and its
response; a tick batch's id (its Celery task's) is on the lines of that batch."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest

from apps.ingest.tasks import tick
from apps.testing import BASE_DIR


def test_log_format_json_writes_one_object_a_line():
    code = (
        "import django, logging; django.setup();"
        " logging.getLogger('marketflux.check').warning('price of %s', 'AAPL')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, check=True,
        env={**_env(), "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "marketflux_site.settings"},
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("logger") == "marketflux.check"]
    assert len(mine) == 1
    assert mine[0]["message"] == "price of AAPL"
    assert mine[0]["level"] == "WARNING"
    assert mine[0]["time"]
    assert mine[0]["request_id"] == ""


def test_a_bad_log_format_is_refused_by_name():
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=BASE_DIR,
        capture_output=True, text=True, check=False,
        env={**_env(), "LOG_FORMAT": "xml", "DJANGO_SETTINGS_MODULE": "marketflux_site.settings"},
    )  # fmt: skip
    assert done.returncode != 0
    assert "LOG_FORMAT must be plain or json, not 'xml'" in done.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.django_db
def test_a_requests_id_is_on_its_log_lines_and_its_response(client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        given = client.get("/api/v1/stocks/NOPE/price", HTTP_X_REQUEST_ID="req-42")
        made = client.get("/api/v1/stocks/NONE/price", HTTP_X_REQUEST_ID="bad id with spaces")
    assert given.status_code == made.status_code == 404
    assert given["X-Request-ID"] == "req-42"
    assert made["X-Request-ID"] != "bad id with spaces"
    assert len(made["X-Request-ID"]) == 32
    ids = {r.request_id for r in caplog.records if r.name == "django.request"}
    assert ids == {"req-42", made["X-Request-ID"]}


def test_a_batchs_lines_carry_its_task_id(caplog, settings):
    settings.TICK_INTERVAL = 0.5
    with caplog.at_level(logging.WARNING, logger="apps.ingest.tasks"):
        # A slot long past: the task drops it, saying so inside the batch.
        tick.apply(kwargs={"shard": 0, "shards": 1, "scheduled_ts": time.time() - 3600},
                   task_id="batch-7f3a")  # fmt: skip
    dropped = [r for r in caplog.records if "too late" in r.getMessage()]
    assert [r.batch_id for r in dropped] == ["batch-7f3a"]
    logging.getLogger("apps.ingest.tasks").warning("after the batch")
    assert caplog.records[-1].batch_id == ""
