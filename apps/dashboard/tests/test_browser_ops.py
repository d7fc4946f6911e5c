"""The operators' status page in a real browser (Playwright driving Debian's chromium)
against a live Daphne, with a real Celery worker and beat ticking, all three sharing one
Prometheus multiprocess directory as under `make run`: a staff user sees real values move
(ticks a second, a drawn chart, a socket of their own counted); a reader is refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from apps.accounts import roles
from apps.testing.browser import (
    PASSWORD,
    VIEWPORTS,
    WAIT_MS,
    PageWatch,
    browser_test_marks,
    chromium,
    log_in,
    screenshot,
)
from apps.testing.factories import UserFactory
from apps.testing.waiting import wait_for

pytestmark = browser_test_marks()


@pytest.fixture
def stack(market, redis_client, processes, tmp_path) -> str:
    """Worker, beat and Daphne on one metrics directory; the site's URL once a batch ran."""
    from apps.market import keys

    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "TICK_INTERVAL": "0.5"}
    (tmp_path / "metrics").mkdir()
    processes.celery_worker(**shared)
    processes.celery_beat(**shared)
    url = processes.daphne(**shared)
    wait_for(lambda: redis_client.llen(keys.BATCH_STATS) >= 2, timeout=60, what="tick batches")
    return url


# Users are made before Playwright starts: its sync API runs an event loop in this thread,
# and Django refuses ORM calls from a thread that has one.
@pytest.fixture
def operator(db):
    user = UserFactory(username="operator", password=PASSWORD)
    return roles.user_role_set(user=user, role=roles.OPERATOR)  # the status page's role


@pytest.fixture
def reader(db):
    return UserFactory(username="reader", password=PASSWORD)


@pytest.fixture
def browser() -> Iterator:
    with chromium() as launched:
        yield launched


def number(page, selector: str) -> float:
    return float(page.locator(selector).inner_text().replace(",", ""))


def test_staff_see_live_ingest_a_chart_and_their_socket(stack, operator, browser):
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    watch = PageWatch(page, site=stack)
    log_in(page, stack, username="operator", password=PASSWORD)
    page.goto(f"{stack}/ops/")
    assert page.locator("h1").inner_text() == "Operations"

    # Real batches of the five default symbols, two a second: ticks a second above zero,
    # the chart of them drawn, every stage timed.
    page.wait_for_function(
        """() => {
          const rate = document.querySelector('[data-field="ticks_per_s"]').textContent;
          const chart = document.querySelector('svg[data-chart="ticks_per_s"]');
          return parseFloat(rate) > 0 && Number(chart.dataset.points) > 1;
        }""",
        timeout=WAIT_MS,
    )
    assert number(page, '[data-field="ticks_per_s"]') > 0
    points = page.locator('svg[data-chart="ticks_per_s"] polyline').get_attribute("points")
    assert len(points.split()) > 1
    assert number(page, '[data-stage="store"] [data-field="p99"]') > 0
    assert number(page, '[data-field="lag_p99"]') > 0
    assert number(page, '[data-field="workers"]') == 1

    # A socket of our own on /ws/stocks/AAPL: the page counts it within a poll or two, and
    # counts it gone once closed.
    route = '[data-route="/ws/stocks/{symbol}"]'
    assert page.locator(route).inner_text() == "0"
    with connect(stack.replace("http://", "ws://") + "/ws/stocks/AAPL", proxy=None,
                 open_timeout=10) as ws:  # fmt: skip
        ws.recv(timeout=10)  # its snapshot: the socket is open and served
        page.wait_for_function(
            f"""() => document.querySelector('{route}').textContent === "1" """, timeout=WAIT_MS
        )
        # The page's own /ws/market (alert toasts for a signed-in user) counts as well.
        assert number(page, '[data-field="sockets_total"]') >= 1
        assert int(page.locator('svg[data-chart="sockets"]').get_attribute("data-points")) >= 1
        screenshot(page, "ops-1280-dark")
    page.wait_for_function(
        f"""() => document.querySelector('{route}').textContent === "0" """, timeout=WAIT_MS
    )
    assert watch.errors == []


def test_a_reader_who_is_not_staff_is_refused(stack, reader, browser):
    page = browser.new_page(viewport=VIEWPORTS["1280"])
    page.goto(f"{stack}/accounts/login/")
    page.fill("#id_username", "reader")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_selector('[data-field="user"]', timeout=WAIT_MS)

    page.goto(f"{stack}/ops/")
    assert "/admin/login/" in page.url  # the admin's answer: not authorised here
    assert "not authorized" in page.content()
    assert page.locator('[data-field="ticks_per_s"]').count() == 0
    answer = page.request.get(f"{stack}/ops/status.json")
    assert answer.status == 403
