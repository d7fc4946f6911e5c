"""Effective configuration: a misspelled setting must not silently do nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from django.conf import settings

from marketflux_site.celery import GridSchedule, app, beat_schedule


def test_celery_reads_the_django_settings():
    app.loader.import_default_modules()
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_url == settings.CELERY_BROKER_URL
    assert "market.tick" in app.tasks


def _celery_conf(env: dict[str, str], *, unset: tuple[str, ...] = ()) -> list:
    """Celery's broker settings in a fresh process with `env` set and `unset` removed."""
    code = (
        "import json; from marketflux_site.celery import app; c = app.conf; "
        "print(json.dumps([c.broker_url, c.broker_transport_options, c.task_default_queue, "
        "c.task_acks_late, c.task_reject_on_worker_lost, c.worker_prefetch_multiplier]))"
    )
    base = {k: v for k, v in os.environ.items() if k not in unset}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_rabbitmq_broker_confirms_publishes_and_keeps_late_acks():
    url = "amqp://mf:secret@rabbit.internal:5672/marketflux"
    conf = _celery_conf({"CELERY_BROKER_URL": url, "CELERY_QUEUE": "ticks-a"})
    broker, options, queue, acks_late, requeue_on_loss, prefetch = conf
    assert (broker, queue) == (url, "ticks-a")
    assert options == {"confirm_publish": True}
    assert (acks_late, requeue_on_loss, prefetch) == (True, True, 1)


def test_the_broker_defaults_to_redis_without_amqp_options():
    conf = _celery_conf(
        {"REDIS_URL": "redis://127.0.0.1:6379/3"}, unset=("CELERY_BROKER_URL", "CELERY_QUEUE")
    )
    assert conf[:3] == ["redis://127.0.0.1:6379/3", {}, "celery"]


def test_a_broker_url_of_another_kind_names_the_setting():
    result = _django_check({"CELERY_BROKER_URL": "sqs://queue.example"})
    assert result.returncode != 0
    assert "CELERY_BROKER_URL must be redis:// or amqp://" in result.stderr


def test_beat_has_one_expiring_tick_entry_per_shard():
    schedule = beat_schedule(tick_interval=0.5, shards=3)
    ticks = {name: e for name, e in schedule.items() if e["task"] == "market.tick"}
    assert sorted(e["kwargs"]["shard"] for e in ticks.values()) == [0, 1, 2]
    assert all(e["options"]["expires"] == 0.5 for e in ticks.values())
    assert all(e["schedule"].run_every == timedelta(seconds=0.5) for e in ticks.values())


def test_beat_rolls_up_longer_bars_every_minute():
    schedule = beat_schedule(tick_interval=0.5, shards=1)
    (rollup,) = [e for e in schedule.values() if e["task"] == "market.rollup"]
    assert rollup["schedule"] == timedelta(minutes=1)
    assert "market.rollup" in app.tasks


def test_grid_schedule_fires_once_per_slot_and_wakes_at_the_next_boundary():
    now = datetime(2026, 3, 2, 14, 30, 0, 700_000, tzinfo=UTC)
    grid = GridSchedule(timedelta(seconds=0.5), nowfun=lambda: now)
    due, next_in = grid.is_due(datetime(2026, 3, 2, 14, 30, 0, 400_000, tzinfo=UTC))
    assert due
    assert abs(next_in - 0.3) < 1e-6
    due, next_in = grid.is_due(datetime(2026, 3, 2, 14, 30, 0, 500_000, tzinfo=UTC))
    assert not due
    assert abs(next_in - 0.3) < 1e-6


def _django_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    )


def test_production_refuses_the_development_secret_key():
    result = _django_check({"DJANGO_ENV": "production", "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_settings_pass_the_deploy_check():
    result = _django_check(
        {"DJANGO_ENV": "production", "ALLOWED_HOSTS": "marketflux.example",
         "SECRET_KEY": "production-test-key-" + "0123456789abcdefghijklmnopqrstuvwxyz"},
        "--deploy", "--fail-level", "WARNING",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_malformed_setting_names_itself():
    result = _django_check({"TICK_INTERVAL": "fast"})
    assert result.returncode != 0
    assert "TICK_INTERVAL must be a number" in result.stderr


def test_no_model_change_lacks_its_migration():
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        capture_output=True, text=True, cwd=settings.BASE_DIR,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
