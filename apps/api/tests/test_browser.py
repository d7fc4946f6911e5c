"""The API docs and the admin in a real browser (Playwright driving Debian's chromium)
against a live Daphne: everything they load comes from the site itself, so they work
offline and tell no other host who reads them.

Needs /usr/bin/chromium (`apt-get install chromium`); without it these tests fail
saying so. Screenshots go to var/test-artifacts/screenshots/.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from apps.testing.browser import (
    PASSWORD,
    WAIT_MS,
    WINDOW_1280,
    PageWatch,
    browser_test_marks,
    chromium,
    log_in,
    screenshot,
)

pytestmark = browser_test_marks()


@pytest.fixture
def site(django_user_model, processes) -> str:
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    return processes.daphne()


@pytest.mark.parametrize(
    ("name", "path", "ready"),
    [
        ("redoc", "/redoc", "[role=search], .api-content h1"),
        ("docs", "/docs", ".swagger-ui .info .title"),
        ("admin-index", "/admin/", "#content h1"),
    ],
)
def test_pages_load_nothing_from_another_host(site, name, path, ready):
    with chromium() as browser:
        page = browser.new_page(viewport=WINDOW_1280)
        if name.startswith("admin"):
            log_in(page, site, username="root", password=PASSWORD)
        watch = PageWatch(page, site=site)
        page.goto(f"{site}{path}", wait_until="networkidle")
        page.wait_for_selector(ready, timeout=WAIT_MS)
        page.wait_for_load_state("networkidle")
        assert "MarketFlux API" in page.content() or name.startswith("admin")
        screenshot(page, f"{name}-1280", full_page=name.startswith("admin"))
        assert not watch.errors, watch.errors


def test_the_stock_filter_form_sends_only_the_fields_filled_in(site, market):
    """An empty parameter is a 400 (docs/contracts.md#bad-parameters), so the browsable
    stock list's filter form must not send the fields left empty."""
    with chromium() as browser:
        page = browser.new_page(viewport=WINDOW_1280)
        page.goto(f"{site}/api/v1/stocks/", wait_until="networkidle")
        page.click("button[data-target='#filtersModal']")
        page.fill("#filtersModal input[name=search]", "aap")
        with page.expect_navigation():
            page.click("#filtersModal button[type=submit]")
        page.wait_for_load_state("networkidle")
        sent = parse_qs(urlsplit(page.url).query, keep_blank_values=True)
        assert sent["search"] == ["aap"]
        assert all(value != [""] for value in sent.values()), sent  # no empty field sent
        text = page.inner_text("body")
        assert "HTTP 200 OK" in text
        assert '"symbol": "AAPL"' in text
        assert '"symbol": "MSFT"' not in text
