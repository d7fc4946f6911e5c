"""The Symbol admin a staff user works with."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from apps.market import backfill, tasks
from apps.market.models import Bar, Symbol
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.django_db


def test_changelist_shows_symbols_and_filters(admin_client, market):
    response = admin_client.get("/admin/market/symbol/", {"sector": "Technology"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "AAPL" in body
    assert "MSFT" in body
    assert "TSLA" not in body


def test_search_finds_by_name(admin_client, market):
    response = admin_client.get("/admin/market/symbol/", {"q": "Alphabet"})
    assert "GOOGL" in response.content.decode()
    assert "AMZN" not in response.content.decode()


@pytest.mark.parametrize(("action", "active"), [("deactivate", False), ("activate", True)])
def test_actions_switch_symbols_on_and_off(admin_client, market, action, active):
    Symbol.objects.update(active=not active)
    response = admin_client.post(
        "/admin/market/symbol/",
        {"action": action, "_selected_action": ["AAPL", "TSLA"]},
        follow=True,
    )
    assert response.status_code == 200
    assert "2 symbol(s)" in response.content.decode()
    assert set(Symbol.objects.filter(active=active).values_list("ticker", flat=True)) == {
        "AAPL",
        "TSLA",
    }


def test_add_form_rejects_a_malformed_ticker(admin_client):
    response = admin_client.post(
        "/admin/market/symbol/add/",
        {"ticker": "bad ticker", "name": "X", "exchange": "NYSE", "start_price": 10,
         "drift": 0, "volatility": 0.2, "jump_rate": 1, "anomaly_threshold": 3},
    )  # fmt: skip
    assert response.status_code == 200
    assert "A ticker is 1-16 upper-case letters" in response.content.decode()
    assert not Symbol.objects.exists()


def test_anonymous_users_are_sent_to_the_login(client):
    response = client.get("/admin/market/symbol/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_add_form_takes_a_lower_case_ticker_as_upper_case(admin_client):
    response = admin_client.post(
        "/admin/market/symbol/add/",
        {"ticker": "nvda", "name": "NVIDIA", "exchange": "NASDAQ", "start_price": 120,
         "drift": 0, "volatility": 0.4, "jump_rate": 1, "anomaly_threshold": 3,
         # the page's alert rules inline, empty
         "alert_rules-TOTAL_FORMS": 0, "alert_rules-INITIAL_FORMS": 0},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    assert Symbol.objects.get(ticker="NVDA").name == "NVIDIA"
    assert not Symbol.objects.filter(ticker="nvda").exists()


def test_times_read_as_the_site_writes_them(admin_client, market):
    from django.utils import timezone

    late = timezone.now().replace(hour=23, minute=57)
    Symbol.objects.filter(ticker="AAPL").update(updated_at=late)
    body = admin_client.get("/admin/market/symbol/", {"q": "AAPL"}).content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d 23:57:\d\d UTC", body), body
    assert "p.m." not in body


# "Backfill history": a Celery task, followed on a progress page.

SYMBOLS = "/admin/market/symbol/"


def ask_backfill(client, tickers: list[str], **answer):
    data = {"action": "backfill_history", "_selected_action": tickers}
    if answer:
        data |= {"apply": "Backfill", **answer}
    return client.post(SYMBOLS, data)


def progress_page(client, url: str) -> tuple[str, str]:
    body = client.get(url).content.decode()
    state = re.search(r'id="backfill" data-state="(\w+)"', body)
    return (state.group(1) if state else "?"), re.sub(r"\s+", " ", body)


def text_of(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def finished(client, url: str) -> str:
    _state, body = wait_for(
        lambda: (page := progress_page(client, url))[0] in ("done", "failed") and page,
        timeout=120,
        what=f"the backfill on {url} to finish",
    )
    return body


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_backfill_action_asks_for_days_runs_in_a_worker_and_reports_progress(
    admin_client, market, redis_client, processes
):
    question = ask_backfill(admin_client, ["AAPL", "MSFT"])
    assert question.status_code == 200
    body = question.content.decode()
    assert "AAPL, MSFT" in body
    assert re.search(r'name="days" value="30"', body)  # the default
    processes.celery_worker()

    started = ask_backfill(admin_client, ["AAPL", "MSFT"], days="2")
    assert started.status_code == 302
    progress = started["Location"]
    assert progress.startswith(f"{SYMBOLS}backfill/")
    first_state, first_body = progress_page(admin_client, progress)
    assert first_state in ("queued", "running", "done")
    assert "<progress" in first_body
    if first_state != "done":
        assert 'http-equiv="refresh"' in first_body  # it follows the job by itself

    body = finished(admin_client, progress)
    bars = 2 * 2 * 1440
    assert f"{bars:,} of {bars:,} bars simulated" in text_of(body)
    assert f"Done: {bars:,} bars written." in body
    assert 'http-equiv="refresh"' not in body
    assert Bar.objects.filter(symbol_id__in=["AAPL", "MSFT"], interval="1m").count() == bars
    assert not Bar.objects.filter(symbol_id="TSLA").exists()

    # Idempotent, like the command: a second run writes nothing.
    again = ask_backfill(admin_client, ["AAPL", "MSFT"], days="2")["Location"]
    assert "Done: 0 bars written (the history was there already)." in finished(admin_client, again)
    assert Bar.objects.filter(interval="1m").count() == bars


@pytest.mark.parametrize("days", ["0", str(backfill.MAX_DAYS + 1), "a year", ""])
def test_backfill_action_takes_days_from_1_to_3650_only(admin_client, market, redis_client, days):
    response = ask_backfill(admin_client, ["AAPL"], days=days)
    assert response.status_code == 200
    assert 'class="errorlist' in response.content.decode()
    assert not redis_client.keys("mf:backfill:*")


def test_a_failed_backfill_shows_its_error(admin_client, market, redis_client):
    progress = ask_backfill(admin_client, ["TSLA"], days="1")["Location"]
    job = progress.rstrip("/").rsplit("/", 1)[1]
    state, body = progress_page(admin_client, progress)
    assert state == "queued"
    assert "Waiting for a worker" in body
    Symbol.objects.filter(ticker="TSLA").delete()  # gone before a worker got to it
    with pytest.raises(backfill.BackfillError):
        tasks.backfill(job=job, tickers=["TSLA"], days=1)  # as a worker runs it
    state, body = progress_page(admin_client, progress)
    assert state == "failed"
    assert "Failed: unknown symbols: TSLA" in body


def test_backfill_progress_needs_change_permission_and_a_known_job(client, admin_client, market):
    assert admin_client.get(f"{SYMBOLS}backfill/0123abcd/").status_code == 404
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    client.force_login(viewer)
    assert client.get(f"{SYMBOLS}backfill/0123abcd/").status_code == 403
