"""The Symbol admin in a real browser (Playwright driving Debian's chromium) against a live
Daphne, signed in as a superuser: its pages fit a 1280 px window.

Needs /usr/bin/chromium (`apt-get install chromium`); without it these tests fail
saying so. Screenshots go to var/test-artifacts/screenshots/.
The database work happens before Playwright starts (its sync API runs an event loop in this
thread, and Django refuses ORM calls from a thread that has one).
"""

from __future__ import annotations

import pytest

from apps.testing.browser import (
    PASSWORD,
    WINDOW_1280,
    PageWatch,
    browser_test_marks,
    chromium,
    log_in,
    screenshot,
)

pytestmark = browser_test_marks()


@pytest.fixture
def site(market, django_user_model, processes) -> str:
    """A live Daphne; a superuser; AAPL with alert rules of two users, so the rules
    inline has rows (one fired, one with an expiry and a long message: the widest rows)."""
    from datetime import UTC, datetime, timedelta

    from apps.testing.factories import AlertRuleFactory, UserFactory

    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    owners = [UserFactory(username="alice.longname@example.com"), UserFactory(username="bob")]
    AlertRuleFactory(
        owner=owners[0], condition="price_above", threshold=250.0,
        last_fired_at=datetime.now(UTC).replace(hour=23, minute=57),
    )  # fmt: skip
    AlertRuleFactory(
        owner=owners[1],
        condition="rsi_above",
        threshold=70.0,
        window_seconds=3600,
        frequency="every_time",
        cooldown_seconds=600,
        expires_at=datetime.now(UTC) + timedelta(days=30),
        message="{symbol} is overbought: RSI {value} at {price}",
    )
    return processes.daphne()


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


# Boxes that scroll sideways inside the page (the changelist's table sits in one): their
# content is cut off at the edge even when the page itself fits.
CUT_OFF = """() => [...document.querySelectorAll('#content *')]
  .filter((e) => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(e).overflowX)
                 && e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0)
  .map((e) => `${e.tagName}.${e.className}: ${e.scrollWidth} > ${e.clientWidth}`)"""


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("admin-symbol-changelist", "/admin/market/symbol/"),
        ("admin-symbol-change", "/admin/market/symbol/AAPL/change/"),
    ],
)
def test_symbol_admin_pages_fit_a_1280_px_window(site, name, path):
    with chromium() as browser:
        page = browser.new_page(viewport=WINDOW_1280)
        watch = PageWatch(page, site=site)
        log_in(page, site, username="root", password=PASSWORD)
        page.goto(f"{site}{path}")
        assert page.locator("#content h1").count() == 1
        screenshot(page, f"{name}-1280")
        assert page_width(page) <= WINDOW_1280["width"]
        assert page.evaluate(CUT_OFF) == []
        assert not watch.errors, watch.errors


def test_backfill_history_from_the_symbol_list_to_its_finished_progress(site, processes):
    processes.celery_worker()
    with chromium() as browser:
        page = browser.new_page(viewport=WINDOW_1280)
        watch = PageWatch(page, site=site)
        log_in(page, site, username="root", password=PASSWORD)
        page.goto(f"{site}/admin/market/symbol/")
        page.check('input[name="_selected_action"][value="AMZN"]')
        page.select_option('select[name="action"]', "backfill_history")
        page.click('button[name="index"]')
        assert page.input_value('input[name="days"]') == "30"
        page.fill('input[name="days"]', "1")
        screenshot(page, "admin-symbol-backfill-1280")
        page.click('input[name="apply"]')
        # The progress page reloads itself until the worker is done.
        page.wait_for_selector('#backfill[data-state="done"]', timeout=60_000)
        assert "Done: 1,440 bars written." in page.inner_text("#backfill")
        screenshot(page, "admin-symbol-backfill-progress-1280")
        assert page_width(page) <= WINDOW_1280["width"]
        assert not watch.errors, watch.errors
